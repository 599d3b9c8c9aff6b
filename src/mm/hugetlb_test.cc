// Hugetlb: the default hstate's pool, MAP_HUGETLB mappings and their reservations, the
// hugetlb fault, COW after fork, unmap, mprotect and the alignment rules. Every test checks
// bytes, pool counts, refcounts, mapcounts and entries, and ends with the pool emptied and
// every page back in the allocator.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/decoded_entry.h"
#include "mm/gup.h"
#include "mm/hstate.h"
#include "mm/hugetlb.h"
#include "mm/pagemap.h"
#include "mm/process.h"
#include "mm/shmem.h"
#include "mm/test_machine.h"
#include "phys/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr MmapFlags kHugeAnon =
    MmapFlags::kPrivate | MmapFlags::kAnonymous | MmapFlags::kHugetlb;
constexpr uint64_t kHuge = kHpagePmdSize;
constexpr uint64_t kNr = kHpagePmdNr;

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

class HugetlbTest : public ::testing::TestWithParam<arch::ArchKind> {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel(arch::SwapNumberingKind::kLegacy, GetParam());
    free0_ = k_->nr_free_pages();
    p_ = Process::create(*k_).value();
  }
  void TearDown() override {
    child_.reset();
    p_.reset();
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
    EXPECT_EQ(m.surp, 0u);
    EXPECT_EQ(m.page_size, kHuge);
  }
  uint64_t pmd_word(Process& p, VirtAddr a) {
    const std::optional<EntrySlot> pmd = p.mm().page_table().walk_pmd(a);
    return pmd ? pmd->load() : 0;
  }
  DecodedEntry pmd(Process& p, VirtAddr a) {
    return k_->codec().decode(EntryLevel::kPmd, pmd_word(p, a));
  }
  page::Folio folio_at(Pfn pfn) { return page::page_folio(k_->pfn_to_page(pfn).value()); }
  Vma vma_at(Process& p, VirtAddr a) {
    ReadLocker guard(p.mm().mmap_lock());
    const Vma* v = p.mm().vma_lookup(a);
    EXPECT_NE(v, nullptr);
    return v != nullptr ? *v : Vma();
  }
  void write_pattern(Process& p, VirtAddr a, uint64_t len, uint64_t salt) {
    std::vector<uint64_t> v(len / 8);
    for (uint64_t i = 0; i < v.size(); ++i) v[i] = i ^ salt;
    ASSERT_TRUE(p.write(a, std::as_bytes(std::span(v))).is_ok());
  }
  void expect_pattern(Process& p, VirtAddr a, uint64_t len, uint64_t salt) {
    std::vector<uint64_t> v(len / 8);
    ASSERT_TRUE(p.read(a, std::as_writable_bytes(std::span(v))).is_ok());
    for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], i ^ salt) << "word " << i;
  }

  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> p_;
  std::unique_ptr<Process> child_;
};

TEST_P(HugetlbTest, PoolGrowsFromTheBuddyAndShrinksBack) {
  expect_pool(0, 0, 0);  // a boot without hugepages=
  const uint64_t base = k_->nr_free_pages();
  k_->set_nr_hugepages(4);
  expect_pool(4, 4, 0);
  EXPECT_EQ(k_->nr_free_pages(), base - 4 * kNr);
  k_->set_nr_hugepages(1);
  expect_pool(1, 1, 0);
  EXPECT_EQ(k_->nr_free_pages(), base - kNr);
  // Asking for more than RAM holds gives what the buddy has (the sysctl does not fail).
  k_->set_nr_hugepages(1u << 20);
  const uint64_t got = k_->hugetlb_meminfo().total;
  EXPECT_GT(got, 1u);
  EXPECT_LT(got, 1u << 20);
  EXPECT_EQ(k_->hugetlb_meminfo().free, got);
  k_->set_nr_hugepages(0);
  expect_pool(0, 0, 0);
  EXPECT_EQ(k_->nr_free_pages(), base);
}

