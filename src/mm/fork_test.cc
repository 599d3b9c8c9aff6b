// fork: copy-on-write sharing with real bytes, the copy rules for non-present entries, pinned
// pages, and every page coming back when the processes exit.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "base/thread.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/fault.h"
#include "mm/pagemap.h"
#include "mm/process.h"
#include "mm/test_machine.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

// "Device" pages are RAM pages; a dpas offset o names pfn base + o.
class FakeDevice final : public DevicePrivateFaultHandler {
 public:
  explicit FakeDevice(Kernel& k) : k_(k) {}
  page::Page* softleaf_to_page(arch::Softleaf e) override {
    auto where = arch::softleaf_to_pfn_or_offset(e).value();
    if (where.is_pfn()) return k_.pfn_to_page(where.to_pfn().value()).value();
    return k_.pfn_to_page(Pfn(base.raw() + where.raw_index())).value();
  }
  FaultResult migrate_to_ram(VmFault&) override { return {FaultOutcome::kSigBus, "fake"}; }
  Pfn base{0};

 private:
  Kernel& k_;
};

class ForkTest : public ::testing::TestWithParam<arch::SwapNumberingKind> {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel(GetParam());
    free0_ = k_->nr_free_pages();
    parent_ = Process::create(*k_).value();
  }
  void TearDown() override {
    child_.reset();
    parent_.reset();
    k_->set_device_private_handler(nullptr);
    EXPECT_EQ(k_->nr_free_pages(), free0_);
  }
  uint64_t pfn_of(Process& p, VirtAddr a) {
    const uint64_t e = pagemap_entry(p.mm(), a);
    EXPECT_TRUE(e & kPmPresent) << a.raw();
    return e & kPmPframeMask;
  }
  EntrySlot slot(Process& p, VirtAddr a) { return p.mm().page_table().walk_pte(a).value(); }
  arch::DecodedEntry decode(Process& p, VirtAddr a) {
    return k_->codec().decode(arch::EntryLevel::kPte, slot(p, a).load());
  }
  page::Folio folio_at(Process& p, VirtAddr a) {
    return page::page_folio(k_->pfn_to_page(Pfn(pfn_of(p, a))).value());
  }
  void set_swap(Process& p, VirtAddr a, arch::Softleaf leaf,
                arch::SwpBit bits = arch::SwpBit::kNone) {
    SpinLocker guard(p.mm().page_table().lock());
    slot(p, a).store(k_->codec().make_swap(arch::EntryLevel::kPte, leaf, bits).value());
  }
  arch::SoftleafFormat fmt() const { return k_->softleaf_format(); }
  static uint64_t pattern(uint64_t who, uint64_t page, uint64_t word) {
    return (who << 48) | (page << 16) | word;
  }
  void fill_page(Process& p, VirtAddr a, uint64_t who, uint64_t page) {
    for (uint64_t w = 0; w < kPageSize / 8; w += 37)
      ASSERT_TRUE(p.write_u64(a + w * 8, pattern(who, page, w)).is_ok());
  }
  void check_page(Process& p, VirtAddr a, uint64_t who, uint64_t page) {
    for (uint64_t w = 0; w < kPageSize / 8; w += 37)
      ASSERT_EQ(p.read_u64(a + w * 8).value(), pattern(who, page, w)) << a.raw() << " word " << w;
  }

  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> parent_;
  std::unique_ptr<Process> child_;
};

