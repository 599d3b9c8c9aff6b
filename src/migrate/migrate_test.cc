// migrate_vma_* and migrate_device_* under the three designs: bytes, entries, refcounts and
// mapcounts after each step (kernel-baseline §4, §5; the 2026 series' tagged values).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>
#include <vector>

#include "arch/decoded_entry.h"
#include "devmem/device_memory.h"
#include "migrate/device_fault_handler.h"
#include "migrate/device_kernel.h"
#include "migrate/migrate_device.h"
#include "migrate/migrate_pfn.h"
#include "migrate/test_driver.h"
#include "mm/anon_rmap.h"
#include "mm/hstate.h"
#include "mm/huge_memory.h"
#include "mm/process.h"

namespace dpmm::migrate {
namespace {

using arch::DecodedEntry;
using arch::SoftleafType;
using devmem::Design;
using devmem::MemoryType;
using testing::kRw;
using testing::TestDevice;

const int kOwnerA = 0;
const int kOwnerB = 1;

class MigrateTest : public ::testing::TestWithParam<Design> {
 protected:
  void SetUp() override {
    dk_ = testing::make_device_kernel(GetParam());
    free0_ = k().nr_free_pages();
  }
  void TearDown() override {
    // Everything unmapped and every device page back: RAM returns exactly.
    EXPECT_EQ(k().nr_free_pages(), free0_);
  }
  mm::Kernel& k() { return dk_->kernel(); }
  const devmem::DeviceMemory& dm() { return dk_->device_memory(); }
  bool dpas() const { return devmem::uses_device_private_space(GetParam()); }

  DecodedEntry pte(mm::Mm& mm, VirtAddr a) {
    const std::optional<mm::EntrySlot> slot = mm.page_table().walk_pte(a);
    if (!slot) return DecodedEntry{};
    return k().codec().decode(arch::EntryLevel::kPte, slot->load());
  }
  // The page a PTE maps: present by PFN, device-private by the handler.
  page::Page* mapped_page(mm::Mm& mm, VirtAddr a) {
    const DecodedEntry d = pte(mm, a);
    if (d.kind == DecodedEntry::Kind::kPresent) return *dm().pfn_to_page(d.pfn);
    if (d.kind == DecodedEntry::Kind::kSwap)
      return k().device_private_handler()->softleaf_to_page(d.leaf);
    return nullptr;
  }
  static std::vector<std::byte> pattern(uint64_t seed) {
    std::vector<std::byte> v(kPageSize);
    for (uint64_t i = 0; i < kPageSize; ++i) v[i] = std::byte((seed * 131 + i * 7) & 0xff);
    return v;
  }
  void write_pages(mm::Process& p, VirtAddr a, uint64_t n, uint64_t seed) {
    for (uint64_t i = 0; i < n; ++i)
      ASSERT_TRUE(p.write(a + i * kPageSize, pattern(seed + i)).is_ok());
  }
  void expect_pages(mm::Process& p, VirtAddr a, uint64_t n, uint64_t seed) {
    for (uint64_t i = 0; i < n; ++i) {
      std::vector<std::byte> got(kPageSize);
      ASSERT_TRUE(p.read(a + i * kPageSize, got).is_ok());
      EXPECT_EQ(got, pattern(seed + i)) << "page " << i;
    }
  }
  // A device-private entry for `page`, writable or not, holding the tagged index.
  void expect_device_entry(mm::Mm& mm, VirtAddr a, bool writable) {
    const DecodedEntry d = pte(mm, a);
    ASSERT_EQ(d.kind, DecodedEntry::Kind::kSwap) << a.raw();
    EXPECT_EQ(arch::softleaf_type(d.leaf),
              writable ? SoftleafType::kDevicePrivateWrite : SoftleafType::kDevicePrivateRead);
    const arch::PfnOrOffset where = *arch::softleaf_to_pfn_or_offset(d.leaf);
    EXPECT_EQ(where.is_offset(), dpas());
    page::Page* p = mapped_page(mm, a);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(devmem::is_device_private_page(p));
    EXPECT_EQ(dm().page_to_pfn_or_offset(p), where);
  }