TEST_P(HugetlbTest, MmapReservesTheWholeLengthOrFailsWithEnomem) {
  k_->set_nr_hugepages(2);
  // Three huge pages cannot be promised: ENOMEM, nothing mapped, nothing reserved.
  Result<VirtAddr> big = p_->mmap(VirtAddr(0), 3 * kHuge, kRw, kHugeAnon);
  ASSERT_TRUE(big.is_error());
  EXPECT_EQ(big.error().code(), Errno::kENOMEM);
  expect_pool(2, 2, 0);
  EXPECT_EQ(p_->mm().snapshot_vmas().size(), 0u);
  // The length rounds up to whole huge pages; the start is huge-page aligned.
  const VirtAddr a = p_->mmap(VirtAddr(0), kHuge + 1, kRw, kHugeAnon).value();
  EXPECT_TRUE(a.is_aligned(kHuge));
  const Vma v = vma_at(*p_, a);
  EXPECT_EQ(v.start, a);
  EXPECT_EQ(v.size(), 2 * kHuge);
  EXPECT_TRUE(has(v.flags, VmFlags::kHugetlb | VmFlags::kDontExpand));
  EXPECT_FALSE(has(v.flags, VmFlags::kAccount)) << "hugetlb is not charged to the commit limit";
  EXPECT_TRUE(is_vm_hugetlb_page(v));
  EXPECT_NE(v.resv_map, nullptr) << "the mapping owns its reservation";
  expect_pool(2, 2, 2);
  // Nothing is left to promise.
  Result<VirtAddr> more = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon);
  ASSERT_TRUE(more.is_error());
  EXPECT_EQ(more.error().code(), Errno::kENOMEM);
  // MAP_NORESERVE promises nothing, so it maps.
  const VirtAddr nr =
      p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon | MmapFlags::kNoReserve).value();
  EXPECT_EQ(vma_at(*p_, nr).resv_map, nullptr);
  expect_pool(2, 2, 2);
  // Two adjacent hugetlb mappings never merge.
  EXPECT_EQ(p_->mm().snapshot_vmas().size(), 2u);
  ASSERT_TRUE(p_->munmap(a, 2 * kHuge).is_ok());
  expect_pool(2, 2, 0);
  ASSERT_TRUE(p_->munmap(nr, kHuge).is_ok());
}

TEST_P(HugetlbTest, AlignmentAndUnmodelledFlagsAreEinval) {
  k_->set_nr_hugepages(2);
  const VirtAddr a = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).value();
  // MAP_FIXED at an address that is page- but not huge-page aligned.
  Result<VirtAddr> fixed = p_->mmap(a + kHuge + kPageSize, kHuge, kRw,
                                    kHugeAnon | MmapFlags::kFixed);
  ASSERT_TRUE(fixed.is_error());
  EXPECT_EQ(fixed.error().code(), Errno::kEINVAL);
  // MAP_HUGETLB with a file that is not on hugetlbfs.
  auto shm = ShmemFile::create(*k_, kHuge).value();
  Result<VirtAddr> notfs = p_->mmap_file(VirtAddr(0), kHuge, kRw,
                                         MmapFlags::kShared | MmapFlags::kHugetlb, shm, 0);
  ASSERT_TRUE(notfs.is_error());
  EXPECT_EQ(notfs.error().code(), Errno::kEINVAL);
  // munmap and mprotect that would cut a huge page: EINVAL, nothing changed.
  for (const auto& [start, len] : {std::pair{a, kPageSize}, std::pair{a + kPageSize, kPageSize},
                                   std::pair{a + kPageSize, kHuge - kPageSize}}) {
    const Status m = p_->munmap(start, len);
    ASSERT_TRUE(m.is_error());
    EXPECT_EQ(m.error().code(), Errno::kEINVAL);
    const Status pr = p_->mprotect(start, len, MmapProt::kRead);
    ASSERT_TRUE(pr.is_error());
    EXPECT_EQ(pr.error().code(), Errno::kEINVAL);
  }
  const Vma v = vma_at(*p_, a);
  EXPECT_EQ(v.start, a);
  EXPECT_EQ(v.size(), kHuge);
  EXPECT_TRUE(has(v.flags, VmFlags::kWrite));
  // MADV_DONTNEED from inside a huge page, and MADV_FREE of hugetlb: EINVAL.
  const Status dn = p_->madvise(a + kPageSize, kPageSize, Madvise::kDontNeed);
  ASSERT_TRUE(dn.is_error());
  EXPECT_EQ(dn.error().code(), Errno::kEINVAL);
  const Status fr = p_->madvise(a, kHuge, Madvise::kFree);
  ASSERT_TRUE(fr.is_error());
  EXPECT_EQ(fr.error().code(), Errno::kEINVAL);
  expect_pool(2, 2, 1);
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
}

