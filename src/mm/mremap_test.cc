// mremap: shrink, grow in place, move (entries carried as they are, counts unchanged, the
// rmap following the moved VMA), MREMAP_FIXED over a mapping, MREMAP_DONTUNMAP, errno cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/process.h"
#include "mm/rmap.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr MremapFlags kMoveFixed = MremapFlags::kMayMove | MremapFlags::kFixed;

class Recorder final : public MmuNotifier {
 public:
  void invalidate_range_start(const MmuNotifierRange& r) override { starts.push_back(r); }
  std::vector<MmuNotifierRange> starts;
};

class MremapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel();
    free0_ = k_->nr_free_pages();
    p_ = Process::create(*k_).value();
  }
  void TearDown() override {
    child_.reset();
    p_.reset();
    EXPECT_EQ(k_->nr_free_pages(), free0_);
  }
  uint64_t word(Process& p, VirtAddr a) {
    auto s = p.mm().page_table().walk_pte(a);
    return s ? s->load() : 0;
  }
  Pfn pfn(Process& p, VirtAddr a) {
    return k_->codec().decode(arch::EntryLevel::kPte, word(p, a)).pfn;
  }
  page::Folio folio(Process& p, VirtAddr a) {
    return page::page_folio(k_->pfn_to_page(pfn(p, a)).value());
  }
  Errno err(VirtAddr a, uint64_t ol, uint64_t nl, MremapFlags f, VirtAddr na = VirtAddr(0)) {
    auto r = p_->mremap(a, ol, nl, f, na);
    EXPECT_TRUE(r.is_error());
    return r.is_error() ? r.error().code() : Errno::kEPERM;
  }
  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> p_;
  std::unique_ptr<Process> child_;
};

TEST_F(MremapTest, ShrinkAndGrowInPlace) {
  const VirtAddr a = p_->mmap_anon(4 * kPageSize, kRw).value();
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(p_->write_u64(a + i * kPageSize, 100 + i).is_ok());
  EXPECT_EQ(p_->mremap(a, 4 * kPageSize, 2 * kPageSize, MremapFlags::kNone).value(), a);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 2);
  EXPECT_EQ(p_->read_u64(a + 2 * kPageSize).error().code(), Errno::kEFAULT);
  // The space after is free again: grow in place; the new tail reads as zeros.
  EXPECT_EQ(p_->mremap(a, 2 * kPageSize, 3 * kPageSize, MremapFlags::kNone).value(), a);
  EXPECT_EQ(p_->read_u64(a + kPageSize).value(), 101u);
  EXPECT_EQ(p_->read_u64(a + 2 * kPageSize).value(), 0u);
  const std::vector<Vma> v = p_->mm().snapshot_vmas();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].end, a + 3 * kPageSize);
  // Blocked growth needs MREMAP_MAYMOVE.
  ASSERT_TRUE(p_->mmap(a + 3 * kPageSize, kPageSize, kRw,
                       MmapFlags::kPrivate | MmapFlags::kAnonymous | MmapFlags::kFixed).is_ok());
  ASSERT_TRUE(p_->mprotect(a + 3 * kPageSize, kPageSize, MmapProt::kRead).is_ok());
  EXPECT_EQ(err(a, 3 * kPageSize, 5 * kPageSize, MremapFlags::kNone), Errno::kENOMEM);
  const VirtAddr moved = p_->mremap(a, 3 * kPageSize, 5 * kPageSize, MremapFlags::kMayMove).value();
  EXPECT_NE(moved, a);
  EXPECT_EQ(p_->read_u64(moved).value(), 100u);
  EXPECT_EQ(p_->read_u64(moved + kPageSize).value(), 101u);
  EXPECT_EQ(p_->read_u64(moved + 4 * kPageSize).value(), 0u);
}