  std::unique_ptr<DeviceKernel> dk_;
  uint64_t free0_ = 0;
};

TEST_P(MigrateTest, MigratePfnCarriesTheTagOnlyForOffsets) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  page::Page* p = dev.page_at(3);
  const MigratePfn m = migrate_pfn_from_page(dm(), p);
  EXPECT_TRUE(m.is_valid());
  EXPECT_EQ(m.has(MigratePfnFlags::kDevicePrivate), dpas());
  EXPECT_EQ(m.raw() & ~kMigratePfnFlagsMask, m.pfn_or_offset().raw_index() << kMigratePfnShift);
  EXPECT_EQ(migrate_pfn_to_page(dm(), m), p);
  EXPECT_EQ(migrate_pfn_to_page(dm(), MigratePfn::of(MigratePfnFlags::kMigrate)), nullptr);
  // A RAM page never carries the tag.
  page::Folio f = *k().alloc_folio(Order(0));
  const MigratePfn r = migrate_pfn_from_page(dm(), f.head());
  EXPECT_FALSE(r.has(MigratePfnFlags::kDevicePrivate));
  EXPECT_EQ(migrate_pfn_to_page(dm(), r), f.head());
  page::folio_put(f);
  EXPECT_EQ(sizeof(MigratePfn), 8u);
  EXPECT_EQ(static_cast<uint64_t>(MigratePfnFlags::kDevicePrivate), uint64_t{1} << 5);
}

TEST_P(MigrateTest, SystemToDeviceAndBackKeepsBytesAndCounts) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 16, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  constexpr uint64_t n = 6;
  const VirtAddr a = p->mmap_anon(n * kPageSize, kRw).value();
  write_pages(*p, a, n, 1);
  const uint64_t free_mapped = k().nr_free_pages();
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), int64_t(n));

  // While the driver copies, each PTE is a RAM migration entry (writable pages: WRITE).
  const TestDevice::Outcome o = dev.migrate_to_device(
      p->mm(), a, n, {}, MigrateVmaSelect::kSystem, [&](mm::Mm& mm, MigrateVma& args) {
        EXPECT_EQ(args.cpages, n);
        for (uint64_t i = 0; i < n; ++i) {
          const DecodedEntry d = pte(mm, a + i * kPageSize);
          EXPECT_EQ(arch::softleaf_type(d.leaf), SoftleafType::kMigrationWrite);
          EXPECT_TRUE(arch::softleaf_is_migration_dirty(d.leaf));
          EXPECT_TRUE(args.src[i].has(MigratePfnFlags::kValid | MigratePfnFlags::kMigrate |
                                      MigratePfnFlags::kWrite));
          EXPECT_FALSE(args.src[i].has(MigratePfnFlags::kDevicePrivate));
          page::Page* s = migrate_pfn_to_page(dm(), args.src[i]);
          EXPECT_EQ(s->ref_count(), 1);  // the collect reference only
          EXPECT_EQ(s->mapcount(), 0);
          EXPECT_TRUE(page::folio_test_locked(page::page_folio(s)));
        }
      });
  EXPECT_EQ(o.cpages, n);
  EXPECT_EQ(o.migrated, n);
  EXPECT_EQ(k().nr_free_pages(), free_mapped + n);  // the RAM pages were freed
  EXPECT_EQ(dev.nr_free(), dev.nr_pages() - n);
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), int64_t(n));
  for (uint64_t i = 0; i < n; ++i) {
    const VirtAddr va = a + i * kPageSize;
    expect_device_entry(p->mm(), va, /*writable=*/true);
    page::Page* d = mapped_page(p->mm(), va);
    EXPECT_EQ(d->ref_count(), 1);
    EXPECT_EQ(d->mapcount(), 1);
    EXPECT_FALSE(page::folio_test_locked(page::page_folio(d)));
    EXPECT_TRUE(page::page_folio(d).is_anon());
    EXPECT_TRUE(mm::page_anon_exclusive(d));
    EXPECT_EQ(std::vector<std::byte>(dev.bytes(d).begin(), dev.bytes(d).end()), pattern(1 + i));
  }

  const TestDevice::Outcome back = dev.migrate_to_system(p->mm(), a, n);
  EXPECT_EQ(back.cpages, n);
  EXPECT_EQ(back.migrated, n);
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());
  EXPECT_EQ(k().nr_free_pages(), free_mapped);
  for (uint64_t i = 0; i < n; ++i) {
    const DecodedEntry d = pte(p->mm(), a + i * kPageSize);
    ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
    EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite));
    page::Page* r = mapped_page(p->mm(), a + i * kPageSize);
    EXPECT_EQ(r->ref_count(), 1);
    EXPECT_EQ(r->mapcount(), 1);
    EXPECT_TRUE(mm::page_anon_exclusive(r));
  }
  expect_pages(*p, a, n, 1);
  EXPECT_EQ(dev.faults.load(), 0);  // no CPU fault was needed
}

// A PMD-mapped THP migrates to the device page by page (no MIGRATE_VMA_SELECT_COMPOUND):
// migrate_vma_collect splits the PMD and the folio, every page becomes a device-private
// entry, and back again; then a second THP is split by a partial migration and its rest keeps
// its bytes. RAM returns exactly.
TEST_P(MigrateTest, ThpMigratesPageByPageAfterASplit) {
  constexpr uint64_t kPmd = mm::kHpagePmdSize;
  constexpr uint64_t kNr = mm::kHpagePmdNr;
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, kNr + 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr raw = p->mmap_anon(3 * kPmd, kRw).value();
  const VirtAddr a(raw.align_down(kPmd).raw() + kPmd);
  ASSERT_TRUE(p->madvise(a, kPmd, mm::Madvise::kHugePage).is_ok());
  write_pages(*p, a, kNr, 7);
  const std::optional<DecodedEntry> leaf =
      mm::pmd_trans_huge(k(), p->mm().page_table().walk_pmd(a)->load());
  ASSERT_TRUE(leaf.has_value()) << "a THP before the migration";
  const Pfn thp = leaf->pfn;
  const uint64_t free_mapped = k().nr_free_pages();

  const TestDevice::Outcome o = dev.migrate_to_device(
      p->mm(), a, kNr, {}, MigrateVmaSelect::kSystem, [&](mm::Mm& mm, MigrateVma& args) {
        EXPECT_EQ(args.cpages, kNr);
        // Split: every source is a small folio holding only the collect reference.
        for (uint64_t i : {uint64_t{0}, uint64_t{1}, kNr - 1}) {
          page::Page* s = migrate_pfn_to_page(dm(), args.src[i]);
          EXPECT_EQ(k().page_to_pfn(s), thp + PageCount(i));
          EXPECT_FALSE(page::page_folio(s).is_large());
          EXPECT_EQ(s->ref_count(), 1);
          EXPECT_EQ(s->mapcount(), 0);
          EXPECT_EQ(arch::softleaf_type(pte(mm, a + i * kPageSize).leaf),
                    SoftleafType::kMigrationWrite);
        }
      });
  EXPECT_EQ(o.migrated, kNr);
  // The PTE table the split hooked stays (it was the deposited one); the THP's RAM is free.
  EXPECT_EQ(k().nr_free_pages(), free_mapped + kNr);
  EXPECT_EQ(p->mm().page_table().nr_deposited(), 0u);
  for (uint64_t i : {uint64_t{0}, uint64_t{100}, kNr - 1}) {
    expect_device_entry(p->mm(), a + i * kPageSize, /*writable=*/true);
    page::Page* d = mapped_page(p->mm(), a + i * kPageSize);
    EXPECT_EQ(std::vector<std::byte>(dev.bytes(d).begin(), dev.bytes(d).end()), pattern(7 + i));
  }
  EXPECT_EQ(dev.migrate_to_system(p->mm(), a, kNr).migrated, kNr);
  expect_pages(*p, a, kNr, 7);
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());

  // The range is PTE-mapped now; MADV_COLLAPSE makes it one THP again. A partial migration
  // then moves only 4 pages; the other 508 stay in the split-off small folios with their
  // bytes.
  write_pages(*p, a, kNr, 9);
  ASSERT_TRUE(p->madvise(a, kPmd, mm::Madvise::kCollapse).is_ok());
  ASSERT_TRUE(mm::pmd_trans_huge(k(), p->mm().page_table().walk_pmd(a)->load()).has_value());
  expect_pages(*p, a, kNr, 9);
  EXPECT_EQ(dev.migrate_to_device(p->mm(), a + 10 * kPageSize, 4).migrated, 4u);
  expect_device_entry(p->mm(), a + 11 * kPageSize, true);
  EXPECT_EQ(pte(p->mm(), a + 9 * kPageSize).kind, DecodedEntry::Kind::kPresent);
  expect_pages(*p, a, kNr, 9);  // the CPU reads bring the 4 pages back too
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), int64_t(kNr));
  p.reset();
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());
}