TEST_P(HugetlbTest, WriteFaultMapsAZeroedPoolFolioByAPmdLeaf) {
  k_->set_nr_hugepages(3);
  const VirtAddr a = p_->mmap(VirtAddr(0), 2 * kHuge, kRw, kHugeAnon).value();
  expect_pool(3, 3, 2);
  ASSERT_TRUE(p_->write_u64(a + 3 * kPageSize + 8, 0x1234).is_ok());
  expect_pool(3, 2, 1);  // the fault used one reservation
  const DecodedEntry d = pmd(*p_, a);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(has(d.prot, Prot::kWrite));
  EXPECT_TRUE(has(d.prot, Prot::kDirty));
  EXPECT_TRUE(has(d.prot, Prot::kAccessed));
  EXPECT_EQ(d.pfn.raw() % kNr, 0u);
  EXPECT_TRUE(k_->codec().validate(EntryLevel::kPmd, pmd_word(*p_, a)).is_ok());
  EXPECT_FALSE(p_->mm().page_table().walk_pte(a).has_value()) << "no PTE table under a leaf";
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 0u) << "hugetlb leaves deposit no table";
  page::Folio f = folio_at(d.pfn);
  EXPECT_TRUE(f.is_hugetlb());
  EXPECT_TRUE(f.is_anon());
  EXPECT_EQ(f.order().raw(), kHpagePmdOrder);
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  EXPECT_EQ(f.entire_mapcount(), 1);
  EXPECT_EQ(page_mapcount(f.page(5)), 1);
  EXPECT_TRUE(page_anon_exclusive(f.head()));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0) << "hugetlb pages are not RSS";
  EXPECT_EQ(p_->read_u64(a + 3 * kPageSize + 8).value(), 0x1234u);
  EXPECT_EQ(p_->read_u64(a + kHuge - 8).value(), 0u);
  write_pattern(*p_, a, kHuge, 0x77);
  expect_pattern(*p_, a, kHuge, 0x77);
  uint64_t w = 0;
  std::memcpy(&w, k_->page_bytes(d.pfn + PageCount(9)).data() + 8, 8);
  EXPECT_EQ(w, (9 * kPageSize / 8 + 1) ^ 0x77) << "the bytes live in the pool folio";
  for (uint64_t i : {uint64_t{0}, uint64_t{1}, kNr - 1}) {
    const uint64_t e = pagemap_entry(p_->mm(), a + i * kPageSize);
    EXPECT_TRUE(e & kPmPresent);
    EXPECT_TRUE(e & kPmMmapExclusive);
    EXPECT_EQ(e & kPmPframeMask, d.pfn.raw() + i);
  }
  EXPECT_EQ(pagemap_entry(p_->mm(), a + kHuge) & kPmPresent, 0u) << "second huge page unfaulted";
  // munmap: the folio goes back to the pool (refcount 0, no mapping); both reservations end.
  ASSERT_TRUE(p_->munmap(a, 2 * kHuge).is_ok());
  expect_pool(3, 3, 0);
  EXPECT_EQ(f.ref_count(), 0);
  EXPECT_EQ(f.mapcount(), 0);
  EXPECT_FALSE(f.is_anon());
  EXPECT_TRUE(f.is_hugetlb()) << "still a pool folio";
}