TEST_P(ForkTest, CowSharesUntilWrittenThenEachSeesItsOwn) {
  constexpr uint64_t kPages = 6;
  const VirtAddr a = parent_->mmap_anon(kPages * kPageSize, kRw).value();
  for (uint64_t i = 0; i < kPages; ++i) fill_page(*parent_, a + i * kPageSize, 1, i);
  std::vector<uint64_t> pfns;
  for (uint64_t i = 0; i < kPages; ++i) pfns.push_back(pfn_of(*parent_, a + i * kPageSize));
  const uint64_t free_before = k_->nr_free_pages();

  child_ = parent_->fork().value();
  // One PGD... no new data pages; the child only got page tables.
  EXPECT_EQ(free_before - k_->nr_free_pages(),
            1 + child_->mm().page_table().nr_tables());
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), int64_t(kPages));
  for (uint64_t i = 0; i < kPages; ++i) {
    const VirtAddr p = a + i * kPageSize;
    EXPECT_EQ(pfn_of(*child_, p), pfns[i]);
    page::Folio f = folio_at(*parent_, p);
    EXPECT_EQ(f.ref_count(), 2);
    EXPECT_EQ(f.mapcount(), 2);
    EXPECT_FALSE(page_anon_exclusive(f.head()));
    EXPECT_FALSE(arch::has(decode(*parent_, p).prot, arch::Prot::kWrite));
    EXPECT_FALSE(arch::has(decode(*child_, p).prot, arch::Prot::kWrite));
    EXPECT_FALSE(arch::has(decode(*child_, p).prot, arch::Prot::kAccessed));  // pte_mkold
    EXPECT_FALSE(pagemap_entry(parent_->mm(), p) & kPmMmapExclusive);
  }
  check_page(*child_, a, 1, 0);

  // The parent writes page 0: it gets a copy; the child keeps the original.
  fill_page(*parent_, a, 2, 0);
  EXPECT_NE(pfn_of(*parent_, a), pfns[0]);
  EXPECT_EQ(pfn_of(*child_, a), pfns[0]);
  check_page(*parent_, a, 2, 0);
  check_page(*child_, a, 1, 0);
  EXPECT_EQ(folio_at(*child_, a).ref_count(), 1);
  EXPECT_EQ(folio_at(*child_, a).mapcount(), 1);
  // The child writes page 0 now: sole user, so it reuses the page in place.
  fill_page(*child_, a, 3, 0);
  EXPECT_EQ(pfn_of(*child_, a), pfns[0]);
  EXPECT_TRUE(page_anon_exclusive(folio_at(*child_, a).head()));
  check_page(*parent_, a, 2, 0);
  check_page(*child_, a, 3, 0);

  // The child writes page 1 first, then the parent reuses.
  fill_page(*child_, a + kPageSize, 4, 1);
  EXPECT_NE(pfn_of(*child_, a + kPageSize), pfns[1]);
  fill_page(*parent_, a + kPageSize, 5, 1);
  EXPECT_EQ(pfn_of(*parent_, a + kPageSize), pfns[1]);
  check_page(*child_, a + kPageSize, 4, 1);
  check_page(*parent_, a + kPageSize, 5, 1);

  // Untouched pages are still shared, with exact counts.
  for (uint64_t i = 2; i < kPages; ++i) {
    const VirtAddr p = a + i * kPageSize;
    EXPECT_EQ(pfn_of(*parent_, p), pfns[i]);
    EXPECT_EQ(pfn_of(*child_, p), pfns[i]);
    EXPECT_EQ(folio_at(*parent_, p).ref_count(), 2);
    EXPECT_EQ(folio_at(*parent_, p).mapcount(), 2);
    check_page(*parent_, p, 1, i);
    check_page(*child_, p, 1, i);
  }
  // The parent exits: the shared pages stay for the child, now with one user each.
  const uint64_t child_pfn2 = pfn_of(*child_, a + 2 * kPageSize);
  parent_.reset();
  EXPECT_EQ(folio_at(*child_, a + 2 * kPageSize).ref_count(), 1);
  EXPECT_EQ(pfn_of(*child_, a + 2 * kPageSize), child_pfn2);
  check_page(*child_, a + 2 * kPageSize, 1, 2);
  fill_page(*child_, a + 2 * kPageSize, 6, 2);
  EXPECT_EQ(pfn_of(*child_, a + 2 * kPageSize), child_pfn2);  // reused
}