TEST_P(MigrateTest, HolesAndTheZeroPageArePopulated) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(4 * kPageSize, kRw).value();
  // Page 0: never touched (no table); page 1: the zero page; page 2: data; page 3: none.
  ASSERT_TRUE(p->read_u64(a + kPageSize).is_ok());
  write_pages(*p, a + 2 * kPageSize, 1, 9);
  const TestDevice::Outcome o = dev.migrate_to_device(
      p->mm(), a, 4, {}, MigrateVmaSelect::kSystem, [&](mm::Mm&, MigrateVma& args) {
        for (uint64_t i : {0, 1, 3}) {
          EXPECT_EQ(args.src[i], MigratePfn::of(MigratePfnFlags::kMigrate)) << i;
        }
        EXPECT_TRUE(args.src[2].is_valid());
      });
  EXPECT_EQ(o.cpages, 4u);
  EXPECT_EQ(o.migrated, 4u);
  for (uint64_t i = 0; i < 4; ++i) {
    expect_device_entry(p->mm(), a + i * kPageSize, /*writable=*/true);  // VM_WRITE
    EXPECT_EQ(mapped_page(p->mm(), a + i * kPageSize)->ref_count(), 1);
  }
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), 4);
  // A CPU read brings every page back with its bytes (zeros for the holes).
  for (uint64_t i : {0, 1, 3}) EXPECT_EQ(*p->read_u64(a + i * kPageSize + 64), 0u);
  expect_pages(*p, a + 2 * kPageSize, 1, 9);
  EXPECT_EQ(dev.faults.load(), 4);
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());
}

TEST_P(MigrateTest, DeclinedPagesKeepTheirMappingAndBytes) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(6 * kPageSize, kRw).value();
  write_pages(*p, a, 6, 20);
  const TestDevice::Outcome o =
      dev.migrate_to_device(p->mm(), a, 6, [](uint64_t i) { return i % 2 == 1; });
  EXPECT_EQ(o.cpages, 6u);
  EXPECT_EQ(o.migrated, 3u);
  for (uint64_t i = 0; i < 6; ++i) {
    const VirtAddr va = a + i * kPageSize;
    if (i % 2 == 0) {
      expect_device_entry(p->mm(), va, true);
      continue;
    }
    const DecodedEntry d = pte(p->mm(), va);
    ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
    EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite));
    page::Page* r = mapped_page(p->mm(), va);
    EXPECT_EQ(r->ref_count(), 1);
    EXPECT_EQ(r->mapcount(), 1);
    EXPECT_FALSE(page::folio_test_locked(page::page_folio(r)));
  }
  EXPECT_EQ(dev.nr_free(), dev.nr_pages() - 3);
  expect_pages(*p, a, 6, 20);  // faults the three device pages back
  EXPECT_EQ(dev.faults.load(), 3);
}

TEST_P(MigrateTest, OwnerAndSelectFlagsFilter) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(2 * kPageSize, kRw).value();
  write_pages(*p, a, 2, 40);
  // SELECT_DEVICE_PRIVATE does not take system pages.
  EXPECT_EQ(dev.migrate_to_device(p->mm(), a, 2, {}, MigrateVmaSelect::kDevicePrivate).cpages,
            0u);
  EXPECT_EQ(pte(p->mm(), a).kind, DecodedEntry::Kind::kPresent);
  ASSERT_EQ(dev.migrate_to_device(p->mm(), a, 2).migrated, 2u);
  // Another owner's migration does not see these pages.
  const TestDevice::Outcome other = dev.migrate_to_system(p->mm(), a, 2, &kOwnerB);
  EXPECT_EQ(other.cpages, 0u);
  expect_device_entry(p->mm(), a, true);
  // SELECT_SYSTEM does not take device-private pages either.
  EXPECT_EQ(dev.migrate_to_device(p->mm(), a, 2).cpages, 0u);
  expect_device_entry(p->mm(), a + kPageSize, true);
  EXPECT_EQ(dev.migrate_to_system(p->mm(), a, 2).migrated, 2u);
  expect_pages(*p, a, 2, 40);
  EXPECT_EQ(dev.faults.load(), 0);
}

