// The seam under the seed's machines and designs: where pagemaps land, what fails and why,
// what is left behind, lookups in both directions, and the teardown wait.
#include "devmem/device_memory.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/softleaf.h"
#include "base/thread.h"
#include "devmem/test_rig.h"
#include "page/folio_lock.h"

namespace dpmm::devmem {
namespace {

using testing::FakeOps;
using testing::make_rig;
using testing::private_config;
using testing::snapshot;
using testing::Snapshot;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kTiB = uint64_t{1} << 40;

using testing::design_test_name;

// Checks page `n` of a registered device-private pagemap both ways.
void expect_round_trip(DeviceMemory& dm, DevPagemap& pgmap, uint64_t n) {
  const arch::PfnOrOffset where = pgmap.range().index(n);
  page::Page* p = MUST(dm.pfn_or_offset_to_page(where), "registered page");
  EXPECT_EQ(dm.page_to_pfn_or_offset(p), where) << "page " << n;
  EXPECT_EQ(page_pgmap(p), &pgmap);
  EXPECT_TRUE(is_device_private_page(p));
  EXPECT_FALSE(is_device_coherent_page(p));
  EXPECT_EQ(p->zone_id(), pgmap.range().space == PagemapSpace::kDevicePrivate
                              ? device_private_zone_type(dm.design())
                              : page::ZoneType::kDevice);
  EXPECT_EQ(p->ref_count(), 0);
  if (where.is_offset()) {
    const DevPrivOffset off = *where.to_offset();
    EXPECT_EQ(*dm.device_private_offset_to_page(off), p);
    EXPECT_EQ(dm.device_private_page_to_offset(p), off);
    EXPECT_TRUE(page_has_device_private_offset(p));
  } else {
    EXPECT_EQ(*dm.pfn_to_page(*where.to_pfn()), p);
    EXPECT_EQ(dm.page_to_pfn(p), *where.to_pfn());
    EXPECT_FALSE(page_has_device_private_offset(p));
  }
}

// ---- the seed: vm-43bit-pci-full, 80 GiB ----

TEST(SeedVm43Bit, LegacyFailsWithErangeAndLeavesNothing) {
  auto rig = make_rig("vm-43bit-pci-full", Design::kLegacy);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 80 * kGiB));
  const Snapshot before = snapshot(*rig);
  const Status st = rig->dm->register_pagemap(pgmap);
  ASSERT_TRUE(st.is_error());
  EXPECT_EQ(st.error().code(), Errno::kERANGE);
  EXPECT_EQ(errno_neg(st.error().code()), -34);
  // The message names the largest free aligned gap: the 2 GiB hole under the PCI window.
  EXPECT_NE(st.error().message().find("2 GiB"), std::string::npos) << st.error().message();
  EXPECT_FALSE(pgmap.is_registered());
  EXPECT_EQ(snapshot(*rig), before);
}

class SeedVm43BitDpas : public ::testing::TestWithParam<Design> {};

// 80 GiB of device memory: 20,971,520 descriptors (1.25 GiB of page array), each initialised at
// registration as the kernel does.
TEST_P(SeedVm43BitDpas, EightyGiBRegistersAtZero) {
  auto rig = make_rig("vm-43bit-pci-full", GetParam());
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 80 * kGiB));
  const Snapshot before = snapshot(*rig);
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  EXPECT_EQ(pgmap.range(), (PagemapRange{PagemapSpace::kDevicePrivate, 0, 80 * kGiB - 1}));
  EXPECT_EQ(pgmap.nr_pages().raw(), 80 * kGiB / 4096);
  EXPECT_EQ(pgmap.descriptor_bytes(), 80 * kGiB / 4096 * 64);
  // No physical address space, no memmap sections were used.
  EXPECT_EQ(snapshot(*rig).iomem, before.iomem);
  EXPECT_EQ(rig->node->memmap().nr_present_sections(), before.memmap_sections);
  // The zone counts the pages: ZONE_DEVICE (dpas) or ZONE_DEVICE_PRIVATE (dpas-zone).
  const page::ZoneType zt = device_private_zone_type(GetParam());
  EXPECT_EQ(rig->node->zone(zt).stats().present.raw(), 80 * kGiB / 4096);
  for (uint64_t n : {uint64_t{0}, pgmap.nr_pages().raw() / 2, pgmap.nr_pages().raw() - 1}) {
    expect_round_trip(*rig->dm, pgmap, n);
  }
  EXPECT_EQ(rig->dm->device_private_page_to_offset(
                *rig->dm->device_private_offset_to_page(DevPrivOffset(0x1400000 - 1))),
            DevPrivOffset(0x13fffff));
  rig->dm->unregister_pagemap(pgmap);
  EXPECT_EQ(snapshot(*rig), before);
}