TEST_P(HugetlbTest, ReadFaultMapsReadOnlyThenAWriteReusesTheFolio) {
  k_->set_nr_hugepages(1);
  const VirtAddr a = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).value();
  EXPECT_EQ(p_->read_u64(a + 100).value(), 0u);
  const DecodedEntry r = pmd(*p_, a);
  ASSERT_EQ(r.kind, DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(has(r.prot, Prot::kWrite)) << "a private mapping maps read-only first";
  EXPECT_FALSE(k_->is_huge_zero_pfn(r.pfn)) << "hugetlb has no zero page";
  expect_pool(1, 0, 0);
  ASSERT_TRUE(p_->write_u64(a + 8, 5).is_ok());
  const DecodedEntry w = pmd(*p_, a);
  EXPECT_EQ(w.pfn, r.pfn) << "hugetlb_wp reuses an exclusive folio";
  EXPECT_TRUE(has(w.prot, Prot::kWrite));
  EXPECT_TRUE(has(w.prot, Prot::kDirty));
  EXPECT_EQ(folio_at(w.pfn).ref_count(), 1);
  EXPECT_EQ(p_->read_u64(a + 8).value(), 5u);
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
}

TEST_P(HugetlbTest, APoolFolioIsZeroedWhenMappedAgain) {
  k_->set_nr_hugepages(1);
  VirtAddr a = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).value();
  write_pattern(*p_, a, kHuge, 0x5a5a);
  const Pfn first = pmd(*p_, a).pfn;
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
  a = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).value();
  EXPECT_EQ(p_->read_u64(a + 4096).value(), 0u);
  EXPECT_EQ(pmd(*p_, a).pfn, first) << "the one pool folio came back";
  std::vector<std::byte> all(kHuge);
  ASSERT_TRUE(p_->read(a, all).is_ok());
  for (uint64_t i = 0; i < kHuge; ++i) ASSERT_EQ(all[i], std::byte{0}) << "byte " << i;
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
}

TEST_P(HugetlbTest, NoPoolPageIsSigbusWithoutAReservation) {
  k_->set_nr_hugepages(1);
  const VirtAddr a =
      p_->mmap(VirtAddr(0), 2 * kHuge, kRw, kHugeAnon | MmapFlags::kNoReserve).value();
  expect_pool(1, 1, 0);
  ASSERT_TRUE(p_->write_u64(a, 1).is_ok());
  expect_pool(1, 0, 0);
  const Status s = p_->write_u64(a + kHuge, 2);
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kEFAULT);
  EXPECT_EQ(pmd(*p_, a + kHuge).kind, DecodedEntry::Kind::kNone);
  // A reserved mapping cannot be made meanwhile; the faulted page stays intact.
  EXPECT_TRUE(p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).is_error());
  EXPECT_EQ(p_->read_u64(a).value(), 1u);
  ASSERT_TRUE(p_->munmap(a, 2 * kHuge).is_ok());
  expect_pool(1, 1, 0);
}

TEST_P(HugetlbTest, AlignedPartialMunmapReturnsOnlyUnusedReservations) {
  k_->set_nr_hugepages(3);
  const VirtAddr a = p_->mmap(VirtAddr(0), 3 * kHuge, kRw, kHugeAnon).value();
  ASSERT_TRUE(p_->write_u64(a + kHuge, 11).is_ok());  // the middle page
  expect_pool(3, 2, 2);
  // The first (unfaulted) huge page goes: its reservation returns.
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
  expect_pool(3, 2, 1);
  // The faulted one goes: its folio returns, no reservation changes.
  ASSERT_TRUE(p_->munmap(a + kHuge, kHuge).is_ok());
  expect_pool(3, 3, 1);
  // The last piece still owns the last reservation; a fault uses it.
  const Vma last = vma_at(*p_, a + 2 * kHuge);
  EXPECT_EQ(last.pgoff, 2 * kNr);
  ASSERT_TRUE(p_->write_u64(a + 2 * kHuge, 12).is_ok());
  expect_pool(3, 2, 0);
  EXPECT_EQ(p_->read_u64(a + 2 * kHuge).value(), 12u);
  ASSERT_TRUE(p_->munmap(a + 2 * kHuge, kHuge).is_ok());
  expect_pool(3, 3, 0);
}