TEST_P(MigrateTest, CpuFaultMigratesBackThroughTaggedMigrationEntries) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(2 * kPageSize, kRw).value();
  write_pages(*p, a, 2, 60);
  ASSERT_EQ(dev.migrate_to_device(p->mm(), a, 2).migrated, 2u);
  int seen = 0;
  dev.on_fault_collected = [&](mm::Mm& mm, MigrateVma& args) {
    ++seen;
    EXPECT_EQ(args.cpages, 1u);
    EXPECT_EQ(args.src[0].has(MigratePfnFlags::kDevicePrivate), dpas());
    EXPECT_TRUE(args.src[0].has(MigratePfnFlags::kWrite));
    const DecodedEntry d = pte(mm, args.start);
    // dpas: SWP_MIGRATION_DEVICE_WRITE holding the offset; legacy: SWP_MIGRATION_WRITE, PFN.
    EXPECT_EQ(arch::softleaf_type(d.leaf), dpas() ? SoftleafType::kMigrationDevicePrivateWrite
                                                  : SoftleafType::kMigrationWrite);
    EXPECT_EQ(arch::softleaf_to_pfn_or_offset(d.leaf)->is_offset(), dpas());
    page::Page* fp = args.fault_page;
    EXPECT_EQ(migrate_pfn_to_page(dm(), args.src[0]), fp);
    // fault path's reference + the collect reference; no mapping left.
    EXPECT_EQ(fp->ref_count(), 2);
    EXPECT_EQ(fp->mapcount(), 0);
  };
  // A write fault: the page comes back writable, the other page stays on the device.
  ASSERT_TRUE(p->write_u64(a + 8, 0xabcdef).is_ok());
  EXPECT_EQ(seen, 1);
  EXPECT_EQ(pte(p->mm(), a).kind, DecodedEntry::Kind::kPresent);
  expect_device_entry(p->mm(), a + kPageSize, true);
  EXPECT_EQ(dev.nr_free(), dev.nr_pages() - 1);  // the fault page was freed after the fault
  std::vector<std::byte> want = pattern(60);
  const uint64_t v = 0xabcdef;
  std::memcpy(want.data() + 8, &v, 8);
  std::vector<std::byte> got(kPageSize);
  ASSERT_TRUE(p->read(a, got).is_ok());
  EXPECT_EQ(got, want);
  dev.on_fault_collected = {};
  expect_pages(*p, a + kPageSize, 1, 61);
}

TEST_P(MigrateTest, ReadOnlyMappingsMigrateAsReadExclusiveAndComeBackReadOnly) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(kPageSize, kRw).value();
  write_pages(*p, a, 1, 70);
  ASSERT_TRUE(p->mprotect(a, kPageSize, mm::MmapProt::kRead).is_ok());
  dev.migrate_to_device(p->mm(), a, 1, {}, MigrateVmaSelect::kSystem,
                        [&](mm::Mm& mm, MigrateVma& args) {
                          EXPECT_FALSE(args.src[0].has(MigratePfnFlags::kWrite));
                          EXPECT_EQ(arch::softleaf_type(pte(mm, a).leaf),
                                    SoftleafType::kMigrationReadExclusive);
                        });
  expect_device_entry(p->mm(), a, /*writable=*/false);  // VM_WRITE clear
  EXPECT_TRUE(mm::page_anon_exclusive(mapped_page(p->mm(), a)));
  ASSERT_EQ(dev.migrate_to_system(p->mm(), a, 1).migrated, 1u);
  const DecodedEntry d = pte(p->mm(), a);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(arch::has(d.prot, arch::Prot::kWrite));
  EXPECT_TRUE(mm::page_anon_exclusive(mapped_page(p->mm(), a)));
  expect_pages(*p, a, 1, 70);
}

TEST_P(MigrateTest, ForkThenFaultBackGivesBothMmsTheNewPageThenCow) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto parent = mm::Process::create(k()).value();
  const VirtAddr a = parent->mmap_anon(2 * kPageSize, kRw).value();
  write_pages(*parent, a, 2, 80);
  ASSERT_EQ(dev.migrate_to_device(parent->mm(), a, 2).migrated, 2u);
  auto child = parent->fork().value();
  for (mm::Process* q : {parent.get(), child.get()}) {
    expect_device_entry(q->mm(), a, /*writable=*/false);
  }
  page::Page* d0 = mapped_page(parent->mm(), a);
  EXPECT_EQ(d0, mapped_page(child->mm(), a));
  EXPECT_EQ(d0->ref_count(), 2);
  EXPECT_EQ(d0->mapcount(), 2);
  EXPECT_FALSE(mm::page_anon_exclusive(d0));

  // The child reads: try_to_migrate replaces the parent's entry too, and finalize maps the
  // new RAM page read-only in both.
  dev.on_fault_collected = [&](mm::Mm&, MigrateVma&) {
    const DecodedEntry pe = pte(parent->mm(), a);
    EXPECT_EQ(arch::softleaf_type(pe.leaf), dpas() ? SoftleafType::kMigrationDevicePrivateRead
                                                   : SoftleafType::kMigrationRead);
  };
  EXPECT_EQ(*child->read_u64(a), *reinterpret_cast<const uint64_t*>(pattern(80).data()));
  dev.on_fault_collected = {};
  page::Page* r = mapped_page(child->mm(), a);
  EXPECT_EQ(r, mapped_page(parent->mm(), a));
  EXPECT_FALSE(r->is_zone_device());
  EXPECT_EQ(r->ref_count(), 2);
  EXPECT_EQ(r->mapcount(), 2);
  for (mm::Process* q : {parent.get(), child.get()}) {
    const DecodedEntry d = pte(q->mm(), a);
    ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
    EXPECT_FALSE(arch::has(d.prot, arch::Prot::kWrite));
  }
  EXPECT_EQ(dev.nr_free(), dev.nr_pages() - 1);
  // COW: the parent's write gets its own copy; the child keeps the old bytes.
  ASSERT_TRUE(parent->write_u64(a, 7).is_ok());
  EXPECT_NE(mapped_page(parent->mm(), a), mapped_page(child->mm(), a));
  EXPECT_EQ(*parent->read_u64(a), 7u);
  expect_pages(*child, a, 2, 80);
  EXPECT_EQ(mapped_page(child->mm(), a)->ref_count(), 1);
  // Page 1 came back to the child by its own fault; the parent still reads the same bytes.
  expect_pages(*parent, a + kPageSize, 1, 81);
}

TEST_P(MigrateTest, EvictionReachesEveryProcessMappingADevicePage) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto parent = mm::Process::create(k()).value();
  const VirtAddr a = parent->mmap_anon(3 * kPageSize, kRw).value();
  write_pages(*parent, a, 3, 90);
  ASSERT_EQ(dev.migrate_to_device(parent->mm(), a, 3).migrated, 3u);
  auto child = parent->fork().value();
  EXPECT_EQ(dev.evict_all(), 3u);
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());
  for (uint64_t i = 0; i < 3; ++i) {
    const VirtAddr va = a + i * kPageSize;
    page::Page* r = mapped_page(parent->mm(), va);
    ASSERT_NE(r, nullptr);
    EXPECT_FALSE(r->is_zone_device());
    EXPECT_EQ(r, mapped_page(child->mm(), va));
    EXPECT_EQ(r->ref_count(), 2);
    EXPECT_EQ(r->mapcount(), 2);
    EXPECT_FALSE(arch::has(pte(child->mm(), va).prot, arch::Prot::kWrite));
  }
  EXPECT_EQ(dev.faults.load(), 0);
  expect_pages(*parent, a, 3, 90);
  expect_pages(*child, a, 3, 90);
  ASSERT_TRUE(child->write_u64(a, 1).is_ok());
  expect_pages(*parent, a, 1, 90);
}