INSTANTIATE_TEST_SUITE_P(Dpas, SeedVm43BitDpas,
                         ::testing::Values(Design::kDpas, Design::kDpasZone), design_test_name);

// ---- x86-kaslr-err34: the nvidia-uvm "request_free_mem_region() err -34" ----

TEST(KaslrErr34, LegacyFailsWithKaslrAndFitsWithout) {
  auto on = make_rig("x86-kaslr-err34", Design::kLegacy);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 80 * kGiB));
  const Snapshot before = snapshot(*on);
  const Status st = on->dm->register_pagemap(pgmap);
  ASSERT_TRUE(st.is_error());
  EXPECT_EQ(errno_neg(st.error().code()), -34);
  EXPECT_EQ(snapshot(*on), before);

  auto off = make_rig("x86-kaslr-err34", Design::kLegacy,
                      [](phys::MachineConfig& c) { c.kaslr = phys::Kaslr::kOff; });
  const Snapshot before_off = snapshot(*off);
  ASSERT_TRUE(off->dm->register_pagemap(pgmap).is_ok());
  // nokaslr: the search starts at 2^46 - 80 GiB.
  EXPECT_EQ(pgmap.range(),
            (PagemapRange{PagemapSpace::kPhysical, (uint64_t{1} << 46) - 80 * kGiB,
                          (uint64_t{1} << 46) - 1}));
  expect_round_trip(*off->dm, pgmap, pgmap.nr_pages().raw() - 1);
  off->dm->unregister_pagemap(pgmap);
  EXPECT_EQ(snapshot(*off), before_off);
}

// ---- workstation-46bit: legacy works ----

TEST(Workstation46Bit, LegacyLandsBelowTheKaslrDirectMapEnd) {
  auto rig = make_rig("workstation-46bit", Design::kLegacy);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 2 * kGiB));
  const Snapshot before = snapshot(*rig);
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  // KASLR trims the direct map to 11 TiB; the top-down search takes the highest 2 GiB below.
  EXPECT_EQ(pgmap.range(),
            (PagemapRange{PagemapSpace::kPhysical, 11 * kTiB - 2 * kGiB, 11 * kTiB - 1}));
  EXPECT_TRUE(pgmap.descriptors_reachable());
  // The window is claimed in iomem and the memmap grew by 16 sections.
  EXPECT_EQ(rig->machine.iomem().size(), before.iomem.size() + 1);
  EXPECT_EQ(rig->node->memmap().nr_present_sections(), before.memmap_sections + 16);
  const page::ZoneStats z = rig->node->zone(page::ZoneType::kDevice).stats();
  EXPECT_EQ(z.present.raw(), 2 * kGiB / 4096);
  EXPECT_EQ(z.zone_start_pfn, Pfn((11 * kTiB - 2 * kGiB) >> 12));
  for (uint64_t n : {uint64_t{0}, uint64_t{262143}, uint64_t{524287}}) {
    expect_round_trip(*rig->dm, pgmap, n);
  }
  // get_dev_pagemap finds it by PFN and takes a live reference.
  DevPagemap* found = rig->dm->get_dev_pagemap(Pfn((11 * kTiB - kGiB) >> 12));
  ASSERT_EQ(found, &pgmap);
  EXPECT_EQ(pgmap.nr_references(), 1);
  found->put();
  EXPECT_EQ(rig->dm->get_dev_pagemap(Pfn((11 * kTiB) >> 12)), nullptr);
  rig->dm->unregister_pagemap(pgmap);
  EXPECT_EQ(snapshot(*rig), before);
}

// ---- arm64-server: the vmemmap bound ----

