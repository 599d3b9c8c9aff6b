// madvise: argument checks and holes, DONTNEED on anon and shared memory, FREE (lazyfree
// state, bytes kept), HUGEPAGE/NOHUGEPAGE flags with VMA split and merge, and MADV_COLLAPSE
// failing the way madvise_collapse does when no huge page can be allocated.
#include <gtest/gtest.h>

#include "arch/decoded_entry.h"
#include "mm/gup.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr uint64_t kPmd = uint64_t{1} << kPmdShift;

class MadviseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel();
    free0_ = k_->nr_free_pages();
    p_ = Process::create(*k_).value();
  }
  void TearDown() override {
    p_.reset();
    EXPECT_EQ(k_->nr_free_pages(), free0_);
  }
  arch::DecodedEntry pte(VirtAddr a) {
    return k_->codec().decode(arch::EntryLevel::kPte,
                              p_->mm().page_table().walk_pte(a).value().load());
  }
  Errno err(VirtAddr a, uint64_t len, Madvise m) {
    Status st = p_->madvise(a, len, m);
    EXPECT_TRUE(st.is_error());
    return st.is_error() ? st.error().code() : Errno::kEPERM;
  }
  // A 2*PMD anonymous mapping and its PMD-aligned half.
  VirtAddr aligned_region(MmapProt prot = kRw) {
    const VirtAddr raw = p_->mmap_anon(2 * kPmd, prot).value();
    return VirtAddr((raw.raw() + kPmd - 1) & ~(kPmd - 1));
  }
  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> p_;
};

TEST_F(MadviseTest, ArgumentChecksAndHoles) {
  const VirtAddr a = p_->mmap_anon(4 * kPageSize, kRw).value();
  EXPECT_EQ(err(a + 1, kPageSize, Madvise::kDontNeed), Errno::kEINVAL);
  EXPECT_EQ(err(a, kPageSize, static_cast<Madvise>(5)), Errno::kEINVAL);
  EXPECT_EQ(err(a, UINT64_MAX, Madvise::kDontNeed), Errno::kEINVAL);
  EXPECT_TRUE(p_->madvise(a, 0, Madvise::kDontNeed).is_ok());
  // A hole: ENOMEM, and the mapped part is still advised.
  ASSERT_TRUE(p_->munmap(a + kPageSize, kPageSize).is_ok());
  ASSERT_TRUE(p_->write_u64(a + 2 * kPageSize, 3).is_ok());
  EXPECT_EQ(err(a, 4 * kPageSize, Madvise::kDontNeed), Errno::kENOMEM);
  EXPECT_EQ(p_->read_u64(a + 2 * kPageSize).value(), 0u);
  EXPECT_EQ(err(a - 16 * kPageSize, kPageSize, Madvise::kNormal), Errno::kENOMEM);
  EXPECT_TRUE(p_->madvise(a, kPageSize, Madvise::kWillNeed).is_ok());
}

TEST_F(MadviseTest, DontNeedDropsAnonPagesButNotSharedData) {
  const VirtAddr a = p_->mmap_anon(2 * kPageSize, kRw).value();
  ASSERT_TRUE(p_->fill(a, 2 * kPageSize, std::byte{0x7e}).is_ok());
  const uint64_t free_before = k_->nr_free_pages();
  ASSERT_TRUE(p_->madvise(a, 2 * kPageSize, Madvise::kDontNeed).is_ok());
  EXPECT_EQ(k_->nr_free_pages(), free_before + 2);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_EQ(p_->read_u64(a).value(), 0u);
  EXPECT_EQ(p_->mm().snapshot_vmas().size(), 1u);

  const VirtAddr s =
      p_->mmap(VirtAddr(0), kPageSize, kRw, MmapFlags::kShared | MmapFlags::kAnonymous).value();
  ASSERT_TRUE(p_->write_u64(s, 42).is_ok());
  ASSERT_TRUE(p_->madvise(s, kPageSize, Madvise::kDontNeed).is_ok());
  EXPECT_EQ(p_->mm().page_table().walk_pte(s)->load(), 0u);
  EXPECT_EQ(p_->read_u64(s).value(), 42u);  // refaulted from the page cache
}