TEST_P(MigrateTest, MunmapAndExitReleaseDevicePagesAndMigrationEntriesAreZapped) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(4 * kPageSize, kRw).value();
  write_pages(*p, a, 4, 100);
  ASSERT_EQ(dev.migrate_to_device(p->mm(), a, 4).migrated, 4u);
  ASSERT_TRUE(p->munmap(a, 2 * kPageSize).is_ok());
  EXPECT_EQ(dev.nr_free(), dev.nr_pages() - 2);
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), 2);
  p.reset();  // exit
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());
}

TEST_P(MigrateTest, CoherentPagesAreMappedPresentAndMigrateBack) {
  TestDevice dev(*dk_, MemoryType::kDeviceCoherent, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(3 * kPageSize, kRw).value();
  write_pages(*p, a, 3, 110);
  ASSERT_EQ(dev.migrate_to_device(p->mm(), a, 3).migrated, 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    const DecodedEntry d = pte(p->mm(), a + i * kPageSize);
    ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
    EXPECT_GE(d.pfn, Pfn(testing::kCoherentBase >> kPageShift));
    page::Page* c = mapped_page(p->mm(), a + i * kPageSize);
    EXPECT_TRUE(devmem::is_device_coherent_page(c));
    EXPECT_EQ(c->ref_count(), 1);
    EXPECT_EQ(c->mapcount(), 1);
  }
  // The CPU reads coherent memory in place: no fault, no migration.
  expect_pages(*p, a, 3, 110);
  // SELECT_DEVICE_COHERENT with the owner brings page 0 and 1 back.
  EXPECT_EQ(dev.migrate_to_system(p->mm(), a, 2).migrated, 2u);
  EXPECT_FALSE(mapped_page(p->mm(), a)->is_zone_device());
  // migrate_device_coherent_folio: a pinned-looking folio stays (EBUSY), then it moves.
  page::Page* c = mapped_page(p->mm(), a + 2 * kPageSize);
  page::Folio cf = page::page_folio(c);
  page::folio_get(cf);  // the caller's reference, consumed by the call
  page::folio_get(cf);  // an extra user: the migration must refuse
  const Status busy = migrate_device_coherent_folio(k(), cf);
  EXPECT_EQ(busy.error().code(), Errno::kEBUSY);
  EXPECT_EQ(mapped_page(p->mm(), a + 2 * kPageSize), c);
  EXPECT_EQ(c->ref_count(), 2);  // mapping + the extra user
  EXPECT_EQ(c->mapcount(), 1);
  page::folio_put(cf);
  page::folio_get(cf);
  ASSERT_TRUE(k().device_private_handler()->migrate_longterm_unpinnable(cf).is_ok());
  page::Page* r = mapped_page(p->mm(), a + 2 * kPageSize);
  EXPECT_FALSE(r->is_zone_device());
  EXPECT_EQ(r->ref_count(), 1);
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());
  expect_pages(*p, a, 3, 110);
}

TEST_P(MigrateTest, SetupRefusesBadArgumentsWithEinval) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(4 * kPageSize, kRw).value();
  write_pages(*p, a, 1, 1);
  std::vector<MigratePfn> src(8), dst(8);
  mm::Mm& mm = p->mm();
  ReadLocker guard(mm.mmap_lock());
  const mm::Vma* vma = mm.vma_lookup(a);
  auto args = [&] {
    MigrateVma m;
    m.vma = vma;
    m.start = a;
    m.end = a + 4 * kPageSize;
    m.src = src;
    m.dst = dst;
    m.pgmap_owner = &kOwnerA;
    m.flags = MigrateVmaSelect::kSystem;
    return m;
  };
  auto einval = [&](MigrateVma m) {
    mm.mmap_assert_locked();  // the lambda runs under the guard above
    const Status s = migrate_vma_setup(mm, m);
    return s.is_error() && s.error().code() == Errno::kEINVAL;
  };
  MigrateVma m = args();
  m.vma = nullptr;
  EXPECT_TRUE(einval(m));
  m = args();
  m.end = m.start;
  EXPECT_TRUE(einval(m));
  m = args();
  m.end = a + 100;  // less than a page
  EXPECT_TRUE(einval(m));
  m = args();
  m.start = a - kPageSize;
  EXPECT_TRUE(einval(m));
  m = args();
  m.end = a + 5 * kPageSize;
  EXPECT_TRUE(einval(m));
  m = args();
  m.src = std::span(src).first(2);
  EXPECT_TRUE(einval(m));
  m = args();
  page::Folio ram = *k().alloc_folio(Order(0));
  m.fault_page = ram.head();  // not device-private
  EXPECT_TRUE(einval(m));
  page::folio_put(ram);
  m = args();
  page::Page* dp = dev.alloc_page();  // device-private, locked by zone_device_page_init
  page::folio_unlock(page::page_folio(dp));
  m.fault_page = dp;  // not locked
  EXPECT_TRUE(einval(m));
  page::folio_put(page::page_folio(dp));
  mm::Vma special = *vma;
  special.flags = special.flags | mm::VmFlags::kIo;
  m = args();
  m.vma = &special;
  EXPECT_TRUE(einval(m));
  // Nothing was touched.
  EXPECT_EQ(pte(mm, a).kind, DecodedEntry::Kind::kPresent);
  // An unaligned but valid range is page-masked and works.
  m = args();
  m.start = a + 10;
  m.end = a + kPageSize + 20;
  ASSERT_TRUE(migrate_vma_setup(mm, m).is_ok());
  EXPECT_EQ(m.npages, 1u);
  EXPECT_EQ(m.start, a);
  migrate_vma_pages(mm, m);
  migrate_vma_finalize(mm, m);
  EXPECT_EQ(pte(mm, a).kind, DecodedEntry::Kind::kPresent);
}