TEST_F(MremapTest, MoveCarriesEntriesAndTheRmapFollows) {
  Recorder rec;
  ASSERT_TRUE(p_->mm().mmu_notifier_register(rec).is_ok());
  const VirtAddr a = p_->mmap_anon(8 * kPageSize, kRw).value();
  ASSERT_TRUE(p_->write_u64(a, 1).is_ok());
  ASSERT_TRUE(p_->write_u64(a + kPageSize, 2).is_ok());
  (void)p_->read_u64(a + 2 * kPageSize).value();  // the zero page
  // A non-present entry (a guard marker) travels as it is.
  const uint64_t marker = MUST(k_->codec().make_swap(
      arch::EntryLevel::kPte,
      arch::make_pte_marker_entry(k_->softleaf_format(), arch::PteMarker::kGuard).value(),
      arch::SwpBit::kNone), "guard marker");
  {
    WriteLocker guard(p_->mm().mmap_lock());
    EntrySlot s = p_->mm().page_table().walk_pte(a + 3 * kPageSize).value();
    SpinLocker ptl(p_->mm().page_table().lock());
    s.store(marker);
  }
  const Pfn pfn0 = pfn(*p_, a);
  page::Folio f0 = folio(*p_, a);
  const uint64_t index = f0.index();
  const uint64_t w2 = word(*p_, a + 2 * kPageSize);
  const VirtAddr target = a + 64 * kPageSize + 3 * kPageSize;  // not PMD aligned
  ASSERT_TRUE(p_->munmap(a + 4 * kPageSize, 4 * kPageSize).is_ok());
  rec.starts.clear();
  EXPECT_EQ(p_->mremap(a, 4 * kPageSize, 4 * kPageSize, kMoveFixed, target).value(), target);
  // The old range is gone; the new one has the same pages, entries and counts.
  EXPECT_EQ(word(*p_, a), 0u);
  EXPECT_EQ(p_->read_u64(a).error().code(), Errno::kEFAULT);
  EXPECT_EQ(pfn(*p_, target), pfn0);
  EXPECT_EQ(word(*p_, target + 2 * kPageSize), w2);
  EXPECT_EQ(word(*p_, target + 3 * kPageSize), marker);
  EXPECT_EQ(f0.ref_count(), 1);
  EXPECT_EQ(f0.mapcount(), 1);
  EXPECT_EQ(f0.index(), index);
  EXPECT_EQ(p_->read_u64(target + kPageSize).value(), 2u);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 2);
  {
    ReadLocker guard(p_->mm().mmap_lock());
    const Vma* vma = p_->mm().vma_lookup(target);
    EXPECT_EQ(vma->pgoff, index);
    EXPECT_EQ(vma->start, target);
  }
  // MMU_NOTIFY_UNMAP over the old range.
  ASSERT_FALSE(rec.starts.empty());
  EXPECT_EQ(rec.starts[0].event, MmuNotifyEvent::kUnmap);
  EXPECT_EQ(rec.starts[0].start, a);
  EXPECT_EQ(rec.starts[0].end, a + 4 * kPageSize);
  // The rmap finds the page at its new address.
  auto found = folio_find_mappings(*k_, f0, arch::PfnOrOffset::of_pfn(pfn0), PvmwFlags::kNone);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].address, target);
  // Writes still reuse the exclusive page (no COW).
  ASSERT_TRUE(p_->write_u64(target, 5).is_ok());
  EXPECT_EQ(pfn(*p_, target), pfn0);
  ASSERT_TRUE(p_->mm().mmu_notifier_unregister(rec).is_ok());
}

TEST_F(MremapTest, RmapFindsAForkedPageAfterTheChildMovedIt) {
  const VirtAddr a = p_->mmap_anon(2 * kPageSize, kRw).value();
  ASSERT_TRUE(p_->write_u64(a, 77).is_ok());
  child_ = p_->fork().value();
  page::Folio f = folio(*p_, a);
  const VirtAddr to =
      child_->mremap(a, 2 * kPageSize, 2 * kPageSize, kMoveFixed, a + 64 * kPageSize).value();
  EXPECT_EQ(to, a + 64 * kPageSize);
  auto found = folio_find_mappings(*k_, f, arch::PfnOrOffset::of_pfn(pfn(*p_, a)), PvmwFlags::kNone);
  std::vector<std::pair<Mm*, uint64_t>> got;
  for (auto& m : found) got.emplace_back(m.mm, m.address.raw());
  std::sort(got.begin(), got.end());
  std::vector<std::pair<Mm*, uint64_t>> want{{&p_->mm(), a.raw()}, {&child_->mm(), to.raw()}};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(f.mapcount(), 2);
  // COW still works from the moved mapping.
  ASSERT_TRUE(child_->write_u64(to, 78).is_ok());
  EXPECT_EQ(p_->read_u64(a).value(), 77u);
  EXPECT_EQ(child_->read_u64(to).value(), 78u);
  EXPECT_EQ(f.mapcount(), 1);
}