TEST_F(MadviseTest, FreeMakesExclusiveAnonPagesLazyAndKeepsTheirBytes) {
  const VirtAddr a = p_->mmap_anon(2 * kPageSize, kRw).value();
  ASSERT_TRUE(p_->write_u64(a, 9).is_ok());
  page::Folio f = page::page_folio(k_->pfn_to_page(pte(a).pfn).value());
  EXPECT_TRUE(arch::has(pte(a).prot, arch::Prot::kDirty));
  ASSERT_TRUE(p_->madvise(a, 2 * kPageSize, Madvise::kFree).is_ok());
  EXPECT_FALSE(arch::has(pte(a).prot, arch::Prot::kDirty));
  EXPECT_FALSE(arch::has(pte(a).prot, arch::Prot::kAccessed));
  EXPECT_FALSE(f.test_flag(page::PageFlag::kDirty));
  EXPECT_FALSE(f.test_flag(page::PageFlag::kSwapBacked));  // lazyfree
  EXPECT_EQ(f.mapcount(), 1);
  EXPECT_EQ(p_->read_u64(a).value(), 9u);  // dpmm never reclaims: the bytes stay
  ASSERT_TRUE(p_->write_u64(a, 10).is_ok());
  EXPECT_TRUE(arch::has(pte(a).prot, arch::Prot::kDirty));
  const VirtAddr s =
      p_->mmap(VirtAddr(0), kPageSize, kRw, MmapFlags::kShared | MmapFlags::kAnonymous).value();
  EXPECT_EQ(err(s, kPageSize, Madvise::kFree), Errno::kEINVAL);
}

TEST_F(MadviseTest, HugePageFlagsSplitAndMergeVmas) {
  const VirtAddr a = p_->mmap_anon(4 * kPageSize, kRw).value();
  ASSERT_TRUE(p_->madvise(a + kPageSize, 2 * kPageSize, Madvise::kHugePage).is_ok());
  std::vector<Vma> v = p_->mm().snapshot_vmas();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_FALSE(has(v[0].flags, VmFlags::kHugePage));
  EXPECT_TRUE(has(v[1].flags, VmFlags::kHugePage));
  EXPECT_EQ(v[1].start, a + kPageSize);
  EXPECT_EQ(v[1].end, a + 3 * kPageSize);
  ASSERT_TRUE(p_->madvise(a, 4 * kPageSize, Madvise::kNoHugePage).is_ok());
  v = p_->mm().snapshot_vmas();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_TRUE(has(v[0].flags, VmFlags::kNoHugePage));
  EXPECT_FALSE(has(v[0].flags, VmFlags::kHugePage));
  ASSERT_TRUE(p_->madvise(a, 4 * kPageSize, Madvise::kHugePage).is_ok());
  v = p_->mm().snapshot_vmas();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_TRUE(has(v[0].flags, VmFlags::kHugePage));
  EXPECT_FALSE(has(v[0].flags, VmFlags::kNoHugePage));
  ASSERT_TRUE(p_->madvise(a, kPageSize, Madvise::kRandom).is_ok());
  v = p_->mm().snapshot_vmas();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_TRUE(has(v[0].flags, VmFlags::kRandRead));
}

TEST_F(MadviseTest, HugePageFaultsMapAPmdLeaf) {
  const VirtAddr map = aligned_region();
  ASSERT_TRUE(p_->madvise(map, kPmd, Madvise::kHugePage).is_ok());
  ASSERT_TRUE(p_->write_u64(map + 5 * kPageSize, 1).is_ok());
  // do_huge_pmd_anonymous_page: the whole 2 MiB at once, mapped by a PMD leaf.
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kPmd / kPageSize));
  EXPECT_FALSE(p_->mm().page_table().walk_pte(map).has_value());
  const uint64_t pmd = p_->mm().page_table().walk_pmd(map)->load();
  EXPECT_EQ(k_->codec().decode(arch::EntryLevel::kPmd, pmd).kind,
            arch::DecodedEntry::Kind::kPresent);
  EXPECT_EQ(p_->read_u64(map + 5 * kPageSize).value(), 1u);
}

