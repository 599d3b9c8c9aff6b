// Device-private PMDs (a device-private THP mapped by one PMD swap entry) and PMD migration
// entries (a THP under migration): encoding, pagemap, zap, split, fork, mprotect, mremap,
// page_vma_mapped_walk and the CPU fault, in both swap numberings (legacy: the entry holds a
// PFN; dpas: a device-private offset) and both arches.
//
// The "device" folio is an anonymous RAM THP: a fake handler resolves device-private entries
// to RAM pages (a dpas offset o names pfn base + o), so the mm layer's bookkeeping (references,
// mapcounts, RSS, deposited tables) can be checked without the device-memory layer. Every test
// ends with every page back in the allocator.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <tuple>
#include <vector>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "base/thread.h"
#include "mm/huge_memory.h"
#include "mm/migration_entry.h"
#include "mm/page_vma_mapped.h"
#include "mm/pagemap.h"
#include "mm/process.h"
#include "mm/test_machine.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr uint64_t kPmd = kHpagePmdSize;
constexpr uint64_t kNr = kHpagePmdNr;

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;
using arch::SoftleafType;

class FakeDevice final : public DevicePrivateFaultHandler {
 public:
  explicit FakeDevice(Kernel& k) : k_(k) {}
  page::Page* softleaf_to_page(arch::Softleaf e) override {
    const arch::PfnOrOffset where = arch::softleaf_to_pfn_or_offset(e).value();
    if (where.is_pfn()) return k_.pfn_to_page(where.to_pfn().value()).value();
    return k_.pfn_to_page(Pfn(base.raw() + where.raw_index())).value();
  }
  // "Migrates" a PMD-mapped folio back by restoring the present leaf it had.
  FaultResult migrate_to_ram(VmFault& vmf) override {
    ++calls;
    saw_pte = vmf.pte.has_value();
    saw_page = vmf.page;
    const EntrySlot pmd = vmf.mm->page_table().walk_pmd(vmf.address).value();
    SpinLocker guard(vmf.mm->page_table().lock());
    pmd.store(restore_word);
    return FaultResult::handled();
  }
  Pfn base{0};
  uint64_t restore_word = 0;
  int calls = 0;
  bool saw_pte = true;
  page::Page* saw_page = nullptr;

 private:
  Kernel& k_;
};

using Param = std::tuple<arch::SwapNumberingKind, arch::ArchKind>;

class DeviceThpTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel(std::get<0>(GetParam()), std::get<1>(GetParam()),
                                   ThpPolicy::kMadvise, UseHugeZeroPage::kYes);
    free0_ = k_->nr_free_pages();
    dev_ = std::make_unique<FakeDevice>(*k_);
    k_->set_device_private_handler(dev_.get());
    p_ = Process::create(*k_).value();
  }
  void TearDown() override {
    child_.reset();
    p_.reset();
    k_->set_device_private_handler(nullptr);
    EXPECT_EQ(k_->nr_free_pages(), free0_) << "every page back in the allocator";
  }
  bool dpas() const { return std::get<0>(GetParam()) == arch::SwapNumberingKind::kDpas; }
  arch::PfnOrOffset where(Pfn p) const {
    return dpas() ? arch::PfnOrOffset::of_offset(DevPrivOffset(p.raw() - dev_->base.raw()))
                  : arch::PfnOrOffset::of_pfn(p);
  }
  // A 2 MiB-aligned MADV_HUGEPAGE range alone in its VMA, filled with a pattern (a THP).
  VirtAddr thp_region(Process& p) {
    const VirtAddr base = p.mmap_anon(3 * kPmd, kRw).value();
    const VirtAddr map(base.align_down(kPmd).raw() + kPmd);
    if (map > base) {
      EXPECT_TRUE(p.munmap(base, map - base).is_ok());
    }
    const VirtAddr end = base + 3 * kPmd;
    if (end > map + kPmd) {
      EXPECT_TRUE(p.munmap(map + kPmd, end - (map + kPmd)).is_ok());
    }
    EXPECT_TRUE(p.madvise(map, kPmd, Madvise::kHugePage).is_ok());
    return map;
  }
  void write_pattern(Process& p, VirtAddr a, uint64_t len, uint64_t salt) {
    std::vector<uint64_t> v(len / 8);
    for (uint64_t i = 0; i < v.size(); ++i) v[i] = i ^ salt;
    ASSERT_TRUE(p.write(a, std::as_bytes(std::span(v))).is_ok());
  }
  void expect_pattern(Process& p, VirtAddr a, uint64_t len, uint64_t salt, uint64_t first = 0) {
    std::vector<uint64_t> v(len / 8);
    ASSERT_TRUE(p.read(a, std::as_writable_bytes(std::span(v))).is_ok());
    for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], (first + i) ^ salt) << "word " << i;
  }
  EntrySlot pmd_slot(Process& p, VirtAddr a) { return p.mm().page_table().walk_pmd(a).value(); }
  uint64_t pmd_word(Process& p, VirtAddr a) {
    const std::optional<EntrySlot> s = p.mm().page_table().walk_pmd(a);
    return s ? s->load() : 0;
  }
  DecodedEntry pte(Process& p, VirtAddr a) {
    const std::optional<EntrySlot> s = p.mm().page_table().walk_pte(a);
    return k_->codec().decode(EntryLevel::kPte, s ? s->load() : 0);
  }
  // Faults a THP at a new region, then turns its PMD leaf into a device-private PMD naming
  // the same folio (which keeps its reference and entire mapcount).
  VirtAddr make_device_thp(Process& p, Prot access, arch::SwpBit bits = arch::SwpBit::kNone) {
    const VirtAddr map = thp_region(p);
    write_pattern(p, map, kPmd, 0x5a);
    present_ = pmd_word(p, map);
    const DecodedEntry d = k_->codec().decode(EntryLevel::kPmd, present_);
    EXPECT_EQ(d.kind, DecodedEntry::Kind::kPresent);
    head_ = d.pfn;
    dev_->base = Pfn(head_.raw() - 0x1000);
    dev_->restore_word = present_;
    held_ = page::page_folio(k_->pfn_to_page(head_).value());
    SpinLocker guard(p.mm().page_table().lock());
    pmd_slot(p, map).store(make_device_private_pmd(*k_, where(head_), access, bits));
    return map;
  }
  void expect_pmd_entry(Process& p, VirtAddr a, SoftleafType type) {
    const uint64_t w = pmd_word(p, a);
    ASSERT_TRUE(pmd_is_device_private_entry(*k_, w));
    ASSERT_TRUE(pmd_is_huge(*k_, w));
    EXPECT_FALSE(pmd_trans_huge(*k_, w).has_value());
    EXPECT_TRUE(k_->codec().validate(EntryLevel::kPmd, w).is_ok());
    const arch::Softleaf leaf = softleaf_from_pmd(*k_, w);
    EXPECT_EQ(arch::softleaf_type(leaf), type);
    EXPECT_EQ(arch::softleaf_to_pfn_or_offset(leaf).value(), where(head_));
    EXPECT_EQ(device_private_pmd_page(*k_, leaf), folio_ref().head());
  }
  arch::PfnOrOffset nth(uint64_t i) const {
    const arch::PfnOrOffset w = where(head_);
    return w.is_pfn() ? arch::PfnOrOffset::of_pfn(Pfn(w.raw_index() + i))
                      : arch::PfnOrOffset::of_offset(DevPrivOffset(w.raw_index() + i));
  }

  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<FakeDevice> dev_;
  std::unique_ptr<Process> p_;
  std::unique_ptr<Process> child_;
  uint64_t present_ = 0;
  Pfn head_{0};
  std::optional<page::Folio> held_;
  page::Folio& folio_ref() { return *held_; }
};