TEST(Arm64Server, LegacyBeforeFixRegistersButReadsPastTheVmemmap) {
  auto rig = make_rig("arm64-server", Design::kLegacy, [](phys::MachineConfig& c) {
    c.arm64_physmem_end = phys::Arm64PhysmemEnd::kBeforeFix;
  });
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 16 * kGiB));
  const Snapshot before = snapshot(*rig);
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  // The window: the top of (1 << MAX_PHYSMEM_BITS) - 1, above the linear map.
  const uint64_t start = (uint64_t{1} << 48) - 16 * kGiB;
  EXPECT_EQ(pgmap.range(), (PagemapRange{PagemapSpace::kPhysical, start, (uint64_t{1} << 48) - 1}));
  ASSERT_FALSE(pgmap.descriptors_reachable());
  EXPECT_EQ(pgmap.vmemmap_fault()->code(), Errno::kEFAULT);
  EXPECT_NE(pgmap.vmemmap_fault()->message().find("reads beyond the end of vmemmap"),
            std::string::npos)
      << pgmap.vmemmap_fault()->message();
  EXPECT_NE(pgmap.vmemmap_fault()->message().find(fmt::format("{}", Pfn(start >> 12))),
            std::string::npos);
  // Every pfn_to_page of the range says the same.
  const auto last = rig->dm->pfn_or_offset_to_page(pgmap.range().index(pgmap.nr_pages().raw() - 1));
  ASSERT_TRUE(last.is_error());
  EXPECT_EQ(last.error().code(), Errno::kEFAULT);
  EXPECT_EQ(rig->node->memmap().nr_present_sections(), before.memmap_sections);
  EXPECT_EQ(rig->node->zone(page::ZoneType::kDevice).stats().present.raw(), 16 * kGiB / 4096);
  rig->dm->unregister_pagemap(pgmap);
  EXPECT_EQ(snapshot(*rig), before);
}

TEST(Arm64Server, LegacyAfterFixLandsInsideTheVmemmap) {
  auto rig = make_rig("arm64-server", Design::kLegacy);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 16 * kGiB));
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  EXPECT_TRUE(pgmap.descriptors_reachable());
  // Below the end of the linear map: memstart_addr + 2^47.
  EXPECT_EQ(pgmap.range().end, 0x80000000 + (uint64_t{1} << 47) - 1);
  expect_round_trip(*rig->dm, pgmap, 0);
  rig->dm->unregister_pagemap(pgmap);
}

TEST(Arm64Server, DpasBeforeFixNeverTouchesTheVmemmap) {
  auto rig = make_rig("arm64-server", Design::kDpas, [](phys::MachineConfig& c) {
    c.arm64_physmem_end = phys::Arm64PhysmemEnd::kBeforeFix;
  });
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 16 * kGiB));
  const Snapshot before = snapshot(*rig);
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  EXPECT_TRUE(pgmap.descriptors_reachable());
  EXPECT_EQ(rig->node->memmap().nr_present_sections(), before.memmap_sections);
  EXPECT_EQ(snapshot(*rig).iomem, before.iomem);
  expect_round_trip(*rig->dm, pgmap, 0);
  expect_round_trip(*rig->dm, pgmap, pgmap.nr_pages().raw() - 1);
  rig->dm->unregister_pagemap(pgmap);
  EXPECT_EQ(snapshot(*rig), before);
}

// ---- coherent memory stays physical ----

class Coherent : public ::testing::TestWithParam<Design> {};

TEST_P(Coherent, StaysPhysicalInEveryDesign) {
  auto rig = make_rig("workstation-46bit", GetParam());
  FakeOps ops(PagemapOps::kFolioFree);
  DevPagemapConfig c;
  c.type = MemoryType::kDeviceCoherent;
  c.ops = &ops;
  c.owner = &testing::kOwnerToken;
  c.range = phys::PhysRange{PhysAddr(kTiB), PhysAddr(kTiB + 256 * kMiB - 1)};
  c.name = "coherent";
  DevPagemap pgmap(c);
  const Snapshot before = snapshot(*rig);
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  EXPECT_EQ(pgmap.range(), (PagemapRange{PagemapSpace::kPhysical, kTiB, kTiB + 256 * kMiB - 1}));
  EXPECT_FALSE(pgmap.uses_page_array());
  EXPECT_EQ(rig->dm->device_private_space().nr_ranges(), 0u);
  EXPECT_EQ(rig->node->memmap().nr_present_sections(), before.memmap_sections + 2);
  page::Page* p = *rig->dm->pfn_to_page(Pfn(kTiB >> 12) + PageCount(5));
  EXPECT_TRUE(is_device_coherent_page(p));
  EXPECT_FALSE(is_device_private_page(p));
  EXPECT_EQ(p->zone_id(), page::ZoneType::kDevice);  // never ZONE_DEVICE_PRIVATE
  EXPECT_EQ(rig->dm->page_to_pfn_or_offset(p), arch::PfnOrOffset::of_pfn(Pfn((kTiB >> 12) + 5)));
  DevPagemap* found = rig->dm->get_dev_pagemap(Pfn(kTiB >> 12));
  EXPECT_EQ(found, &pgmap);
  found->put();
  // A second pagemap on the same range conflicts (pagemap_range's ENOMEM).
  DevPagemap again(c);
  EXPECT_EQ(rig->dm->register_pagemap(again).error().code(), Errno::kENOMEM);
  rig->dm->unregister_pagemap(pgmap);
  EXPECT_EQ(snapshot(*rig), before);
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, Coherent, ::testing::ValuesIn(kAllDesigns),
                         design_test_name);