TEST_P(ForkTest, ZeroPageMappingsAreSharedWithoutCounts) {
  const VirtAddr a = parent_->mmap_anon(4 * kPageSize, kRw).value();
  // Only zero pages: no anon_vma, so nothing is copied (vma_needs_copy).
  const VirtAddr z = parent_->mmap_anon(2 * kPageSize, MmapProt::kRead).value();
  EXPECT_EQ(parent_->read_u64(z).value(), 0u);
  EXPECT_EQ(parent_->read_u64(a).value(), 0u);
  EXPECT_EQ(parent_->read_u64(a + kPageSize).value(), 0u);
  ASSERT_TRUE(parent_->write_u64(a + 2 * kPageSize, 77).is_ok());
  child_ = parent_->fork().value();
  EXPECT_EQ(decode(*child_, a).pfn, k_->zero_pfn());
  EXPECT_EQ(decode(*child_, a + kPageSize).pfn, k_->zero_pfn());
  EXPECT_FALSE(child_->mm().page_table().walk_pte(z).has_value() &&
               child_->mm().page_table().walk_pte(z)->load() != 0);
  EXPECT_EQ(child_->read_u64(z).value(), 0u);
  EXPECT_EQ(child_->read_u64(a).value(), 0u);
  EXPECT_EQ(child_->read_u64(a + 2 * kPageSize).value(), 77u);
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), 1);
  // Writing the zero page in the child gives it a zeroed page; the parent keeps the zero page.
  ASSERT_TRUE(child_->write_u64(a, 5).is_ok());
  EXPECT_EQ(child_->read_u64(a).value(), 5u);
  EXPECT_EQ(parent_->read_u64(a).value(), 0u);
  EXPECT_EQ(decode(*parent_, a).pfn, k_->zero_pfn());
}

TEST_P(ForkTest, MigrationEntriesBecomeReadableInBoth) {
  const VirtAddr a = parent_->mmap_anon(3 * kPageSize, kRw).value();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(parent_->write_u64(a + i * kPageSize, 10 + i).is_ok());
  const uint64_t orig_w = slot(*parent_, a).load();
  const uint64_t orig_r = slot(*parent_, a + kPageSize).load();
  const Pfn pw = decode(*parent_, a).pfn;
  const Pfn pr = decode(*parent_, a + kPageSize).pfn;
  page::Folio fw = page::page_folio(k_->pfn_to_page(pw).value());
  page::Folio fr = page::page_folio(k_->pfn_to_page(pr).value());
  // Planted as an unmap for migration leaves them: mapcount gone, the "migration" holds the ref.
  folio_remove_rmap_pte(fw, fw.head());
  folio_remove_rmap_pte(fr, fr.head());
  set_swap(*parent_, a,
           arch::make_migration_entry_dirty(arch::make_writable_migration_entry(fmt(), pw).value()),
           arch::SwpBit::kSoftDirty);
  set_swap(*parent_, a + kPageSize, arch::make_readable_migration_entry(fmt(), pr).value());
  child_ = parent_->fork().value();
  for (Process* p : {parent_.get(), child_.get()}) {
    const arch::DecodedEntry w = decode(*p, a);
    ASSERT_EQ(w.kind, arch::DecodedEntry::Kind::kSwap);
    EXPECT_EQ(arch::softleaf_type(w.leaf), arch::SoftleafType::kMigrationRead);
    EXPECT_EQ(arch::softleaf_to_pfn(w.leaf).value(), pw);
    EXPECT_TRUE(arch::softleaf_is_migration_dirty(w.leaf));
    const arch::DecodedEntry r = decode(*p, a + kPageSize);
    EXPECT_EQ(arch::softleaf_type(r.leaf), arch::SoftleafType::kMigrationRead);
    EXPECT_EQ(arch::softleaf_to_pfn(r.leaf).value(), pr);
  }
  EXPECT_TRUE(arch::has(decode(*parent_, a).swp_bits, arch::SwpBit::kSoftDirty));
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), 3);
  EXPECT_EQ(fw.ref_count(), 1);  // migration entries hold no reference of their own
  // "Migration" finishes without moving: restore present, read-only, shared in both.
  for (Process* p : {parent_.get(), child_.get()}) {
    SpinLocker guard(p->mm().page_table().lock());
    const arch::Prot ro = arch::Prot::kUser | arch::Prot::kAccessed;
    slot(*p, a).store(k_->codec().make_present(arch::EntryLevel::kPte, pw, ro).value());
    slot(*p, a + kPageSize).store(k_->codec().make_present(arch::EntryLevel::kPte, pr, ro).value());
  }
  for (page::Folio f : {fw, fr}) {
    page::folio_ref_add(f, 1);
    f.head()->mapcount_add_return(2);
    f.head()->clear_flag(page::PageFlag::kAnonExclusive);
  }
  (void)orig_w;
  (void)orig_r;
  EXPECT_EQ(child_->read_u64(a).value(), 10u);
  ASSERT_TRUE(child_->write_u64(a, 99).is_ok());  // COW break
  EXPECT_EQ(parent_->read_u64(a).value(), 10u);
  EXPECT_EQ(child_->read_u64(a).value(), 99u);
}