TEST_P(DeviceThpTest, EntryEncodesBothTypesAndPagemapShowsSwap) {
  const bool x86 = std::get<1>(GetParam()) == arch::ArchKind::kX86_64;
  // Soft-dirty is an x86 swap bit only (arm64 refuses it).
  const VirtAddr map =
      make_device_thp(*p_, Prot::kWrite, x86 ? arch::SwpBit::kSoftDirty : arch::SwpBit::kNone);
  expect_pmd_entry(*p_, map, SoftleafType::kDevicePrivateWrite);
  const DecodedEntry d = k_->codec().decode(EntryLevel::kPmd, pmd_word(*p_, map));
  EXPECT_EQ(d.kind, DecodedEntry::Kind::kSwap);
  EXPECT_EQ(d.swp_bits, x86 ? arch::SwpBit::kSoftDirty : arch::SwpBit::kNone);
  EXPECT_EQ(folio_ref().ref_count(), 1);
  EXPECT_EQ(folio_ref().entire_mapcount(), 1);
  EXPECT_EQ(folio_ref().mapcount(), 1);
  for (uint64_t i : {uint64_t{0}, uint64_t{7}, kNr - 1}) {
    const uint64_t e = pagemap_entry(p_->mm(), map + i * kPageSize);
    EXPECT_TRUE(e & kPmSwap) << i;
    EXPECT_FALSE(e & kPmPresent) << i;
    // The offset advances by one per 4 KiB page.
    EXPECT_EQ((e & kPmPframeMask) >> arch::kMaxSwapfilesShift,
              (where(head_).raw_index() + i) & (kPmPframeMask >> arch::kMaxSwapfilesShift))
        << i;
  }
  // A readable one.
  {
    SpinLocker guard(p_->mm().page_table().lock());
    pmd_slot(*p_, map).store(make_device_private_pmd(*k_, where(head_), Prot::kNone,
                                                     arch::SwpBit::kNone));
  }
  expect_pmd_entry(*p_, map, SoftleafType::kDevicePrivateRead);
}

TEST_P(DeviceThpTest, MunmapOfTheWholePmdDropsReferenceMapcountAndRss) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), int64_t(kNr));
  const uint64_t free_before = k_->nr_free_pages();
  ASSERT_TRUE(p_->munmap(map, kPmd).is_ok());
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_EQ(pmd_word(*p_, map), 0u);
  // The folio's 512 pages and the deposited table are freed (the PMD table may stay).
  EXPECT_GE(k_->nr_free_pages(), free_before + kNr + 1);
}

TEST_P(DeviceThpTest, PartialMunmapSplitsInto512DevicePrivatePtes) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  ASSERT_TRUE(p_->munmap(map, kPageSize).is_ok());
  EXPECT_FALSE(pmd_is_huge(*k_, pmd_word(*p_, map)));
  EXPECT_EQ(pte(*p_, map).kind, DecodedEntry::Kind::kNone);
  for (uint64_t i = 1; i < kNr; ++i) {
    const DecodedEntry d = pte(*p_, map + i * kPageSize);
    ASSERT_EQ(d.kind, DecodedEntry::Kind::kSwap) << i;
    ASSERT_EQ(arch::softleaf_type(d.leaf), SoftleafType::kDevicePrivateWrite) << i;
    ASSERT_EQ(arch::softleaf_to_pfn_or_offset(d.leaf).value(), nth(i)) << i;
    ASSERT_EQ(d.swp_bits, arch::SwpBit::kNone) << i;
  }
  // The folio stays large; the PMD's reference and entire mapcount became one per PTE, and
  // the unmapped first page lost its own.
  EXPECT_TRUE(folio_ref().is_large());
  EXPECT_EQ(folio_ref().entire_mapcount(), 0);
  EXPECT_EQ(folio_ref().mapcount(), int(kNr - 1));
  EXPECT_EQ(folio_ref().ref_count(), int(kNr - 1));
  EXPECT_EQ(folio_ref().head()->mapcount(), 0);
  EXPECT_EQ((folio_ref().head() + 1)->mapcount(), 1);
  EXPECT_TRUE(page_anon_exclusive(folio_ref().head() + 1));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), int64_t(kNr - 1));
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 0u);
  // pagemap of a split page: PM_SWAP with its own offset.
  const uint64_t e = pagemap_entry(p_->mm(), map + 5 * kPageSize);
  EXPECT_TRUE(e & kPmSwap);
}