TEST_F(MadviseTest, CollapseMakesAThpOfBasePages) {
  const VirtAddr map = aligned_region();
  // Every page present and writable: the scan passes and collapse_huge_page maps a THP.
  ASSERT_TRUE(p_->fill(map, kPmd, std::byte{1}).is_ok());
  ASSERT_TRUE(p_->write_u64(map + 8 * kPageSize, 42).is_ok());
  const uint64_t free_before = k_->nr_free_pages();
  ASSERT_TRUE(p_->madvise(map, kPmd, Madvise::kCollapse).is_ok());
  const arch::DecodedEntry d =
      k_->codec().decode(arch::EntryLevel::kPmd, p_->mm().page_table().walk_pmd(map)->load());
  ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite));
  // 512 old pages freed, a THP allocated; the PTE table is now the deposited one.
  EXPECT_EQ(k_->nr_free_pages(), free_before);
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 1u);
  EXPECT_EQ(p_->read_u64(map + kPmd - 8).value(), 0x0101010101010101u);
  EXPECT_EQ(p_->read_u64(map + 8 * kPageSize).value(), 42u);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kPmd / kPageSize));
  // Again: SCAN_PMD_MAPPED counts as done.
  EXPECT_TRUE(p_->madvise(map, kPmd, Madvise::kCollapse).is_ok());
  // Holes and zero pages become zeroes of the THP.
  const VirtAddr sparse = aligned_region();
  ASSERT_TRUE(p_->write_u64(sparse + 3 * kPageSize, 3).is_ok());
  EXPECT_EQ(p_->read_u64(sparse + 5 * kPageSize).value(), 0u);  // a zero-page PTE
  ASSERT_TRUE(p_->madvise(sparse, kPmd, Madvise::kCollapse).is_ok());
  EXPECT_EQ(p_->read_u64(sparse + 3 * kPageSize).value(), 3u);
  EXPECT_EQ(p_->read_u64(sparse + 5 * kPageSize).value(), 0u);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(2 * kPmd / kPageSize));
  // A page someone else holds a reference to: SCAN_PAGE_COUNT, EAGAIN.
  const VirtAddr held = aligned_region();
  ASSERT_TRUE(p_->fill(held, kPmd, std::byte{2}).is_ok());
  page::Page* pinned = nullptr;
  {
    ReadLocker guard(p_->mm().mmap_lock());
    pinned = get_user_pages_remote(p_->mm(), held, 1, FollFlags::kGet).value()[0];
  }
  EXPECT_EQ(err(held, kPmd, Madvise::kCollapse), Errno::kEAGAIN);
  put_user_page(pinned);
  EXPECT_TRUE(p_->madvise(held, kPmd, Madvise::kCollapse).is_ok());
  EXPECT_EQ(p_->read_u64(held + kPmd - 8).value(), 0x0202020202020202u);
  // A range inside one PMD: madvise_collapse's unsigned count wraps: EINVAL.
  EXPECT_EQ(err(map + kPageSize, 2 * kPageSize, Madvise::kCollapse), Errno::kEINVAL);
  // An aligned empty range of the VMA (hstart == hend) succeeds with nothing to do.
  // [map, map + 4K): hstart = hend = map, so thps (0) == 0.
  EXPECT_TRUE(p_->madvise(map, kPageSize, Madvise::kCollapse).is_ok());
  // Read-only pages: SCAN_PAGE_RO, EINVAL.
  const VirtAddr ro = aligned_region(MmapProt::kRead);
  (void)p_->read_u64(ro).value();
  EXPECT_EQ(err(ro, kPmd, Madvise::kCollapse), Errno::kEINVAL);
  // VM_NOHUGEPAGE refuses outright.
  ASSERT_TRUE(p_->madvise(map, kPmd, Madvise::kNoHugePage).is_ok());
  EXPECT_EQ(err(map, kPmd, Madvise::kCollapse), Errno::kEINVAL);
}

}  // namespace
}  // namespace dpmm::mm