TEST(Coherent, RefusesRamAndUnalignedRanges) {
  auto rig = make_rig("workstation-46bit", Design::kLegacy);
  FakeOps ops(PagemapOps::kFolioFree);
  DevPagemapConfig c;
  c.type = MemoryType::kDeviceCoherent;
  c.ops = &ops;
  c.owner = &testing::kOwnerToken;
  c.range = phys::PhysRange{PhysAddr(4 * kGiB), PhysAddr(4 * kGiB + 128 * kMiB - 1)};  // RAM
  DevPagemap on_ram(c);
  const Snapshot before = snapshot(*rig);
  const Status st = rig->dm->register_pagemap(on_ram);
  EXPECT_EQ(st.error().code(), Errno::kENXIO);
  EXPECT_NE(st.error().message().find("attempted on ram region"), std::string::npos);
  c.range = phys::PhysRange{PhysAddr(kTiB + 4096), PhysAddr(kTiB + 128 * kMiB + 4095)};
  DevPagemap unaligned(c);
  EXPECT_EQ(rig->dm->register_pagemap(unaligned).error().code(), Errno::kEINVAL);
  c.range.reset();
  DevPagemap no_range(c);
  EXPECT_EQ(rig->dm->register_pagemap(no_range).error().code(), Errno::kEINVAL);
  EXPECT_EQ(snapshot(*rig), before);
}

// ---- bad pagemaps and the series' refusals ----

class BadPagemap : public ::testing::TestWithParam<Design> {};

TEST_P(BadPagemap, EinvalAndNothingLeftBehind) {
  auto rig = make_rig("workstation-46bit", GetParam());
  const Snapshot before = snapshot(*rig);
  FakeOps no_migrate(PagemapOps::kFolioFree);
  FakeOps no_free(PagemapOps::kMigrateToRam);
  FakeOps good;
  struct Case {
    DevPagemapConfig config;
    const char* words;
  };
  std::vector<Case> cases;
  cases.push_back({private_config(nullptr, 4 * kMiB), "Missing migrate_to_ram method"});
  cases.push_back({private_config(&no_migrate, 4 * kMiB), "Missing migrate_to_ram method"});
  cases.push_back({private_config(&no_free, 4 * kMiB), "Missing folio_free method"});
  cases.push_back({private_config(&good, 4 * kMiB), "Missing owner"});
  cases.back().config.owner = nullptr;
  cases.push_back({private_config(&good, 4 * kMiB), "requested folio size unsupported"});
  cases.back().config.vmemmap_shift = 19;
  cases.push_back({private_config(&good, 0), ""});
  for (Case& k : cases) {
    DevPagemap pgmap(k.config);
    const Status st = rig->dm->register_pagemap(pgmap);
    ASSERT_TRUE(st.is_error()) << k.words;
    EXPECT_EQ(st.error().code(), Errno::kEINVAL) << st.error().to_string();
    EXPECT_NE(st.error().message().find(k.words), std::string::npos) << st.error().message();
  }
  DevPagemapConfig shift = private_config(&good, 4 * kMiB);
  shift.vmemmap_shift = 9;
  DevPagemap compound(shift);
  EXPECT_EQ(rig->dm->register_pagemap(compound).error().code(), Errno::kEOPNOTSUPP);
  DevPagemap wrong_nid(private_config(&good, 4 * kMiB));
  EXPECT_EQ(rig->dm->register_pagemap(wrong_nid, 3).error().code(), Errno::kEINVAL);
  EXPECT_EQ(snapshot(*rig), before);
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, BadPagemap, ::testing::ValuesIn(kAllDesigns),
                         design_test_name);