TEST_P(DeviceThpTest, ForkSharesTheFolioReadOnlyInBoth) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  const size_t deposited = p_->mm().page_table().nr_deposited();
  child_ = p_->fork().value();
  for (Process* p : {p_.get(), child_.get()}) expect_pmd_entry(*p, map, SoftleafType::kDevicePrivateRead);
  EXPECT_EQ(folio_ref().ref_count(), 2);
  EXPECT_EQ(folio_ref().entire_mapcount(), 2);
  EXPECT_FALSE(page_anon_exclusive(folio_ref().head()));
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), int64_t(kNr));
  EXPECT_EQ(child_->mm().page_table().nr_deposited(), deposited);
  child_.reset();
  EXPECT_EQ(folio_ref().ref_count(), 1);
  EXPECT_EQ(folio_ref().entire_mapcount(), 1);
  expect_pmd_entry(*p_, map, SoftleafType::kDevicePrivateRead);
}

TEST_P(DeviceThpTest, MprotectMakesAWholePmdReadableAndSplitsAPartOne) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  ASSERT_TRUE(p_->mprotect(map, kPmd, MmapProt::kRead).is_ok());
  expect_pmd_entry(*p_, map, SoftleafType::kDevicePrivateRead);
  EXPECT_EQ(folio_ref().ref_count(), 1);
  EXPECT_EQ(folio_ref().entire_mapcount(), 1);
  // Writable again: the entry stays readable (write comes back by a fault).
  ASSERT_TRUE(p_->mprotect(map, kPmd, kRw).is_ok());
  expect_pmd_entry(*p_, map, SoftleafType::kDevicePrivateRead);
  // A part of it: split, the pages keep their (readable) type.
  ASSERT_TRUE(p_->mprotect(map + kPageSize, kPageSize, MmapProt::kRead).is_ok());
  EXPECT_FALSE(pmd_is_huge(*k_, pmd_word(*p_, map)));
  for (uint64_t i = 0; i < kNr; i += 97) {
    const DecodedEntry d = pte(*p_, map + i * kPageSize);
    ASSERT_EQ(arch::softleaf_type(d.leaf), SoftleafType::kDevicePrivateRead) << i;
    ASSERT_EQ(arch::softleaf_to_pfn_or_offset(d.leaf).value(), nth(i)) << i;
  }
  EXPECT_EQ(folio_ref().ref_count(), int(kNr));
  EXPECT_EQ(folio_ref().mapcount(), int(kNr));
  EXPECT_EQ(folio_ref().entire_mapcount(), 0);
}

TEST_P(DeviceThpTest, MremapMovesTheWholePmdWithItsTable) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  const uint64_t word = pmd_word(*p_, map);
  // A 2 MiB-aligned destination: reserve 2 PMDs and use the aligned one.
  const VirtAddr spot = p_->mmap_anon(3 * kPmd, kRw).value();
  const VirtAddr to(spot.align_down(kPmd).raw() + kPmd);
  ASSERT_TRUE(p_->munmap(spot, 3 * kPmd).is_ok());
  const VirtAddr moved =
      p_->mremap(map, kPmd, kPmd, MremapFlags::kMayMove | MremapFlags::kFixed, to).value();
  ASSERT_EQ(moved, to);
  EXPECT_EQ(pmd_word(*p_, to), word);
  EXPECT_FALSE(pmd_is_huge(*k_, pmd_word(*p_, map)));
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 1u);
  EXPECT_EQ(folio_ref().ref_count(), 1);
  EXPECT_EQ(folio_ref().entire_mapcount(), 1);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), int64_t(kNr));
}