TEST_P(ForkTest, DevicePrivateEntriesGetAReferenceAndBecomeReadable) {
  FakeDevice dev(*k_);
  k_->set_device_private_handler(&dev);
  const VirtAddr a = parent_->mmap_anon(2 * kPageSize, kRw).value();
  ASSERT_TRUE(parent_->write_u64(a, 1).is_ok());
  ASSERT_TRUE(parent_->write_u64(a + kPageSize, 2).is_ok());
  const Pfn p0 = decode(*parent_, a).pfn;
  const Pfn p1 = decode(*parent_, a + kPageSize).pfn;
  dev.base = Pfn(p0.raw() - 0x10);
  const bool dpas = GetParam() == arch::SwapNumberingKind::kDpas;
  auto where = [&](Pfn p) {
    return dpas ? arch::PfnOrOffset::of_offset(DevPrivOffset(p.raw() - dev.base.raw()))
                : arch::PfnOrOffset::of_pfn(p);
  };
  // The pages "moved to the device" keep their mapping's reference and mapcount.
  set_swap(*parent_, a, arch::make_writable_device_private_entry(fmt(), where(p0)).value(),
           arch::SwpBit::kExclusive);
  set_swap(*parent_, a + kPageSize,
           arch::make_readable_device_private_entry(fmt(), where(p1)).value());
  page::Folio f0 = page::page_folio(k_->pfn_to_page(p0).value());
  page::Folio f1 = page::page_folio(k_->pfn_to_page(p1).value());
  ASSERT_TRUE(page_anon_exclusive(f0.head()));
  child_ = parent_->fork().value();
  for (Process* p : {parent_.get(), child_.get()}) {
    const arch::DecodedEntry d0 = decode(*p, a);
    ASSERT_EQ(d0.kind, arch::DecodedEntry::Kind::kSwap);
    EXPECT_EQ(arch::softleaf_type(d0.leaf), arch::SoftleafType::kDevicePrivateRead);
    EXPECT_EQ(arch::softleaf_to_pfn_or_offset(d0.leaf).value(), where(p0));
    EXPECT_EQ(d0.swp_bits, arch::SwpBit::kNone);
    const arch::DecodedEntry d1 = decode(*p, a + kPageSize);
    EXPECT_EQ(arch::softleaf_type(d1.leaf), arch::SoftleafType::kDevicePrivateRead);
    EXPECT_EQ(arch::softleaf_to_pfn_or_offset(d1.leaf).value(), where(p1));
  }
  for (page::Folio f : {f0, f1}) {
    EXPECT_EQ(f.ref_count(), 2);
    EXPECT_EQ(f.mapcount(), 2);
    EXPECT_FALSE(page_anon_exclusive(f.head()));
  }
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), 2);
  // Exit of the child drops exactly its references (zap of device-private entries).
  child_.reset();
  EXPECT_EQ(f0.ref_count(), 1);
  EXPECT_EQ(f0.mapcount(), 1);
  parent_.reset();  // while the handler is still installed
}

TEST_P(ForkTest, DeviceExclusiveEntryIsRestoredThenSharedCow) {
  const VirtAddr a = parent_->mmap_anon(kPageSize, kRw).value();
  ASSERT_TRUE(parent_->write_u64(a, 42).is_ok());
  const Pfn pfn = decode(*parent_, a).pfn;
  page::Folio f = page::page_folio(k_->pfn_to_page(pfn).value());
  set_swap(*parent_, a, arch::make_device_exclusive_entry(fmt(), pfn).value());
  // A locked folio fails the fork, as the kernel's -EBUSY -> -ENOMEM.
  {
    // Another thread holds the folio lock (taking it here would invert folio lock ->
    // mmap_lock).
    std::atomic<int> stage{0};
    Thread holder("holder", [&] {
      page::folio_lock(f);
      stage = 1;
      while (stage.load() != 2) std::this_thread::yield();
      page::folio_unlock(f);
    });
    while (stage.load() != 1) std::this_thread::yield();
    auto failed = parent_->fork();
    stage = 2;
    ASSERT_TRUE(failed.is_error());
    EXPECT_EQ(failed.error().code(), Errno::kENOMEM);
  }
  EXPECT_EQ(decode(*parent_, a).kind, arch::DecodedEntry::Kind::kSwap);
  child_ = parent_->fork().value();
  for (Process* p : {parent_.get(), child_.get()}) {
    const arch::DecodedEntry d = decode(*p, a);
    ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
    EXPECT_EQ(d.pfn, pfn);
    EXPECT_FALSE(arch::has(d.prot, arch::Prot::kWrite));
  }
  EXPECT_EQ(f.ref_count(), 2);
  EXPECT_EQ(f.mapcount(), 2);
  EXPECT_EQ(child_->read_u64(a).value(), 42u);
}