TEST_P(HugetlbTest, MprotectChangesEveryLeafAndSplitsAtHugeBoundaries) {
  k_->set_nr_hugepages(2);
  const VirtAddr a = p_->mmap(VirtAddr(0), 2 * kHuge, kRw, kHugeAnon).value();
  write_pattern(*p_, a, 2 * kHuge, 0x99);
  const Pfn p0 = pmd(*p_, a).pfn;
  ASSERT_TRUE(p_->mprotect(a, kHuge, MmapProt::kRead).is_ok());
  EXPECT_EQ(p_->mm().snapshot_vmas().size(), 2u) << "split at the huge-page boundary";
  DecodedEntry d = pmd(*p_, a);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(has(d.prot, Prot::kWrite));
  EXPECT_TRUE(has(d.prot, Prot::kDirty)) << "dirty survives the change";
  EXPECT_TRUE(has(pmd(*p_, a + kHuge).prot, Prot::kWrite)) << "outside the range";
  const Status s = p_->write_u64(a, 1);
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kEFAULT);
  expect_pattern(*p_, a, 2 * kHuge, 0x99);
  // PROT_NONE and back: the leaf keeps its folio; a private RW mapping maps read-only until
  // a write fault reuses the exclusive folio.
  ASSERT_TRUE(p_->mprotect(a, kHuge, MmapProt::kNone).is_ok());
  EXPECT_TRUE(p_->read_u64(a).is_error());
  ASSERT_TRUE(p_->mprotect(a, 2 * kHuge, kRw).is_ok());
  d = pmd(*p_, a);
  EXPECT_EQ(d.pfn, p0);
  ASSERT_TRUE(p_->write_u64(a, 3).is_ok());
  EXPECT_EQ(pmd(*p_, a).pfn, p0);
  EXPECT_TRUE(has(pmd(*p_, a).prot, Prot::kWrite));
  EXPECT_EQ(p_->read_u64(a).value(), 3u);
  expect_pool(2, 0, 0);
  ASSERT_TRUE(p_->munmap(a, 2 * kHuge).is_ok());
}

TEST_P(HugetlbTest, ForkSharesReadOnlyThenCowCopiesFromThePool) {
  k_->set_nr_hugepages(3);
  const VirtAddr a = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).value();
  write_pattern(*p_, a, kHuge, 0x1111);
  const Pfn orig = pmd(*p_, a).pfn;
  page::Folio f = folio_at(orig);
  child_ = p_->fork().value();
  EXPECT_EQ(vma_at(*child_, a).resv_map, nullptr) << "the child owns no reservation";
  const DecodedEntry pe = pmd(*p_, a);
  const DecodedEntry ce = pmd(*child_, a);
  EXPECT_EQ(pe.pfn, orig);
  EXPECT_EQ(ce.pfn, orig);
  EXPECT_FALSE(has(pe.prot, Prot::kWrite));
  EXPECT_FALSE(has(ce.prot, Prot::kWrite));
  EXPECT_EQ(f.ref_count(), 2);
  EXPECT_EQ(f.mapcount(), 2);
  EXPECT_EQ(f.entire_mapcount(), 2);
  EXPECT_FALSE(page_anon_exclusive(f.head()));
  EXPECT_EQ(pagemap_entry(p_->mm(), a) & kPmMmapExclusive, 0u) << "mapped by two mms";
  EXPECT_EQ(pagemap_entry(child_->mm(), a + kPageSize) & kPmPframeMask, orig.raw() + 1);
  expect_pool(3, 2, 0);
  // The child writes: it gets a copy from the pool.
  ASSERT_TRUE(child_->write_u64(a + 16, 0xc0ffee).is_ok());
  const DecodedEntry c2 = pmd(*child_, a);
  EXPECT_NE(c2.pfn, orig);
  EXPECT_TRUE(has(c2.prot, Prot::kWrite));
  page::Folio copy = folio_at(c2.pfn);
  EXPECT_TRUE(copy.is_hugetlb());
  EXPECT_EQ(copy.ref_count(), 1);
  EXPECT_EQ(copy.mapcount(), 1);
  EXPECT_TRUE(page_anon_exclusive(copy.head()));
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  expect_pool(3, 1, 0);
  EXPECT_EQ(child_->read_u64(a + 16).value(), 0xc0ffeeu);
  EXPECT_EQ(child_->read_u64(a + 24).value(), 3u ^ 0x1111u);
  expect_pattern(*p_, a, kHuge, 0x1111);
  // The parent writes: its folio is mapped once now, so it is reused.
  ASSERT_TRUE(p_->write_u64(a, 42).is_ok());
  EXPECT_EQ(pmd(*p_, a).pfn, orig);
  EXPECT_TRUE(page_anon_exclusive(f.head()));
  EXPECT_EQ(p_->read_u64(a).value(), 42u);
  EXPECT_EQ(child_->read_u64(a).value(), 0u ^ 0x1111u);
  child_.reset();
  expect_pool(3, 2, 0);
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
}