TEST_P(DeviceThpTest, PageVmaMappedWalkFindsThePmd) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  const PvmwFlags flags = dpas() ? PvmwFlags::kDevicePrivate : PvmwFlags::kNone;
  ReadLocker mmap(p_->mm().mmap_lock());
  const Vma* vma = p_->mm().vma_lookup(map);
  ASSERT_NE(vma, nullptr);
  SpinLocker guard(p_->mm().page_table().lock());
  const std::optional<PageVmaMapped> m =
      page_vma_mapped_walk(p_->mm(), *vma, map + 3 * kPageSize, nth(3), flags);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->level, EntryLevel::kPmd);
  EXPECT_EQ(m->address, map);
  EXPECT_EQ(m->entry, pmd_word(*p_, map));
  EXPECT_FALSE(page_vma_mapped_walk(p_->mm(), *vma, map + 3 * kPageSize, nth(kNr), flags));
}

TEST_P(DeviceThpTest, CpuFaultCallsMigrateToRamWithTheHeadAndNoPte) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  expect_pattern(*p_, map + 5 * kPageSize, kPageSize, 0x5a, 5 * kPageSize / 8);
  EXPECT_EQ(dev_->calls, 1);
  EXPECT_FALSE(dev_->saw_pte);
  EXPECT_EQ(dev_->saw_page, folio_ref().head());
  EXPECT_EQ(pmd_word(*p_, map), present_);
  // The fault's reference and lock are gone again.
  EXPECT_EQ(folio_ref().ref_count(), 1);
  EXPECT_FALSE(page::folio_test_locked(folio_ref()));
  expect_pattern(*p_, map, kPmd, 0x5a);
}

// ---- PMD migration entries (set_pmd_migration_entry / remove_migration_pmd) ----

// The THP (or device THP) at `map` goes under migration as migrate_vma's compound collect
// does: referenced, its PMD a migration entry. (Not locked here: the tests run mmap-locked
// system calls meanwhile, which must not nest inside a folio lock.)
page::Folio start_pmd_migration(Kernel& k, Process& p, VirtAddr map, Pfn head) {
  page::Folio folio = page::page_folio(k.pfn_to_page(head).value());
  page::folio_get(folio);
  SpinLocker guard(p.mm().page_table().lock());
  EXPECT_TRUE(
      set_pmd_migration_entry(p.mm(), map, p.mm().page_table().walk_pmd(map).value(), folio)
          .is_ok());
  return folio;
}

const Vma* vma_at(Process& p, VirtAddr a) {
  ReadLocker mmap(p.mm().mmap_lock());
  return p.mm().vma_lookup(a);
}

// The migration ends with the folio put back where it was (remove_migration_pmd of src).
void end_pmd_migration(Process& p, const Vma* vma, VirtAddr map, page::Folio folio,
                       arch::PfnOrOffset where, PmdTarget target) {
  ASSERT_NE(vma, nullptr);
  SpinLocker guard(p.mm().page_table().lock());
  remove_migration_pmd(p.mm(), *vma, p.mm().page_table().walk_pmd(map).value(), folio, where,
                       target);
}