TEST(DpasRefusals, MemremapPagesOfPrivateIsEinval) {
  for (Design d : {Design::kDpas, Design::kDpasZone}) {
    auto rig = make_rig("workstation-46bit", d);
    FakeOps ops;
    DevPagemapConfig c = private_config(&ops, 128 * kMiB);
    c.range = phys::PhysRange{PhysAddr(kTiB), PhysAddr(kTiB + 128 * kMiB - 1)};
    DevPagemap pgmap(c);
    const Snapshot before = snapshot(*rig);
    const Status st = rig->dm->memremap_pages(pgmap);
    ASSERT_TRUE(st.is_error());
    EXPECT_EQ(st.error().code(), Errno::kEINVAL);
    EXPECT_NE(st.error().message().find("Use memremap_device_private_pagemap()"),
              std::string::npos);
    EXPECT_EQ(snapshot(*rig), before);
  }
  auto legacy = make_rig("workstation-46bit", Design::kLegacy);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  EXPECT_EQ(legacy->dm->memremap_device_private_pagemap(pgmap).error().code(),
            Errno::kEOPNOTSUPP);
}

TEST(DpasRefusals, PageArrayAboveKvmallocLimitIsEnomem) {
  auto rig = make_rig("workstation-46bit", Design::kDpas);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 128 * kGiB));  // 2^31 bytes of struct pages > INT_MAX
  const Snapshot before = snapshot(*rig);
  const Status st = rig->dm->register_pagemap(pgmap);
  ASSERT_TRUE(st.is_error());
  EXPECT_EQ(st.error().code(), Errno::kENOMEM);
  EXPECT_NE(st.error().message().find("INT_MAX"), std::string::npos);
  EXPECT_EQ(snapshot(*rig), before);
}

TEST(DpasZone, NeedsTheZone) {
  phys::Machine m = MUST(phys::builtin_machine("workstation-46bit"), "built in");
  auto node = MUST(page::node_from_machine(m, page::NodeOptions{}), "node");
  const auto dm = DeviceMemory::create(m, *node, Design::kDpasZone);
  ASSERT_TRUE(dm.is_error());
  EXPECT_EQ(dm.error().code(), Errno::kEINVAL);
}

// ---- many pagemaps ----

TEST(ManyPagemaps, ThousandSmallDpasPagemapsResolve) {
  auto rig = make_rig("workstation-46bit", Design::kDpasZone);
  FakeOps ops;
  constexpr size_t kCount = 1000;
  std::vector<std::unique_ptr<DevPagemap>> maps;
  for (size_t i = 0; i < kCount; ++i) {
    maps.push_back(std::make_unique<DevPagemap>(private_config(&ops, 64 * 1024)));
    ASSERT_TRUE(rig->dm->register_pagemap(*maps.back()).is_ok());
    // Lowest fit from 0: back to back, 16 pages each.
    EXPECT_EQ(maps.back()->range().start, i * 64 * 1024);
  }
  EXPECT_EQ(rig->dm->nr_pagemaps(), kCount);
  EXPECT_EQ(rig->node->zone(page::ZoneType::kDevicePrivate).stats().present.raw(), kCount * 16);
  for (size_t i = 0; i < kCount; i += 37) {
    for (uint64_t n : {uint64_t{0}, uint64_t{15}}) {
      page::Page* p = *rig->dm->device_private_offset_to_page(DevPrivOffset(i * 16 + n));
      EXPECT_EQ(page_pgmap(p), maps[i].get());
      EXPECT_EQ(rig->dm->device_private_page_to_offset(p), DevPrivOffset(i * 16 + n));
    }
  }
  EXPECT_EQ(rig->dm->device_private_offset_to_page(DevPrivOffset(kCount * 16)).error().code(),
            Errno::kENOENT);
  // Free one in the middle; a new one takes its hole.
  rig->dm->unregister_pagemap(*maps[500]);
  DevPagemap refill(private_config(&ops, 64 * 1024));
  ASSERT_TRUE(rig->dm->register_pagemap(refill).is_ok());
  EXPECT_EQ(refill.range().start, 500u * 64 * 1024);
  rig->dm->unregister_pagemap(refill);
  for (size_t i = 0; i < kCount; ++i) {
    if (i != 500) rig->dm->unregister_pagemap(*maps[i]);
  }
  EXPECT_EQ(rig->dm->nr_pagemaps(), 0u);
  EXPECT_EQ(rig->node->zone(page::ZoneType::kDevicePrivate).stats().present.raw(), 0u);
}