TEST_P(ForkTest, MaybePinnedPagesAreCopiedAtFork) {
  const VirtAddr a = parent_->mmap_anon(2 * kPageSize, kRw).value();
  fill_page(*parent_, a, 7, 0);
  fill_page(*parent_, a + kPageSize, 7, 1);
  page::Folio pinned = folio_at(*parent_, a);
  page::folio_ref_add(pinned, kGupPinCountingBias);  // a FOLL_PIN pin
  parent_->mm().set_has_pinned();
  child_ = parent_->fork().value();
  // The pinned page stays the parent's, writable; the child got its own copy.
  EXPECT_NE(pfn_of(*child_, a), pfn_of(*parent_, a));
  EXPECT_TRUE(arch::has(decode(*parent_, a).prot, arch::Prot::kWrite));
  EXPECT_TRUE(arch::has(decode(*child_, a).prot, arch::Prot::kWrite));
  EXPECT_TRUE(page_anon_exclusive(pinned.head()));
  EXPECT_EQ(pinned.mapcount(), 1);
  check_page(*child_, a, 7, 0);
  // The unpinned page is shared as usual.
  EXPECT_EQ(pfn_of(*child_, a + kPageSize), pfn_of(*parent_, a + kPageSize));
  ASSERT_TRUE(parent_->write_u64(a, 1).is_ok());  // no fault needed: still writable
  EXPECT_EQ(child_->read_u64(a).value(), pattern(7, 0, 0));
  page::folio_put_refs(pinned, kGupPinCountingBias);
}

TEST_P(ForkTest, ThreeGenerationsAllExitAndEveryPageComesBack) {
  const VirtAddr a = parent_->mmap_anon(16 * kPageSize, kRw).value();
  for (int i = 0; i < 16; ++i) fill_page(*parent_, a + i * kPageSize, 1, i);
  auto c1 = parent_->fork().value();
  for (int i = 0; i < 16; i += 2) fill_page(*c1, a + i * kPageSize, 2, i);
  auto c2 = c1->fork().value();
  for (int i = 0; i < 16; i += 3) fill_page(*c2, a + i * kPageSize, 3, i);
  ASSERT_TRUE(c2->munmap(a + 15 * kPageSize, kPageSize).is_ok());
  auto c3 = c2->fork().value();
  for (int i = 0; i < 16; ++i) {
    check_page(*parent_, a + i * kPageSize, 1, i);
    check_page(*c1, a + i * kPageSize, i % 2 == 0 ? 2 : 1, i);
    if (i == 15) continue;
    const uint64_t who2 = i % 3 == 0 ? 3 : (i % 2 == 0 ? 2 : 1);
    check_page(*c2, a + i * kPageSize, who2, i);
    check_page(*c3, a + i * kPageSize, who2, i);
  }
  // Exit in an awkward order: the middle generation first, the root last.
  c1.reset();
  for (int i = 0; i < 15; ++i) fill_page(*c3, a + i * kPageSize, 4, i);
  c2.reset();
  c3.reset();
}

INSTANTIATE_TEST_SUITE_P(Designs, ForkTest,
                         ::testing::Values(arch::SwapNumberingKind::kLegacy,
                                           arch::SwapNumberingKind::kDpas),
                         [](const auto& param_info) {
                           return std::string(arch::numbering_name(param_info.param));
                         });

}  // namespace
}  // namespace dpmm::mm