TEST_P(HugetlbTest, ForkCopiesAPinnedFolioForTheChild) {
  k_->set_nr_hugepages(2);
  const VirtAddr a = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).value();
  write_pattern(*p_, a, kHuge, 0x2222);
  const Pfn orig = pmd(*p_, a).pfn;
  std::vector<page::Page*> pinned =
      pin_user_pages_unlocked(p_->mm(), a + 5 * kPageSize, 1, FollFlags::kWrite).value();
  ASSERT_EQ(pinned.size(), 1u);
  EXPECT_EQ(k_->page_to_pfn(pinned[0]), orig + PageCount(5));
  EXPECT_EQ(pmd(*p_, a).kind, DecodedEntry::Kind::kPresent) << "GUP does not split hugetlb";
  child_ = p_->fork().value();
  const DecodedEntry ce = pmd(*child_, a);
  EXPECT_NE(ce.pfn, orig) << "the child got its own copy";
  EXPECT_TRUE(has(pmd(*p_, a).prot, Prot::kWrite)) << "the parent keeps its writable leaf";
  EXPECT_TRUE(page_anon_exclusive(folio_at(orig).head()));
  expect_pattern(*child_, a, kHuge, 0x2222);
  ASSERT_TRUE(p_->write_u64(a, 7).is_ok());
  EXPECT_EQ(pmd(*p_, a).pfn, orig);
  EXPECT_EQ(child_->read_u64(a).value(), 0u ^ 0x2222u);
  unpin_user_pages(pinned);
  child_.reset();
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
}

TEST_P(HugetlbTest, DontneedZapsWholeHugePagesAndRestoresTheReservation) {
  k_->set_nr_hugepages(3);
  const VirtAddr a = p_->mmap(VirtAddr(0), 3 * kHuge, kRw, kHugeAnon).value();
  write_pattern(*p_, a, 3 * kHuge, 0x3333);
  expect_pool(3, 0, 0);
  const Pfn second = pmd(*p_, a + kHuge).pfn;
  page::Folio f2 = folio_at(second);
  // A length that ends inside the third huge page rounds down: only the second goes.
  ASSERT_TRUE(p_->madvise(a + kHuge, kHuge + kPageSize, Madvise::kDontNeed).is_ok());
  EXPECT_EQ(pmd(*p_, a + kHuge).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(f2.ref_count(), 0) << "back in the pool";
  EXPECT_EQ(f2.mapcount(), 0);
  EXPECT_FALSE(f2.is_anon());
  EXPECT_EQ(f2.head()->private_data(), 0u) << "HPG_restore_reserve cleared by the free";
  // The owner's reservation for the zapped page came back with the folio.
  expect_pool(3, 1, 1);
  expect_pattern(*p_, a, kHuge, 0x3333);
  std::vector<uint64_t> third(kHuge / 8);
  ASSERT_TRUE(p_->read(a + 2 * kHuge, std::as_writable_bytes(std::span(third))).is_ok());
  for (uint64_t i = 0; i < third.size(); ++i)
    ASSERT_EQ(third[i], (2 * kHuge / 8 + i) ^ 0x3333) << "third page kept, word " << i;
  // A length shorter than a huge page zaps nothing.
  ASSERT_TRUE(p_->madvise(a, kPageSize, Madvise::kDontNeed).is_ok());
  EXPECT_EQ(pmd(*p_, a).kind, DecodedEntry::Kind::kPresent);
  expect_pool(3, 1, 1);
  // The refault reads zeros and uses the restored reservation, so an unreserved
  // MAP_NORESERVE mapping could not have taken the page meanwhile.
  const VirtAddr nr =
      p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon | MmapFlags::kNoReserve).value();
  EXPECT_TRUE(p_->write_u64(nr, 1).is_error()) << "the only free page is reserved";
  EXPECT_EQ(p_->read_u64(a + kHuge + 64).value(), 0u);
  expect_pool(3, 0, 0);
  const DecodedEntry d = pmd(*p_, a + kHuge);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(folio_at(d.pfn).ref_count(), 1);
  EXPECT_EQ(folio_at(d.pfn).mapcount(), 1);
  // DONTNEED over the whole mapping, then munmap: every folio and reservation returns.
  ASSERT_TRUE(p_->madvise(a, 3 * kHuge, Madvise::kDontNeed).is_ok());
  expect_pool(3, 3, 3);
  ASSERT_TRUE(p_->munmap(a, 3 * kHuge).is_ok());
  expect_pool(3, 3, 0);
  ASSERT_TRUE(p_->munmap(nr, kHuge).is_ok());
}

