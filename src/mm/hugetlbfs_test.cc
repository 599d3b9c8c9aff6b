// Shared hugetlb: hugetlbfs files (HugetlbfsFile) and MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB.
// One page-cache folio seen by every mapper and fork child, the inode's reservations, private
// COW from a cached folio, truncation back to the pool. Every test checks bytes, pool counts,
// refcounts, mapcounts and entries, and ends with the pool emptied and every page back in the
// allocator.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/decoded_entry.h"
#include "mm/hstate.h"
#include "mm/hugetlb.h"
#include "mm/hugetlbfs.h"
#include "mm/process.h"
#include "mm/rmap.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr MmapFlags kShared = MmapFlags::kShared;
constexpr MmapFlags kPrivate = MmapFlags::kPrivate;
constexpr MmapFlags kSharedAnonHuge =
    MmapFlags::kShared | MmapFlags::kAnonymous | MmapFlags::kHugetlb;
constexpr uint64_t kHuge = kHpagePmdSize;
constexpr uint64_t kNr = kHpagePmdNr;

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

class HugetlbfsTest : public ::testing::TestWithParam<arch::ArchKind> {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel(arch::SwapNumberingKind::kLegacy, GetParam());
    free0_ = k_->nr_free_pages();
    p_ = Process::create(*k_).value();
    q_ = Process::create(*k_).value();
  }
  void TearDown() override {
    child_.reset();
    p_.reset();
    q_.reset();
    const HugetlbMeminfo m = k_->hugetlb_meminfo();
    EXPECT_EQ(m.free, m.total) << "every huge page back in the pool";
    EXPECT_EQ(m.rsvd, 0u) << "every reservation given back";
    k_->set_nr_hugepages(0);
    EXPECT_EQ(k_->hugetlb_meminfo().total, 0u);
    EXPECT_EQ(k_->nr_free_pages(), free0_) << "every page back in the allocator";
  }
  void expect_pool(uint64_t total, uint64_t free, uint64_t rsvd) {
    const HugetlbMeminfo m = k_->hugetlb_meminfo();
    EXPECT_EQ(m.total, total);
    EXPECT_EQ(m.free, free);
    EXPECT_EQ(m.rsvd, rsvd);
  }
  DecodedEntry pmd(Process& p, VirtAddr a) {
    const std::optional<EntrySlot> slot = p.mm().page_table().walk_pmd(a);
    return k_->codec().decode(EntryLevel::kPmd, slot ? slot->load() : 0);
  }
  page::Folio folio_at(Pfn pfn) { return page::page_folio(k_->pfn_to_page(pfn).value()); }
  Vma vma_at(Process& p, VirtAddr a) {
    ReadLocker guard(p.mm().mmap_lock());
    const Vma* v = p.mm().vma_lookup(a);
    EXPECT_NE(v, nullptr);
    return v != nullptr ? *v : Vma();
  }
  std::shared_ptr<HugetlbfsFile> make_file(uint64_t size) {
    return HugetlbfsFile::create(*k_, size).value();
  }

  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> p_;
  std::unique_ptr<Process> q_;
  std::unique_ptr<Process> child_;
};