// migrate_vma_setup refuses a hugetlb VMA (is_vm_hugetlb_page): EINVAL, nothing collected,
// the huge page stays mapped with its bytes.
TEST_P(MigrateTest, SetupRefusesAHugetlbVma) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  k().set_nr_hugepages(1);
  auto p = mm::Process::create(k()).value();
  constexpr uint64_t kHuge = mm::kHpagePmdSize;
  const VirtAddr a = p->mmap(VirtAddr(0), kHuge, kRw,
                             mm::MmapFlags::kPrivate | mm::MmapFlags::kAnonymous |
                                 mm::MmapFlags::kHugetlb)
                         .value();
  ASSERT_TRUE(p->write_u64(a + 8 * kPageSize, 0x5151).is_ok());
  std::vector<MigratePfn> src(8), dst(8);
  mm::Mm& mm = p->mm();
  {
    ReadLocker guard(mm.mmap_lock());
    MigrateVma m;
    m.vma = mm.vma_lookup(a);
    m.start = a + 8 * kPageSize;
    m.end = a + 16 * kPageSize;
    m.src = src;
    m.dst = dst;
    m.pgmap_owner = &kOwnerA;
    m.flags = MigrateVmaSelect::kSystem;
    const Status s = migrate_vma_setup(mm, m);
    ASSERT_TRUE(s.is_error());
    EXPECT_EQ(s.error().code(), Errno::kEINVAL);
  }
  const DecodedEntry d =
      k().codec().decode(arch::EntryLevel::kPmd, mm.page_table().walk_pmd(a)->load());
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(page::page_folio(k().pfn_to_page(d.pfn).value()).ref_count(), 1);
  EXPECT_EQ(p->read_u64(a + 8 * kPageSize).value(), 0x5151u);
  p.reset();
  EXPECT_EQ(k().hugetlb_meminfo().free, 1u);
  k().set_nr_hugepages(0);
}

TEST_P(MigrateTest, CompoundDestinationForASmallSourceIsNotMigrated) {
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, 8, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr a = p->mmap_anon(kPageSize, kRw).value();
  write_pages(*p, a, 1, 5);
  std::vector<MigratePfn> src(1), dst(1);
  {
    ReadLocker guard(p->mm().mmap_lock());
    MigrateVma m;
    m.vma = p->mm().vma_lookup(a);
    m.start = a;
    m.end = a + kPageSize;
    m.src = src;
    m.dst = dst;
    m.pgmap_owner = &kOwnerA;
    m.flags = MigrateVmaSelect::kSystem | MigrateVmaSelect::kCompound;
    ASSERT_TRUE(migrate_vma_setup(p->mm(), m).is_ok());
    EXPECT_FALSE(src[0].has(MigratePfnFlags::kCompound));  // no THP yet
    dst[0] = migrate_pfn_from_page(dm(), dev.alloc_page()) | MigratePfnFlags::kCompound;
    migrate_vma_pages(p->mm(), m);
    EXPECT_FALSE(src[0].is_migrate());
    migrate_vma_finalize(p->mm(), m);
  }
  EXPECT_EQ(pte(p->mm(), a).kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(dev.nr_free(), dev.nr_pages());
  expect_pages(*p, a, 1, 5);
}

// MIGRATE_VMA_SELECT_COMPOUND over an untouched, aligned 2 MiB: one MIGRATE|COMPOUND hole
// entry and 511 empty ones; an order-9 device folio as a COMPOUND dst is mapped by one
// device-private PMD (migrate_vma_insert_huge_pmd_page); munmap gives it back whole.
TEST_P(MigrateTest, CompoundHoleBecomesADevicePrivatePmd) {
  constexpr uint64_t kPmd = mm::kHpagePmdSize;
  constexpr uint64_t kNr = mm::kHpagePmdNr;
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, kNr, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr raw = p->mmap_anon(3 * kPmd, kRw).value();
  const VirtAddr a(raw.align_down(kPmd).raw() + kPmd);
  std::vector<MigratePfn> src(kNr), dst(kNr);
  page::Page* head = nullptr;
  {
    ReadLocker guard(p->mm().mmap_lock());
    MigrateVma args;
    args.vma = p->mm().vma_lookup(a);
    args.start = a;
    args.end = a + kPmd;
    args.src = src;
    args.dst = dst;
    args.pgmap_owner = &kOwnerA;
    args.flags = MigrateVmaSelect::kSystem | MigrateVmaSelect::kCompound;
    ASSERT_TRUE(migrate_vma_setup(p->mm(), args).is_ok());
    EXPECT_EQ(args.npages, kNr);
    EXPECT_EQ(args.cpages, 1u);
    EXPECT_EQ(src[0].raw(), MigratePfn::of(MigratePfnFlags::kMigrate |
                                           MigratePfnFlags::kCompound).raw());
    for (uint64_t i = 1; i < kNr; ++i) ASSERT_EQ(src[i].raw(), 0u) << i;
    head = dev.alloc_huge();
    ASSERT_NE(head, nullptr);
    for (uint64_t i = 0; i < kNr; ++i) {
      std::span<std::byte> b = dev.bytes(head + i);
      std::memset(b.data(), 0, kPageSize);
      b[8] = std::byte(i & 0xff);
    }
    dst[0] = migrate_pfn_from_page(dm(), head);
    dst[0].set(MigratePfnFlags::kCompound);
    migrate_vma_pages(p->mm(), args);
    EXPECT_TRUE(src[0].is_migrate());
    migrate_vma_finalize(p->mm(), args);
  }
  page::Folio f = page::page_folio(head);
  EXPECT_EQ(f.order().raw(), mm::kHpagePmdOrder);
  EXPECT_EQ(f.ref_count(), 1);  // the mapping's
  EXPECT_EQ(f.entire_mapcount(), 1);
  EXPECT_FALSE(page::folio_test_locked(f));
  EXPECT_TRUE(mm::page_anon_exclusive(head));
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), int64_t(kNr));
  EXPECT_EQ(p->mm().page_table().nr_deposited(), 1u);
  const uint64_t word = p->mm().page_table().walk_pmd(a)->load();
  ASSERT_TRUE(mm::pmd_is_device_private_entry(k(), word));
  const arch::Softleaf leaf = mm::softleaf_from_pmd(k(), word);
  EXPECT_EQ(arch::softleaf_type(leaf), SoftleafType::kDevicePrivateWrite);
  EXPECT_EQ(*arch::softleaf_to_pfn_or_offset(leaf), dm().page_to_pfn_or_offset(head));
  EXPECT_EQ(k().device_private_handler()->softleaf_to_page(leaf), head);
  // Gone whole with the mapping: the device gets all 512 pages back in one folio_free.
  ASSERT_TRUE(p->munmap(a, kPmd).is_ok());
  EXPECT_EQ(dev.frees.load(), 1);
  EXPECT_EQ(dev.nr_free(), kNr);
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), 0);
}