TEST_P(HugetlbTest, DontneedOfASharedCowFolioKeepsItForTheChild) {
  k_->set_nr_hugepages(2);
  const VirtAddr a = p_->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon).value();
  write_pattern(*p_, a, kHuge, 0x4444);
  const Pfn orig = pmd(*p_, a).pfn;
  child_ = p_->fork().value();
  page::Folio f = folio_at(orig);
  EXPECT_EQ(f.mapcount(), 2);
  // The parent drops its mapping: the child's stays; the reservation stays consumed (dpmm's
  // simplification: docs/mm.md).
  ASSERT_TRUE(p_->madvise(a, kHuge, Madvise::kDontNeed).is_ok());
  EXPECT_EQ(pmd(*p_, a).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  expect_pool(2, 1, 0);
  expect_pattern(*child_, a, kHuge, 0x4444);
  EXPECT_EQ(p_->read_u64(a).value(), 0u) << "the parent refaults a fresh zeroed page";
  expect_pool(2, 0, 0);
  child_.reset();
  expect_pool(2, 1, 0);
  ASSERT_TRUE(p_->munmap(a, kHuge).is_ok());
}

TEST_P(HugetlbTest, MremapMovesLeavesAndReservationsAndNeverGrows) {
  k_->set_nr_hugepages(4);
  const VirtAddr a = p_->mmap(VirtAddr(0), 3 * kHuge, kRw, kHugeAnon).value();
  write_pattern(*p_, a, kHuge, 0x5151);  // only the first huge page faulted
  const Pfn first = pmd(*p_, a).pfn;
  expect_pool(4, 3, 2);
  const VirtAddr dst = p_->mmap(VirtAddr(0), 4 * kHuge, kRw, kHugeAnon | MmapFlags::kNoReserve)
                           .value();
  ASSERT_TRUE(p_->munmap(dst, 4 * kHuge).is_ok());
  // The errors: unaligned addresses, growing, DONTUNMAP (VM_DONTEXPAND).
  const auto einval = [&](Result<VirtAddr> r) {
    ASSERT_TRUE(r.is_error());
    EXPECT_EQ(r.error().code(), Errno::kEINVAL);
  };
  einval(p_->mremap(a + kPageSize, kHuge, kHuge, MremapFlags::kMayMove | MremapFlags::kFixed,
                    dst));
  einval(p_->mremap(a, kHuge, kHuge, MremapFlags::kMayMove | MremapFlags::kFixed,
                    dst + kPageSize));
  einval(p_->mremap(a, kHuge, 2 * kHuge, MremapFlags::kMayMove));
  einval(p_->mremap(a, kHuge, kHuge + 1, MremapFlags::kMayMove));
  einval(p_->mremap(a, kHuge, kHuge, MremapFlags::kMayMove | MremapFlags::kDontUnmap));
  einval(p_->mremap(a, kHuge, kHuge, MremapFlags::kNone, VirtAddr(kPageSize)));
  expect_pool(4, 3, 2);
  // Lengths round up: a one-byte length names the whole first huge page, which moves with
  // its leaf; the VMA keeps its page offset.
  const VirtAddr to =
      p_->mremap(a, 1, 1, MremapFlags::kMayMove | MremapFlags::kFixed, dst).value();
  EXPECT_EQ(to, dst);
  EXPECT_EQ(pmd(*p_, a).kind, DecodedEntry::Kind::kNone);
  EXPECT_EQ(pmd(*p_, dst).pfn, first);
  page::Folio f = folio_at(first);
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  EXPECT_TRUE(page_anon_exclusive(f.head()));
  expect_pattern(*p_, dst, kHuge, 0x5151);
  const Vma moved = vma_at(*p_, dst);
  EXPECT_EQ(moved.size(), kHuge);
  EXPECT_EQ(moved.pgoff, 0u);
  EXPECT_NE(moved.resv_map, nullptr) << "the moved VMA still owns the reservation map";
  EXPECT_EQ(vma_at(*p_, a + kHuge).pgoff, kNr) << "the rest stays where it was";
  expect_pool(4, 3, 2);  // no reservation moved or leaked
  // The rest still uses its reservations; the moved page is still consumed.
  ASSERT_TRUE(p_->write_u64(a + kHuge, 9).is_ok());
  expect_pool(4, 2, 1);
  // A shrink in place drops the tail's unused reservation.
  EXPECT_EQ(p_->mremap(a + kHuge, 2 * kHuge, kHuge, MremapFlags::kNone).value(), a + kHuge);
  expect_pool(4, 2, 0);
  EXPECT_EQ(p_->read_u64(a + kHuge).value(), 9u);
  // Moving a faulted page back over a range of the same mapping's old address.
  EXPECT_EQ(p_->mremap(dst, kHuge, kHuge, MremapFlags::kMayMove | MremapFlags::kFixed, a).value(),
            a);
  expect_pattern(*p_, a, kHuge, 0x5151);
  EXPECT_EQ(pmd(*p_, a).pfn, first);
  ASSERT_TRUE(p_->munmap(a, 2 * kHuge).is_ok());
  expect_pool(4, 4, 0);
  EXPECT_EQ(f.ref_count(), 0);
}