TEST_P(HugetlbfsTest, CreateAndTruncateTakeWholeHugePagesOnly) {
  Result<std::shared_ptr<HugetlbfsFile>> bad = HugetlbfsFile::create(*k_, kHuge + kPageSize);
  ASSERT_TRUE(bad.is_error());
  EXPECT_EQ(bad.error().code(), Errno::kEINVAL);
  auto f = make_file(2 * kHuge);
  EXPECT_EQ(f->size(), 2 * kHuge);
  EXPECT_TRUE(has(f->f_mode(), FMode::kRead | FMode::kWrite));
  const Status t = f->ftruncate(kHuge / 2);
  ASSERT_TRUE(t.is_error());
  EXPECT_EQ(t.error().code(), Errno::kEINVAL);
  EXPECT_EQ(f->size(), 2 * kHuge);
  std::vector<std::byte> buf(16);
  const Result<uint64_t> w = f->pwrite(buf, 0);
  ASSERT_TRUE(w.is_error());
  EXPECT_EQ(w.error().code(), Errno::kEINVAL) << "hugetlbfs has no write operation";
  // A hole reads as zeros without allocating.
  std::memset(buf.data(), 0xff, buf.size());
  EXPECT_EQ(f->pread(buf, kHuge).value(), 16u);
  for (std::byte b : buf) EXPECT_EQ(b, std::byte{0});
  EXPECT_EQ(f->nr_cached(), 0u);
  // An unaligned mapping offset is EINVAL.
  k_->set_nr_hugepages(1);
  Result<VirtAddr> off = p_->mmap_file(VirtAddr(0), kHuge, kRw, kShared, f, kPageSize);
  ASSERT_TRUE(off.is_error());
  EXPECT_EQ(off.error().code(), Errno::kEINVAL);
  expect_pool(1, 1, 0);
}