// The same hole filled by the driver with 512 small device pages: the compound src entry is
// split and each page inserted on its own (512 device-private PTEs).
TEST_P(MigrateTest, CompoundHoleWithSmallDstPagesSplits) {
  constexpr uint64_t kPmd = mm::kHpagePmdSize;
  constexpr uint64_t kNr = mm::kHpagePmdNr;
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, kNr, &kOwnerA);
  auto p = mm::Process::create(k()).value();
  const VirtAddr raw = p->mmap_anon(3 * kPmd, kRw).value();
  const VirtAddr a(raw.align_down(kPmd).raw() + kPmd);
  std::vector<MigratePfn> src(kNr), dst(kNr);
  {
    ReadLocker guard(p->mm().mmap_lock());
    MigrateVma args;
    args.vma = p->mm().vma_lookup(a);
    args.start = a;
    args.end = a + kPmd;
    args.src = src;
    args.dst = dst;
    args.pgmap_owner = &kOwnerA;
    args.flags = MigrateVmaSelect::kSystem | MigrateVmaSelect::kCompound;
    ASSERT_TRUE(migrate_vma_setup(p->mm(), args).is_ok());
    ASSERT_EQ(args.cpages, 1u);
    for (uint64_t i = 0; i < kNr; ++i) {
      page::Page* d = dev.alloc_page();
      ASSERT_NE(d, nullptr);
      std::memset(dev.bytes(d).data(), 0, kPageSize);
      dst[i] = migrate_pfn_from_page(dm(), d);
    }
    migrate_vma_pages(p->mm(), args);
    for (uint64_t i = 0; i < kNr; ++i) {
      ASSERT_TRUE(src[i].is_migrate()) << i;
      ASSERT_FALSE(src[i].has(MigratePfnFlags::kCompound)) << i;
    }
    migrate_vma_finalize(p->mm(), args);
  }
  EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), int64_t(kNr));
  for (uint64_t i = 0; i < kNr; i += 37) {
    expect_device_entry(p->mm(), a + i * kPageSize, true);
    page::Page* d = mapped_page(p->mm(), a + i * kPageSize);
    EXPECT_EQ(d->ref_count(), 1) << i;
    EXPECT_EQ(d->mapcount(), 1) << i;
  }
  EXPECT_EQ(dev.nr_free(), 0u);
  p.reset();
  EXPECT_EQ(dev.nr_free(), kNr);
}

// A device THP (made as in CompoundHoleBecomesADevicePrivatePmd, word 1 of page i holding i)
// collected without SELECT_COMPOUND is split, the PMD into device-private PTEs and the
// folio into small device folios that keep their pagemap; then one page migrates back. A CPU
// fault on the PMD (do_huge_pmd_device_private) brings back the faulting page the same way.
TEST_P(MigrateTest, DevicePmdSplitsWhenMigratedBackPageByPage) {
  constexpr uint64_t kPmd = mm::kHpagePmdSize;
  constexpr uint64_t kNr = mm::kHpagePmdNr;
  TestDevice dev(*dk_, MemoryType::kDevicePrivate, kNr, &kOwnerA);
  auto make_device_pmd = [&](mm::Process& p) -> VirtAddr {
    const VirtAddr raw = p.mmap_anon(3 * kPmd, kRw).value();
    const VirtAddr a(raw.align_down(kPmd).raw() + kPmd);
    std::vector<MigratePfn> src(kNr), dst(kNr);
    ReadLocker guard(p.mm().mmap_lock());
    MigrateVma args;
    args.vma = p.mm().vma_lookup(a);
    args.start = a;
    args.end = a + kPmd;
    args.src = src;
    args.dst = dst;
    args.pgmap_owner = &kOwnerA;
    args.flags = MigrateVmaSelect::kSystem | MigrateVmaSelect::kCompound;
    EXPECT_TRUE(migrate_vma_setup(p.mm(), args).is_ok());
    page::Page* head = dev.alloc_huge();
    EXPECT_NE(head, nullptr);
    for (uint64_t i = 0; i < kNr; ++i) {
      std::span<std::byte> b = dev.bytes(head + i);
      std::memset(b.data(), 0, kPageSize);
      b[8] = std::byte(i & 0xff);
    }
    dst[0] = migrate_pfn_from_page(dm(), head);
    dst[0].set(MigratePfnFlags::kCompound);
    migrate_vma_pages(p.mm(), args);
    migrate_vma_finalize(p.mm(), args);
    EXPECT_TRUE(mm::pmd_is_device_private_entry(k(), p.mm().page_table().walk_pmd(a)->load()));
    return a;
  };
  {
    auto p = mm::Process::create(k()).value();
    const VirtAddr a = make_device_pmd(*p);
    const TestDevice::Outcome o = dev.migrate_to_system(p->mm(), a + 5 * kPageSize, 1);
    EXPECT_EQ(o.cpages, 1u);
    EXPECT_EQ(o.migrated, 1u);
    EXPECT_FALSE(mm::pmd_is_huge(k(), p->mm().page_table().walk_pmd(a)->load()));
    EXPECT_EQ(pte(p->mm(), a + 5 * kPageSize).kind, DecodedEntry::Kind::kPresent);
    EXPECT_EQ(p->read_u64(a + 5 * kPageSize + 8).value(), 5u);
    for (uint64_t i : {uint64_t{0}, uint64_t{6}, kNr - 1}) {
      expect_device_entry(p->mm(), a + i * kPageSize, true);
      page::Page* d = mapped_page(p->mm(), a + i * kPageSize);
      EXPECT_FALSE(page::page_folio(d).is_large()) << i;
      EXPECT_EQ(devmem::page_pgmap(d), &dev.pgmap()) << i;
      EXPECT_EQ(d->ref_count(), 1) << i;
      EXPECT_EQ(d->mapcount(), 1) << i;
    }
    EXPECT_EQ(dev.frees.load(), 1);  // page 5's device page
    // A CPU access to a split page comes back through the PTE path.
    EXPECT_EQ(p->read_u64(a + 300 * kPageSize + 8).value(), 300u & 0xff);
    EXPECT_EQ(dev.faults.load(), 1);
    EXPECT_EQ(p->mm().rss(mm::RssMember::kAnonPages), int64_t(kNr));
  }
  EXPECT_EQ(dev.nr_free(), kNr);
  {
    auto p = mm::Process::create(k()).value();
    const VirtAddr a = make_device_pmd(*p);
    const int faults = dev.faults.load();
    EXPECT_EQ(p->read_u64(a + 9 * kPageSize + 8).value(), 9u);
    EXPECT_EQ(dev.faults.load(), faults + 1);
    EXPECT_EQ(pte(p->mm(), a + 9 * kPageSize).kind, DecodedEntry::Kind::kPresent);
    expect_device_entry(p->mm(), a + 10 * kPageSize, true);
    expect_device_entry(p->mm(), a, true);
    page::Page* h = mapped_page(p->mm(), a);
    EXPECT_FALSE(page::folio_test_locked(page::page_folio(h)));
    EXPECT_EQ(h->ref_count(), 1);
  }
  EXPECT_EQ(dev.nr_free(), kNr);
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, MigrateTest, ::testing::ValuesIn(devmem::kAllDesigns),
                         testing::design_test_name);