TEST_F(MremapTest, FixedReplacesTheTargetAndDontUnmapLeavesAnEmptyVma) {
  const VirtAddr a = p_->mmap_anon(2 * kPageSize, kRw).value();
  const VirtAddr b = p_->mmap_anon(2 * kPageSize, kRw).value();
  ASSERT_TRUE(p_->write_u64(a, 1).is_ok());
  ASSERT_TRUE(p_->write_u64(b, 2).is_ok());
  EXPECT_EQ(p_->mremap(a, 2 * kPageSize, 2 * kPageSize, kMoveFixed, b).value(), b);
  EXPECT_EQ(p_->read_u64(b).value(), 1u);  // b's old page was unmapped and freed
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 1);

  const VirtAddr c = p_->mremap(b, 2 * kPageSize, 2 * kPageSize,
                                MremapFlags::kMayMove | MremapFlags::kDontUnmap).value();
  EXPECT_NE(c, b);
  EXPECT_EQ(p_->read_u64(c).value(), 1u);
  {
    ReadLocker guard(p_->mm().mmap_lock());
    const Vma* old = p_->mm().vma_lookup(b);
    ASSERT_NE(old, nullptr);
    EXPECT_EQ(old->anon_vma(), nullptr);
  }
  EXPECT_EQ(word(*p_, b), 0u);
  EXPECT_EQ(p_->read_u64(b).value(), 0u);  // empty: the zero page
  ASSERT_TRUE(p_->write_u64(b, 3).is_ok());
  EXPECT_EQ(p_->read_u64(c).value(), 1u);
}

TEST_F(MremapTest, ZeroOldLengthDuplicatesASharedMapping) {
  const VirtAddr a =
      p_->mmap(VirtAddr(0), 2 * kPageSize, kRw, MmapFlags::kShared | MmapFlags::kAnonymous).value();
  ASSERT_TRUE(p_->write_u64(a + kPageSize, 31).is_ok());
  const VirtAddr b = p_->mremap(a + kPageSize, 0, kPageSize, MremapFlags::kMayMove).value();
  EXPECT_NE(b, a + kPageSize);
  EXPECT_EQ(p_->read_u64(b).value(), 31u);  // the same page-cache page
  ASSERT_TRUE(p_->write_u64(b, 32).is_ok());
  EXPECT_EQ(p_->read_u64(a + kPageSize).value(), 32u);
  EXPECT_EQ(p_->mm().snapshot_vmas().size(), 2u);
}

TEST_F(MremapTest, ErrnoCases) {
  const VirtAddr a = p_->mmap_anon(4 * kPageSize, kRw).value();
  EXPECT_EQ(err(a, kPageSize, kPageSize, static_cast<MremapFlags>(8)), Errno::kEINVAL);
  EXPECT_EQ(err(a, kPageSize, kPageSize, MremapFlags::kFixed, a + kPageSize), Errno::kEINVAL);
  EXPECT_EQ(err(a, kPageSize, 2 * kPageSize, MremapFlags::kMayMove | MremapFlags::kDontUnmap),
            Errno::kEINVAL);
  EXPECT_EQ(err(a, kPageSize, kPageSize, MremapFlags::kDontUnmap), Errno::kEINVAL);
  EXPECT_EQ(err(a + 1, kPageSize, kPageSize, MremapFlags::kNone), Errno::kEINVAL);
  EXPECT_EQ(err(a, kPageSize, 0, MremapFlags::kNone), Errno::kEINVAL);
  EXPECT_EQ(err(a, 0, kPageSize, MremapFlags::kMayMove), Errno::kEINVAL);  // private, len 0
  EXPECT_EQ(err(a, 2 * kPageSize, 2 * kPageSize, kMoveFixed, a + kPageSize), Errno::kEINVAL);
  EXPECT_EQ(err(a, kPageSize, kPageSize, kMoveFixed, a + 4 * kPageSize + 1), Errno::kEINVAL);
  EXPECT_EQ(err(VirtAddr(0x10000000), kPageSize, kPageSize, MremapFlags::kNone), Errno::kEFAULT);
  EXPECT_EQ(err(a, 8 * kPageSize, 9 * kPageSize, MremapFlags::kMayMove), Errno::kEFAULT);
  EXPECT_EQ(p_->mm().snapshot_vmas().size(), 1u);
}

}  // namespace
}  // namespace dpmm::mm