TEST_P(DeviceThpTest, ThpPmdBecomesAMigrationEntryAndComesBack) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x77);
  const DecodedEntry leaf = k_->codec().decode(EntryLevel::kPmd, pmd_word(*p_, map));
  ASSERT_EQ(leaf.kind, DecodedEntry::Kind::kPresent);
  head_ = leaf.pfn;
  const page::Folio folio = start_pmd_migration(*k_, *p_, map, head_);
  held_ = folio;
  const uint64_t w = pmd_word(*p_, map);
  ASSERT_TRUE(pmd_is_migration_entry(*k_, w));
  EXPECT_TRUE(pmd_is_huge(*k_, w));
  EXPECT_FALSE(pmd_is_device_private_entry(*k_, w));
  EXPECT_TRUE(k_->codec().validate(EntryLevel::kPmd, w).is_ok());
  const arch::Softleaf e = softleaf_from_pmd(*k_, w);
  // Written through the PMD: a writable, young and dirty leaf.
  EXPECT_EQ(arch::softleaf_type(e), SoftleafType::kMigrationWrite);
  EXPECT_TRUE(arch::softleaf_is_migration_young(e));
  EXPECT_TRUE(arch::softleaf_is_migration_dirty(e));
  EXPECT_EQ(arch::softleaf_to_pfn(e).value(), head_);
  EXPECT_EQ(migration_entry_page(*k_, e), folio.head());
  // No mapping counts any more; only the migration's reference is left; RSS stays.
  EXPECT_EQ(folio.mapcount(), 0);
  EXPECT_EQ(folio.entire_mapcount(), 0);
  EXPECT_EQ(folio.ref_count(), 1);
  EXPECT_FALSE(page_anon_exclusive(folio.head()));
  EXPECT_TRUE(folio.test_flag(page::PageFlag::kDirty));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), int64_t(kNr));
  for (uint64_t i : {uint64_t{0}, uint64_t{9}, kNr - 1}) {
    const uint64_t pm = pagemap_entry(p_->mm(), map + i * kPageSize);
    EXPECT_TRUE(pm & kPmSwap) << i;
    EXPECT_FALSE(pm & kPmPresent) << i;
    EXPECT_EQ((pm & kPmPframeMask) >> arch::kMaxSwapfilesShift, head_.raw() + i) << i;
  }
  {
    ReadLocker mmap(p_->mm().mmap_lock());
    const Vma* vma = p_->mm().vma_lookup(map);
    SpinLocker guard(p_->mm().page_table().lock());
    const std::optional<PageVmaMapped> m = page_vma_mapped_walk(
        p_->mm(), *vma, map + 9 * kPageSize, arch::PfnOrOffset::of_pfn(head_ + PageCount(9)),
        PvmwFlags::kMigration);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->level, EntryLevel::kPmd);
    EXPECT_EQ(m->address, map);
    // A walk for mappings (not migration entries) no longer sees it.
    EXPECT_FALSE(page_vma_mapped_walk(p_->mm(), *vma, map, arch::PfnOrOffset::of_pfn(head_),
                                      PvmwFlags::kNone));
  }
  end_pmd_migration(*p_, vma_at(*p_, map), map, folio, arch::PfnOrOffset::of_pfn(head_), PmdTarget::kPresent);
  const DecodedEntry back = k_->codec().decode(EntryLevel::kPmd, pmd_word(*p_, map));
  ASSERT_EQ(back.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(back.pfn, head_);
  EXPECT_TRUE(has(back.prot, Prot::kWrite));
  EXPECT_TRUE(has(back.prot, Prot::kAccessed));
  EXPECT_TRUE(has(back.prot, Prot::kDirty));
  EXPECT_EQ(folio.entire_mapcount(), 1);
  EXPECT_TRUE(page_anon_exclusive(folio.head()));  // a WRITE entry maps exclusively
  page::folio_put(folio);
  EXPECT_EQ(folio.ref_count(), 1);
  expect_pattern(*p_, map, kPmd, 0x77);
}