TEST(ManyPagemaps, LegacyPagemapsEachTakeASection) {
  auto rig = make_rig("workstation-46bit", Design::kLegacy);
  FakeOps ops;
  const Snapshot before = snapshot(*rig);
  std::vector<std::unique_ptr<DevPagemap>> maps;
  for (size_t i = 0; i < 8; ++i) {
    maps.push_back(std::make_unique<DevPagemap>(private_config(&ops, 64 * 1024)));
    ASSERT_TRUE(rig->dm->register_pagemap(*maps.back()).is_ok());
    // request_free_mem_region rounds each up to a 128 MiB section, top down from 11 TiB.
    EXPECT_EQ(maps.back()->range().start, 11 * kTiB - (i + 1) * 128 * kMiB);
    EXPECT_EQ(maps.back()->nr_pages().raw(), 32768u);
  }
  for (auto& m : maps) rig->dm->unregister_pagemap(*m);
  EXPECT_EQ(snapshot(*rig), before);
}

// ---- entries ----

TEST(Entries, DevicePrivateEntryToPageInEveryDesign) {
  for (Design d : kAllDesigns) {
    auto rig = make_rig("workstation-46bit", d);
    FakeOps ops;
    DevPagemap pgmap(private_config(&ops, 4 * kMiB));
    ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
    const arch::SoftleafFormat f =
        arch::SoftleafFormat::for_arch(swap_numbering_kind(d), rig->machine.params());
    page::Page* p = *rig->dm->pfn_or_offset_to_page(pgmap.range().index(7));
    const arch::Softleaf e = MUST(
        arch::make_writable_device_private_entry(f, rig->dm->page_to_pfn_or_offset(p)), "fits");
    EXPECT_EQ(*rig->dm->device_private_entry_to_page(e), p) << design_name(d);
    if (uses_device_private_space(d)) {
      const arch::Softleaf mig = MUST(arch::make_readable_migration_device_private_entry(
                                          f, rig->dm->device_private_page_to_offset(p)),
                                      "fits");
      EXPECT_EQ(*rig->dm->device_private_entry_to_page(mig), p);
    }
    const arch::Softleaf swap = MUST(arch::make_swap_entry(f, 1, 42), "a swap slot");
    EXPECT_EQ(rig->dm->device_private_entry_to_page(swap).error().code(), Errno::kEINVAL);
    rig->dm->unregister_pagemap(pgmap);
  }
}

TEST(Entries, DpasOffsetsAreNotPfns) {
  auto rig = make_rig("workstation-46bit", Design::kDpas);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  // Offset 0x10 numerically equals a RAM PFN; the PFN lookup finds the RAM page, never the
  // device page, and get_dev_pagemap never finds a dpas pagemap.
  page::Page* dev = *rig->dm->device_private_offset_to_page(DevPrivOffset(0x10));
  const auto ram = rig->dm->pfn_to_page(Pfn(0x10));
  ASSERT_TRUE(ram.is_ok());
  EXPECT_NE(*ram, dev);
  EXPECT_FALSE((*ram)->is_zone_device());
  EXPECT_EQ(rig->dm->get_dev_pagemap(Pfn(0x10)), nullptr);
  EXPECT_EQ(rig->dm->page_to_pfn_or_offset(*ram), arch::PfnOrOffset::of_pfn(Pfn(0x10)));
  rig->dm->unregister_pagemap(pgmap);
}

#ifndef NDEBUG
TEST(EntriesDeathTest, FolioPfnOfADpasDevicePrivatePageAsserts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto rig = make_rig("workstation-46bit", Design::kDpas);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  page::Page* p = *rig->dm->device_private_offset_to_page(DevPrivOffset(3));
  EXPECT_DEATH((void)rig->dm->folio_pfn(page::Folio(p)), "has an offset, not a PFN");
  auto legacy = make_rig("workstation-46bit", Design::kLegacy);
  EXPECT_DEATH((void)legacy->dm->device_private_page_to_offset(*legacy->dm->pfn_to_page(Pfn(0x10))),
               "without a device-private offset");
  rig->dm->unregister_pagemap(pgmap);
}
#endif