TEST_P(HugetlbfsTest, TwoProcessesShareOneCachedFolio) {
  k_->set_nr_hugepages(3);
  auto f = make_file(2 * kHuge);
  const VirtAddr a = p_->mmap_file(VirtAddr(0), 2 * kHuge, kRw, kShared, f, 0).value();
  EXPECT_TRUE(a.is_aligned(kHuge));
  {
    const Vma v = vma_at(*p_, a);  // holds a file reference while it lives
    EXPECT_TRUE(has(v.flags, VmFlags::kHugetlb | VmFlags::kDontExpand | VmFlags::kShared));
    EXPECT_EQ(v.resv_map, nullptr) << "shared reservations belong to the inode";
    EXPECT_EQ(v.file.use_count(), 3) << "the test, the copy and the VMA";
  }
  EXPECT_EQ(f->nr_regions(), 2u);
  expect_pool(3, 3, 2);
  // The second mapping of the same range reserves nothing more (region_chg is 0).
  const VirtAddr b = q_->mmap_file(VirtAddr(0), 2 * kHuge, kRw, kShared, f, 0).value();
  expect_pool(3, 3, 2);
  // A read fault in a writable shared mapping maps the folio writable and dirty.
  EXPECT_EQ(q_->read_u64(b + kHuge).value(), 0u);
  const DecodedEntry qe = pmd(*q_, b + kHuge);
  ASSERT_EQ(qe.kind, DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(has(qe.prot, Prot::kWrite));
  EXPECT_TRUE(has(qe.prot, Prot::kDirty));
  expect_pool(3, 2, 1);
  ASSERT_TRUE(p_->write_u64(a + kHuge + 8, 0xabcd).is_ok());
  EXPECT_EQ(q_->read_u64(b + kHuge + 8).value(), 0xabcdu) << "one folio for both";
  ASSERT_TRUE(q_->write_u64(b + 64, 0x77).is_ok());
  EXPECT_EQ(p_->read_u64(a + 64).value(), 0x77u);
  expect_pool(3, 1, 0);
  const DecodedEntry pe = pmd(*p_, a + kHuge);
  EXPECT_EQ(pe.pfn, qe.pfn);
  page::Folio folio = folio_at(pe.pfn);
  EXPECT_TRUE(folio.is_hugetlb());
  EXPECT_FALSE(folio.is_anon());
  EXPECT_EQ(AddressSpace::of_folio(folio), &f->page_cache());
  EXPECT_EQ(folio.index(), kNr) << "cached at the base-page index of its first page";
  EXPECT_EQ(folio.ref_count(), 3) << "the cache and two mappings";
  EXPECT_EQ(folio.mapcount(), 2);
  EXPECT_EQ(folio.entire_mapcount(), 2);
  EXPECT_EQ(f->nr_cached(), 2u);
  // The rmap goes through the file's i_mmap and finds both PMD leaves.
  std::vector<RmapMapping> found = folio_find_mappings(
      *k_, folio, arch::PfnOrOffset::of_pfn(pe.pfn), PvmwFlags::kNone);
  ASSERT_EQ(found.size(), 2u);
  for (const RmapMapping& m : found) {
    const VirtAddr want = m.mm == &p_->mm() ? a + kHuge : b + kHuge;
    EXPECT_EQ(m.address, want);
    EXPECT_EQ(k_->codec().decode(EntryLevel::kPmd, m.entry).pfn, pe.pfn);
  }
  // The bytes are the folio's, and pread sees them.
  uint64_t w = 0;
  ASSERT_EQ(f->pread(std::as_writable_bytes(std::span(&w, 1)), kHuge + 8).value(), 8u);
  EXPECT_EQ(w, 0xabcdu);
  // MADV_DONTNEED drops p's leaf only; the folio stays cached and p refaults it.
  ASSERT_TRUE(p_->madvise(a + kHuge, kHuge, Madvise::kDontNeed).is_ok());
  EXPECT_EQ(pmd(*p_, a + kHuge).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(folio.ref_count(), 2);
  EXPECT_EQ(folio.mapcount(), 1);
  expect_pool(3, 1, 0);
  EXPECT_EQ(p_->read_u64(a + kHuge + 8).value(), 0xabcdu);
  EXPECT_EQ(pmd(*p_, a + kHuge).pfn, pe.pfn);
  EXPECT_EQ(folio.ref_count(), 3);
  // mremap moves the shared leaf; the folio keeps its counts.
  const VirtAddr moved =
      p_->mmap(VirtAddr(0), 2 * kHuge, kRw, kSharedAnonHuge | MmapFlags::kNoReserve).value();
  ASSERT_TRUE(p_->munmap(moved, 2 * kHuge).is_ok());
  ASSERT_EQ(p_->mremap(a, 2 * kHuge, 2 * kHuge, MremapFlags::kMayMove | MremapFlags::kFixed,
                       moved).value(), moved);
  EXPECT_EQ(pmd(*p_, moved + kHuge).pfn, pe.pfn);
  EXPECT_EQ(folio.ref_count(), 3);
  EXPECT_EQ(folio.mapcount(), 2);
  EXPECT_EQ(p_->read_u64(moved + 64).value(), 0x77u);
  expect_pool(3, 1, 0);
  // munmap leaves the folios in the cache.
  ASSERT_TRUE(p_->munmap(moved, 2 * kHuge).is_ok());
  EXPECT_EQ(folio.ref_count(), 2);
  EXPECT_EQ(folio.mapcount(), 1);
  ASSERT_TRUE(q_->munmap(b, 2 * kHuge).is_ok());
  EXPECT_EQ(folio.ref_count(), 1) << "only the cache";
  EXPECT_EQ(folio.mapcount(), 0);
  expect_pool(3, 1, 0);
  // A new mapping finds the data again.
  const VirtAddr c = p_->mmap_file(VirtAddr(0), 2 * kHuge, MmapProt::kRead, kShared, f, 0).value();
  expect_pool(3, 1, 0);
  EXPECT_EQ(p_->read_u64(c + kHuge + 8).value(), 0xabcdu);
  EXPECT_FALSE(has(pmd(*p_, c + kHuge).prot, Prot::kWrite)) << "a read-only mapping";
  EXPECT_TRUE(p_->write_u64(c, 1).is_error());
  ASSERT_TRUE(p_->munmap(c, 2 * kHuge).is_ok());
  // The file's end: the folios go back to the pool, no reservation is left.
  f.reset();
  expect_pool(3, 3, 0);
  EXPECT_EQ(folio.ref_count(), 0);
}

TEST_P(HugetlbfsTest, SharedAnonymousHugetlbIsSeenByForkChildren) {
  k_->set_nr_hugepages(2);
  const VirtAddr a = p_->mmap(VirtAddr(0), kHuge + 1, kRw, kSharedAnonHuge).value();
  {
    const Vma v = vma_at(*p_, a);  // holds a file reference while it lives
    EXPECT_EQ(v.size(), 2 * kHuge);
    EXPECT_EQ(v.pgoff, 0u);
    HugetlbfsFile* file = vma_hugetlbfs_file(v);
    ASSERT_NE(file, nullptr) << "an unlinked hugetlbfs file behind the VMA";
    EXPECT_EQ(file->size(), 2 * kHuge);
    EXPECT_EQ(v.file.use_count(), 2) << "only the VMA (and this copy) hold it";
  }
  expect_pool(2, 2, 2);
  ASSERT_TRUE(p_->write_u64(a + 8, 1).is_ok());
  expect_pool(2, 1, 1);
  child_ = p_->fork().value();
  // The child refaults from the cache (vma_needs_copy: nothing copied at fork).
  EXPECT_EQ(pmd(*child_, a).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(child_->read_u64(a + 8).value(), 1u);
  const Pfn pfn = pmd(*p_, a).pfn;
  EXPECT_EQ(pmd(*child_, a).pfn, pfn);
  EXPECT_EQ(folio_at(pfn).mapcount(), 2);
  EXPECT_EQ(folio_at(pfn).ref_count(), 3);
  // Parent writes after the fork are seen by the child, and the other way round: no COW.
  ASSERT_TRUE(p_->write_u64(a + 16, 2).is_ok());
  EXPECT_EQ(child_->read_u64(a + 16).value(), 2u);
  ASSERT_TRUE(child_->write_u64(a + kHuge, 3).is_ok());
  EXPECT_EQ(p_->read_u64(a + kHuge).value(), 3u);
  expect_pool(2, 0, 0);
  child_.reset();
  EXPECT_EQ(folio_at(pfn).mapcount(), 1);
  EXPECT_EQ(p_->read_u64(a + 16).value(), 2u);
  // The last mapping goes with the file: everything returns.
  ASSERT_TRUE(p_->munmap(a, 2 * kHuge).is_ok());
  expect_pool(2, 2, 0);
}

TEST_P(HugetlbfsTest, ForkChildRefaultsAPrivateFileMappingAndCopiesOnWrite) {
  k_->set_nr_hugepages(3);
  auto f = make_file(kHuge);
  const VirtAddr a = p_->mmap_file(VirtAddr(0), kHuge, kRw, kShared, f, 0).value();
  const VirtAddr pr = p_->mmap_file(VirtAddr(0), kHuge, kRw, kPrivate, f, 0).value();
  ASSERT_TRUE(p_->write_u64(a, 5).is_ok());
  EXPECT_EQ(p_->read_u64(pr).value(), 5u) << "a private mapping reads the cached folio";
  const Pfn cached = pmd(*p_, a).pfn;
  EXPECT_EQ(pmd(*p_, pr).pfn, cached);
  EXPECT_FALSE(has(pmd(*p_, pr).prot, Prot::kWrite));
  EXPECT_EQ(folio_at(cached).mapcount(), 2);
  EXPECT_EQ(folio_at(cached).ref_count(), 3);
  expect_pool(3, 2, 1);  // the private mapping's reservation is still unused
  // Neither VMA has an anon_vma (a read of a cached page prepares none): the child copies
  // no leaf and refaults both from the cache.
  child_ = p_->fork().value();
  EXPECT_EQ(pmd(*child_, pr).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(pmd(*child_, a).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(vma_at(*child_, pr).resv_map, nullptr);  // the temporary copy goes at once
  EXPECT_EQ(child_->read_u64(pr).value(), 5u);
  EXPECT_EQ(pmd(*child_, pr).pfn, cached);
  EXPECT_EQ(folio_at(cached).mapcount(), 3);
  EXPECT_EQ(folio_at(cached).ref_count(), 4);
  // The child's private write copies into an unreserved page (it owns no reservation).
  ASSERT_TRUE(child_->write_u64(pr, 6).is_ok());
  EXPECT_NE(pmd(*child_, pr).pfn, cached);
  EXPECT_TRUE(folio_at(pmd(*child_, pr).pfn).is_anon());
  EXPECT_EQ(folio_at(cached).mapcount(), 2);
  EXPECT_EQ(child_->read_u64(a).value(), 5u);
  EXPECT_EQ(p_->read_u64(pr).value(), 5u);
  expect_pool(3, 1, 1);
  child_.reset();
  expect_pool(3, 2, 1);
  ASSERT_TRUE(p_->munmap(pr, kHuge).is_ok());
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
  expect_pool(3, 2, 0);
  f.reset();
  expect_pool(3, 3, 0);
}

TEST_P(HugetlbfsTest, PrivateMappingCopiesOnWriteFromTheCachedFolio) {
  k_->set_nr_hugepages(3);
  auto f = make_file(2 * kHuge);
  const VirtAddr s = p_->mmap_file(VirtAddr(0), kHuge, kRw, kShared, f, 0).value();
  ASSERT_TRUE(p_->write_u64(s + 24, 0x5151).is_ok());
  const Pfn cached = pmd(*p_, s).pfn;
  expect_pool(3, 2, 0);
  const VirtAddr pr = q_->mmap_file(VirtAddr(0), 2 * kHuge, kRw, kPrivate, f, 0).value();
  EXPECT_NE(vma_at(*q_, pr).resv_map, nullptr) << "a private mapping owns its reservations";
  expect_pool(3, 2, 2);
  // The write copies into a private anon folio using the mapping's reservation.
  ASSERT_TRUE(q_->write_u64(pr + 32, 0x99).is_ok());
  const DecodedEntry qe = pmd(*q_, pr);
  EXPECT_NE(qe.pfn, cached);
  EXPECT_TRUE(has(qe.prot, Prot::kWrite));
  page::Folio copy = folio_at(qe.pfn);
  EXPECT_TRUE(copy.is_anon());
  EXPECT_EQ(copy.ref_count(), 1);
  EXPECT_EQ(q_->read_u64(pr + 24).value(), 0x5151u) << "copied from the cache";
  EXPECT_EQ(p_->read_u64(s + 32).value(), 0u) << "the file does not see private writes";
  EXPECT_EQ(folio_at(cached).mapcount(), 1);
  EXPECT_EQ(folio_at(cached).ref_count(), 2);
  expect_pool(3, 1, 1);
  // A hole in a private mapping gets a private anon page; nothing enters the cache.
  ASSERT_TRUE(q_->write_u64(pr + kHuge, 1).is_ok());
  EXPECT_TRUE(folio_at(pmd(*q_, pr + kHuge).pfn).is_anon());
  EXPECT_EQ(f->nr_cached(), 1u);
  expect_pool(3, 0, 0);
  q_.reset();
  expect_pool(3, 2, 0);
  ASSERT_TRUE(p_->munmap(s, kHuge).is_ok());
  f.reset();
  expect_pool(3, 3, 0);
}

TEST_P(HugetlbfsTest, TruncateUnmapsAndFreesPagesBackToThePool) {
  k_->set_nr_hugepages(6);
  auto f = make_file(3 * kHuge);
  const VirtAddr a = p_->mmap_file(VirtAddr(0), 3 * kHuge, kRw, kShared, f, 0).value();
  const VirtAddr b = q_->mmap_file(VirtAddr(0), 3 * kHuge, kRw, kPrivate, f, 0).value();
  expect_pool(6, 6, 6);  // 3 held by the inode, 3 owned by the private mapping
  ASSERT_TRUE(p_->write_u64(a, 1).is_ok());
  ASSERT_TRUE(p_->write_u64(a + 2 * kHuge, 3).is_ok());  // huge page 1 stays a hole
  EXPECT_EQ(q_->read_u64(b + 2 * kHuge).value(), 3u);
  expect_pool(6, 4, 4);
  const Pfn last = pmd(*p_, a + 2 * kHuge).pfn;
  // Cut to one huge page: pages 1 and 2 go from both mappings and from the cache.
  ASSERT_TRUE(f->ftruncate(kHuge).is_ok());
  EXPECT_EQ(f->size(), kHuge);
  EXPECT_EQ(pmd(*p_, a + 2 * kHuge).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(pmd(*q_, b + 2 * kHuge).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(folio_at(last).ref_count(), 0) << "back in the pool";
  EXPECT_EQ(f->nr_cached(), 1u);
  EXPECT_EQ(f->nr_regions(), 1u);
  // Page 2's folio went back; page 1's inode reservation was given back; the private
  // mapping keeps its 3.
  expect_pool(6, 5, 3);
  // Past EOF is SIGBUS (EFAULT from the CPU model) in both mappings.
  EXPECT_TRUE(p_->read_u64(a + kHuge).is_error());
  EXPECT_TRUE(q_->read_u64(b + 2 * kHuge).is_error());
  EXPECT_EQ(p_->read_u64(a).value(), 1u);
  // Growing does not bring pages back; the hole reads zero.
  ASSERT_TRUE(f->ftruncate(3 * kHuge).is_ok());
  EXPECT_EQ(p_->read_u64(a + 2 * kHuge).value(), 0u);
  expect_pool(6, 4, 3);  // an unreserved page: the inode gave that index's reservation back
  p_.reset();
  q_.reset();
  expect_pool(6, 4, 0);
  EXPECT_EQ(f->nr_cached(), 2u);
  f.reset();
  expect_pool(6, 6, 0);
}

TEST_P(HugetlbfsTest, ReservationsFailWithEnomemAndNoreserveFaultsWithoutOne) {
  k_->set_nr_hugepages(2);
  auto f = make_file(3 * kHuge);
  Result<VirtAddr> big = p_->mmap_file(VirtAddr(0), 3 * kHuge, kRw, kShared, f, 0);
  ASSERT_TRUE(big.is_error());
  EXPECT_EQ(big.error().code(), Errno::kENOMEM);
  EXPECT_EQ(f->nr_regions(), 0u);
  expect_pool(2, 2, 0);
  const VirtAddr a =
      p_->mmap_file(VirtAddr(0), 3 * kHuge, kRw, kShared | MmapFlags::kNoReserve, f, 0).value();
  expect_pool(2, 2, 0);
  ASSERT_TRUE(p_->write_u64(a, 1).is_ok());
  ASSERT_TRUE(p_->write_u64(a + kHuge, 2).is_ok());
  EXPECT_EQ(f->nr_regions(), 2u) << "instantiated pages join the regions";
  expect_pool(2, 0, 0);
  EXPECT_TRUE(p_->write_u64(a + 2 * kHuge, 3).is_error()) << "SIGBUS: the pool is empty";
  // A writable mapping past EOF extends the file.
  auto g = make_file(0);
  const VirtAddr c =
      q_->mmap_file(VirtAddr(0), kHuge, kRw, kShared | MmapFlags::kNoReserve, g, 0).value();
  EXPECT_EQ(g->size(), kHuge);
  ASSERT_TRUE(q_->munmap(c, kHuge).is_ok());
  ASSERT_TRUE(p_->munmap(a, 3 * kHuge).is_ok());
  expect_pool(2, 0, 0);  // "the cache keeps both"
  ASSERT_TRUE(f->ftruncate(0).is_ok());
  expect_pool(2, 2, 0);
}

INSTANTIATE_TEST_SUITE_P(Arches, HugetlbfsTest,
                         ::testing::Values(arch::ArchKind::kX86_64, arch::ArchKind::kArm64));

}  // namespace
}  // namespace dpmm::mm