TEST_P(DeviceThpTest, DevicePrivatePmdMigratesInItsOwnNumbering) {
  const VirtAddr map = make_device_thp(*p_, Prot::kWrite);
  const page::Folio folio = folio_ref();
  page::folio_get(folio);
  {
    SpinLocker guard(p_->mm().page_table().lock());
    ASSERT_TRUE(set_pmd_migration_entry(p_->mm(), map, pmd_slot(*p_, map), folio).is_ok());
  }
  const arch::Softleaf e = softleaf_from_pmd(*k_, pmd_word(*p_, map));
  // dpas: the device-private migration type holding the offset; legacy: the RAM type, PFN.
  EXPECT_EQ(arch::softleaf_type(e), dpas() ? SoftleafType::kMigrationDevicePrivateWrite
                                           : SoftleafType::kMigrationWrite);
  EXPECT_EQ(arch::softleaf_to_pfn_or_offset(e).value(), where(head_));
  EXPECT_EQ(migration_entry_page(*k_, e), folio.head());
  EXPECT_FALSE(arch::softleaf_is_migration_young(e));  // a device entry has no A/D bits
  EXPECT_EQ(folio.ref_count(), 1);
  EXPECT_EQ(folio.entire_mapcount(), 0);
  end_pmd_migration(*p_, vma_at(*p_, map), map, folio, where(head_), PmdTarget::kDevicePrivate);
  expect_pmd_entry(*p_, map, SoftleafType::kDevicePrivateWrite);
  EXPECT_EQ(folio.entire_mapcount(), 1);
  page::folio_put(folio);
  EXPECT_EQ(folio.ref_count(), 1);
}

TEST_P(DeviceThpTest, CpuAccessToAMigrationPmdWaitsForTheMigration) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x31);
  head_ = k_->codec().decode(EntryLevel::kPmd, pmd_word(*p_, map)).pfn;
  const page::Folio folio = start_pmd_migration(*k_, *p_, map, head_);
  held_ = folio;
  const Vma* vma = vma_at(*p_, map);
  page::folio_lock(folio);  // the migration's lock, which the reader waits for
  std::atomic<bool> done{false};
  uint64_t got = 0;
  Thread reader("pmd-migration-reader", [&] {
    std::array<uint64_t, 1> v{};
    EXPECT_TRUE(p_->read(map + 3 * kPageSize, std::as_writable_bytes(std::span(v))).is_ok());
    got = v[0];
    done.store(true);
  });
  // The reader sleeps on the folio lock (pmd_migration_entry_wait) until the entry goes.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(done.load());
  end_pmd_migration(*p_, vma, map, folio, arch::PfnOrOffset::of_pfn(head_), PmdTarget::kPresent);
  page::folio_unlock(folio);
  reader.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(got, (3 * kPageSize / 8) ^ 0x31);
  page::folio_put(folio);
}