// ---- teardown waits for the last page ----

class Teardown : public ::testing::TestWithParam<Design> {};

TEST_P(Teardown, UnregisterWaitsForOutstandingPages) {
  auto rig = make_rig("workstation-46bit", GetParam());
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  const Snapshot before = snapshot(*rig);
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  page::Page* p = *rig->dm->pfn_or_offset_to_page(pgmap.range().index(2));
  page::Folio f = MUST(zone_device_page_init(p, pgmap, Order(0)), "free");
  page::folio_unlock(f);
  Thread device("device-evict", [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    page::folio_put(f);
  });
  // Returns only once the device thread has dropped the last page reference.
  rig->dm->unregister_pagemap(pgmap);
  EXPECT_EQ(ops.frees.load(), 1);
  EXPECT_FALSE(pgmap.is_registered());
  device.join();
  EXPECT_EQ(snapshot(*rig), before);
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, Teardown, ::testing::ValuesIn(kAllDesigns),
                         design_test_name);

// ---- concurrent registration ----

TEST(Concurrency, ParallelRegistrationsGetDisjointRanges) {
  auto rig = make_rig("workstation-46bit", Design::kDpas);
  FakeOps ops;
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::unique_ptr<DevPagemap>> maps;
  for (int i = 0; i < kThreads * kEach; ++i) {
    maps.push_back(std::make_unique<DevPagemap>(private_config(&ops, 8 * 4096)));
  }
  {
    std::vector<Thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back("reg", [&, t] {
        for (int i = 0; i < kEach; ++i) {
          MUST(rig->dm->register_pagemap(*maps[t * kEach + i]), "space is plentiful");
        }
      });
    }
  }
  const auto ranges = rig->dm->device_private_space().ranges();
  ASSERT_EQ(ranges.size(), static_cast<size_t>(kThreads * kEach));
  for (size_t i = 0; i < ranges.size(); ++i) EXPECT_EQ(ranges[i].start, i * 8 * 4096);
  for (auto& m : maps) {
    page::Page* p = *rig->dm->device_private_offset_to_page(*m->range().index(5).to_offset());
    EXPECT_EQ(page_pgmap(p), m.get());
    rig->dm->unregister_pagemap(*m);
  }
}