TEST_P(HugetlbTest, ExitReturnsEveryFolioAndReservation) {
  k_->set_nr_hugepages(4);
  const VirtAddr a = p_->mmap(VirtAddr(0), 4 * kHuge, kRw, kHugeAnon).value();
  ASSERT_TRUE(p_->write_u64(a, 1).is_ok());
  ASSERT_TRUE(p_->write_u64(a + 2 * kHuge, 1).is_ok());
  expect_pool(4, 2, 2);
  // A shrink cannot take pages in use or promised.
  k_->set_nr_hugepages(0);
  expect_pool(4, 2, 2);
  p_.reset();
  expect_pool(4, 4, 0);
}

// hugepages= at boot (KernelOptions::nr_hugepages) fills the pool before anything runs; the
// Kernel hands the pool back to the buddy when it goes.
TEST(HugetlbBootTest, NrHugepagesOptionFillsThePoolAtCreation) {
  const auto machine = [] {
    return phys::testing::small_machine("hugetlb-boot", arch::ArchKind::kX86_64, 64);
  };
  KernelOptions options;
  options.deferred_init = page::DeferredInit::kNo;
  const uint64_t plain_free = [&] {
    auto k = Kernel::create(machine(), options).value();
    EXPECT_EQ(k->hugetlb_meminfo().total, 0u) << "no pool by default";
    return k->nr_free_pages();
  }();
  options.nr_hugepages = 5;
  auto k = Kernel::create(machine(), options).value();
  const HugetlbMeminfo m = k->hugetlb_meminfo();
  EXPECT_EQ(m.total, 5u);
  EXPECT_EQ(m.free, 5u);
  EXPECT_EQ(k->nr_free_pages(), plain_free - 5 * kNr);
  // 64 MiB cannot hold 100 huge pages: the pool gets what the buddy has, fewer than 32.
  options.nr_hugepages = 100;
  auto small = Kernel::create(machine(), options).value();
  EXPECT_GT(small->hugetlb_meminfo().total, 5u);
  EXPECT_LT(small->hugetlb_meminfo().total, 32u);
}

INSTANTIATE_TEST_SUITE_P(Arches, HugetlbTest,
                         ::testing::Values(arch::ArchKind::kX86_64, arch::ArchKind::kArm64));

}  // namespace
}  // namespace dpmm::mm