TEST_P(DeviceThpTest, ForkMprotectSplitAndMunmapOfAMigrationPmd) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x44);
  head_ = k_->codec().decode(EntryLevel::kPmd, pmd_word(*p_, map)).pfn;
  const page::Folio folio = start_pmd_migration(*k_, *p_, map, head_);
  held_ = folio;
  const size_t deposited = p_->mm().page_table().nr_deposited();
  // fork: a COW mapping's WRITE entry becomes READ in both; the child counts the RSS, has a
  // table deposited and takes no reference (copy_huge_non_present_pmd).
  child_ = p_->fork().value();
  for (Process* p : {p_.get(), child_.get()}) {
    const arch::Softleaf e = softleaf_from_pmd(*k_, pmd_word(*p, map));
    EXPECT_EQ(arch::softleaf_type(e), SoftleafType::kMigrationRead);
    EXPECT_TRUE(arch::softleaf_is_migration_dirty(e));  // young/dirty kept
    EXPECT_EQ(arch::softleaf_to_pfn(e).value(), head_);
  }
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), int64_t(kNr));
  EXPECT_EQ(child_->mm().page_table().nr_deposited(), deposited);
  EXPECT_EQ(folio.ref_count(), 1);
  // The child's munmap of the whole PMD: RSS and the table go, nothing else.
  ASSERT_TRUE(child_->munmap(map, kPmd).is_ok());
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_EQ(folio.ref_count(), 1);
  child_.reset();

  // Back to WRITE by hand, then mprotect: a WRITE entry becomes READ_EXCLUSIVE (anon).
  {
    SpinLocker guard(p_->mm().page_table().lock());
    const arch::Softleaf e = softleaf_from_pmd(*k_, pmd_word(*p_, map));
    pmd_slot(*p_, map).store(
        k_->codec()
            .make_swap(EntryLevel::kPmd,
                       migration_entry_like(e, arch::PfnOrOffset::of_pfn(head_),
                                            MigrationKind::kWrite),
                       arch::SwpBit::kNone)
            .value());
  }
  ASSERT_TRUE(p_->mprotect(map, kPmd, MmapProt::kRead).is_ok());
  EXPECT_EQ(arch::softleaf_type(softleaf_from_pmd(*k_, pmd_word(*p_, map))),
            SoftleafType::kMigrationReadExclusive);
  // A partial mprotect splits it (the VMA is cut inside the 2 MiB): 512 migration PTEs of the
  // same kind, bits and pages; PROT_NONE leaves non-writable migration entries as they are.
  ASSERT_TRUE(p_->mprotect(map, kPageSize, MmapProt::kNone).is_ok());
  EXPECT_FALSE(pmd_is_huge(*k_, pmd_word(*p_, map)));
  for (uint64_t i = 0; i < kNr; i += 73) {
    const DecodedEntry d = pte(*p_, map + i * kPageSize);
    ASSERT_EQ(d.kind, DecodedEntry::Kind::kSwap) << i;
    EXPECT_EQ(arch::softleaf_type(d.leaf), SoftleafType::kMigrationReadExclusive) << i;
    EXPECT_EQ(arch::softleaf_to_pfn(d.leaf).value(), head_ + PageCount(i)) << i;
    EXPECT_TRUE(arch::softleaf_is_migration_dirty(d.leaf)) << i;
  }
  EXPECT_EQ(folio.ref_count(), 1);
  EXPECT_EQ(folio.mapcount(), 0);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), int64_t(kNr));
  // munmap of the migration PTEs: the RSS goes, the folio stays the migration's.
  ASSERT_TRUE(p_->munmap(map, kPmd).is_ok());
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_EQ(folio.ref_count(), 1);
  page::folio_put(folio);  // the last reference: the THP is freed (TearDown checks)
}

TEST_P(DeviceThpTest, MremapMovesAMigrationPmd) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x12);
  head_ = k_->codec().decode(EntryLevel::kPmd, pmd_word(*p_, map)).pfn;
  const page::Folio folio = start_pmd_migration(*k_, *p_, map, head_);
  held_ = folio;
  const uint64_t word = pmd_word(*p_, map);
  const VirtAddr spot = p_->mmap_anon(3 * kPmd, kRw).value();
  const VirtAddr to(spot.align_down(kPmd).raw() + kPmd);
  ASSERT_TRUE(p_->munmap(spot, 3 * kPmd).is_ok());
  ASSERT_EQ(p_->mremap(map, kPmd, kPmd, MremapFlags::kMayMove | MremapFlags::kFixed, to).value(),
            to);
  EXPECT_EQ(pmd_word(*p_, to), word);
  end_pmd_migration(*p_, vma_at(*p_, to), to, folio, arch::PfnOrOffset::of_pfn(head_), PmdTarget::kPresent);
  page::folio_put(folio);
  expect_pattern(*p_, to, kPmd, 0x12);
}

INSTANTIATE_TEST_SUITE_P(
    All, DeviceThpTest,
    ::testing::Combine(::testing::Values(arch::SwapNumberingKind::kLegacy,
                                         arch::SwapNumberingKind::kDpas),
                       ::testing::Values(arch::ArchKind::kX86_64, arch::ArchKind::kArm64)));

}  // namespace
}  // namespace dpmm::mm