// Random sequences of CPU writes and reads, migrations to the device and back (partial
// ranges), forks (the child then exits), and evictions: the process always reads what it
// last wrote, and every page returns at the end.
RC_GTEST_PROP(MigrateProperty, RandomMigrationsAndFaultsKeepContents, ()) {
  const Design design = *rc::gen::element(Design::kLegacy, Design::kDpas, Design::kDpasZone);
  auto dk = testing::make_device_kernel(design);
  const uint64_t free0 = dk->kernel().nr_free_pages();
  {
    TestDevice dev(*dk, MemoryType::kDevicePrivate, 16, &kOwnerA);
    auto p = mm::Process::create(dk->kernel()).value();
    constexpr uint64_t kPages = 4;
    const VirtAddr a = p->mmap_anon(kPages * kPageSize, kRw).value();
    std::vector<uint64_t> model(kPages, 0);
    const int steps = *rc::gen::inRange(1, 25);
    for (int s = 0; s < steps; ++s) {
      const uint64_t i = *rc::gen::inRange<uint64_t>(0, kPages);
      const uint64_t n = *rc::gen::inRange<uint64_t>(1, kPages - i + 1);
      switch (*rc::gen::inRange(0, 6)) {
        case 0: {
          const uint64_t v = *rc::gen::arbitrary<uint64_t>();
          RC_ASSERT(p->write_u64(a + i * kPageSize + 128, v).is_ok());
          model[i] = v;
          break;
        }
        case 1:
          RC_ASSERT(*p->read_u64(a + i * kPageSize + 128) == model[i]);
          break;
        case 2:
          dev.migrate_to_device(p->mm(), a + i * kPageSize, n);
          break;
        case 3:
          dev.migrate_to_system(p->mm(), a + i * kPageSize, n);
          break;
        case 4: {
          auto child = p->fork().value();
          RC_ASSERT(*child->read_u64(a + i * kPageSize + 128) == model[i]);
          break;
        }
        case 5:
          dev.evict_all();
          break;
      }
    }
    for (uint64_t i = 0; i < kPages; ++i)
      RC_ASSERT(*p->read_u64(a + i * kPageSize + 128) == model[i]);
    p.reset();
    RC_ASSERT(dev.nr_free() == dev.nr_pages());
  }
  RC_ASSERT(dk->kernel().nr_free_pages() == free0);
}

TEST(DeviceKernelTest, DesignSetsNumberingZoneAndHandler) {
  for (Design d : devmem::kAllDesigns) {
    auto dk = testing::make_device_kernel(d);
    EXPECT_EQ(dk->kernel().softleaf_format().numbering, devmem::swap_numbering_kind(d));
    EXPECT_EQ(dk->kernel().node().has_zone(page::ZoneType::kDevicePrivate),
              d == Design::kDpasZone);
    EXPECT_EQ(&device_memory_of(dk->kernel()), &dk->device_memory());
    EXPECT_EQ(dk->design(), d);
  }
}

TEST(DeviceKernelTest, VmFaultCodesMapToFaultOutcomes) {
  EXPECT_EQ(vm_fault_to_fault_result(devmem::VmFaultCode::kHandled).outcome,
            mm::FaultOutcome::kHandled);
  EXPECT_EQ(vm_fault_to_fault_result(devmem::VmFaultCode::kOom).outcome, mm::FaultOutcome::kOom);
  EXPECT_EQ(vm_fault_to_fault_result(devmem::VmFaultCode::kSigBus).outcome,
            mm::FaultOutcome::kSigBus);
  EXPECT_EQ(vm_fault_to_fault_result(devmem::VmFaultCode::kRetry).outcome,
            mm::FaultOutcome::kRetry);
}

}  // namespace
}  // namespace dpmm::migrate