// Lock-free lookups racing registration: readers resolve offsets without a break while two
// writers keep registering and unregistering other pagemaps in the holes between them.
// Every lookup of a stable pagemap must find exactly its page; every lookup elsewhere must
// find nothing or a whole range of a churning pagemap (never a stale or mixed answer).
TEST(Concurrency, LookupsRaceRegistrations) {
  auto rig = make_rig("workstation-46bit", Design::kDpas);
  DeviceMemory& dm = *rig->dm;
  FakeOps ops;
  constexpr uint64_t kPages = 16;
  constexpr size_t kStable = 8;
  // Stable pagemaps at every other 16-page slot: [0,16) [32,48) ...; the slots between, and
  // everything above, are left to the churners.
  std::vector<std::unique_ptr<DevPagemap>> stable, spacers;
  for (size_t i = 0; i < kStable; ++i) {
    stable.push_back(std::make_unique<DevPagemap>(private_config(&ops, kPages * 4096)));
    spacers.push_back(std::make_unique<DevPagemap>(private_config(&ops, kPages * 4096)));
    ASSERT_TRUE(dm.register_pagemap(*stable.back()).is_ok());
    ASSERT_TRUE(dm.register_pagemap(*spacers.back()).is_ok());
    ASSERT_EQ(stable.back()->range().start, 2 * i * kPages * 4096);
  }
  for (auto& m : spacers) dm.unregister_pagemap(*m);
  const uint64_t span = 2 * kStable * kPages;  // offsets [0, span) plus 16 beyond
  // Churners: 16 pages (fills a hole), 4 and 8 pages (several per hole, or above the stable
  // ones). Their sizes are fixed before the threads start; readers only read those.
  constexpr int kWriters = 2, kCycles = 150;
  std::vector<std::unique_ptr<DevPagemap>> churn;
  for (int w = 0; w < kWriters; ++w) {
    for (uint64_t pages : {uint64_t{16}, uint64_t{4}, uint64_t{8}}) {
      churn.push_back(std::make_unique<DevPagemap>(private_config(&ops, pages * 4096)));
    }
  }
  auto churn_pages = [&](const DevPagemap* p) -> uint64_t {
    for (const auto& c : churn) {
      if (c.get() == p) return c->config().nr_pages.raw();
    }
    return 0;
  };

  std::atomic<int> writers_left{kWriters};
  std::atomic<uint64_t> stable_hits{0}, churn_hits{0}, misses{0}, failures{0};
  std::atomic<uint64_t> churn_seen{0};  // bumped by readers as they see a churning range
  {
    std::vector<Thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back("reader", [&, r] {
        uint64_t x = 0x9e3779b97f4a7c15ull * (r + 1);
        uint64_t st = 0, ch = 0, mi = 0, bad = 0;
        while (writers_left.load(std::memory_order_acquire) > 0) {
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          // Half the lookups in the first hole, where the churners land first (lowest fit).
          const uint64_t off = (x & 1) != 0 ? kPages + (x >> 1) % kPages : (x >> 1) % (span + 16);
          const uint64_t slot = off / kPages;
          if (slot % 2 == 0 && slot / 2 < kStable) {
            const DevPagemap& want = *stable[slot / 2];
            const Result<page::Page*> p = dm.device_private_offset_to_page(DevPrivOffset(off));
            const bool right = p.is_ok() && *p == want.pages() + off % kPages &&
                               page_pgmap(*p) == &want;
            bad += right ? 0 : 1;
            ++st;
            continue;
          }
          // Outside the stable pagemaps: nothing, or a whole churning range holding `off`.
          const uint64_t addr = off * 4096;
          const std::optional<DevicePrivateRange> got = dm.device_private_space().load(addr);
          if (!got.has_value()) {
            ++mi;
            continue;
          }
          const uint64_t pages = churn_pages(got->pgmap);
          const bool whole = pages != 0 && got->size() == pages * 4096 &&
                             got->start <= addr && addr <= got->last;
          bad += whole ? 0 : 1;
          ++ch;
          churn_seen.fetch_add(1, std::memory_order_relaxed);
        }
        stable_hits += st;
        churn_hits += ch;
        misses += mi;
        failures += bad;
      });
    }
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back("writer", [&, w] {
        for (int c = 0; c < kCycles; ++c) {
          DevPagemap& m = *churn[static_cast<size_t>(w * 3 + c % 3)];
          if (dm.register_pagemap(m).is_error()) {
            failures.fetch_add(1);
            continue;
          }
          // Its own pages resolve while it holds the registration (and meanwhile the
          // readers get a chance to see it).
          const uint64_t seen = churn_seen.load(std::memory_order_relaxed);
          for (uint64_t k = 0; k < 4096 && churn_seen.load(std::memory_order_relaxed) == seen;
               ++k) {
            if (k % 64 == 63) std::this_thread::yield();
            const uint64_t n = k % m.nr_pages().raw();
            const Result<page::Page*> p =
                dm.device_private_offset_to_page(*m.range().index(n).to_offset());
            if (!p.is_ok() || *p != m.pages() + n) failures.fetch_add(1);
          }
          dm.unregister_pagemap(m);
        }
        writers_left.fetch_sub(1, std::memory_order_acq_rel);
      });
    }
  }
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(stable_hits.load(), 0u);
  // After the race: only the stable pagemaps remain, and the holes and churn ranges miss.
  EXPECT_EQ(dm.nr_pagemaps(), kStable);
  for (uint64_t off = 0; off < span + 16; ++off) {
    const uint64_t slot = off / kPages;
    const Result<page::Page*> p = dm.device_private_offset_to_page(DevPrivOffset(off));
    if (slot % 2 == 0 && slot / 2 < kStable) {
      ASSERT_TRUE(p.is_ok()) << off;
      EXPECT_EQ(*p, stable[slot / 2]->pages() + off % kPages);
    } else {
      ASSERT_TRUE(p.is_error()) << off;
      EXPECT_EQ(p.error().code(), Errno::kENOENT);
    }
  }
  ::testing::Test::RecordProperty("stable_hits", std::to_string(stable_hits.load()));
  ::testing::Test::RecordProperty("churn_hits", std::to_string(churn_hits.load()));
  ::testing::Test::RecordProperty("misses", std::to_string(misses.load()));
  for (auto& m : stable) dm.unregister_pagemap(*m);
}

}  // namespace
}  // namespace dpmm::devmem
