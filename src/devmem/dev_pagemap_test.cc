// The device page life cycle: zone_device_page_init, the free path at refcount 1 -> 0
// (free_zone_device_folio), large folios and the split callback, in every design.
#include "devmem/dev_pagemap.h"

#include <gtest/gtest.h>

#include "devmem/test_rig.h"
#include "page/folio_lock.h"

namespace dpmm::devmem {
namespace {

using testing::FakeOps;
using testing::make_rig;
using testing::private_config;

constexpr uint64_t kMiB = uint64_t{1} << 20;

class DevPagemapLifeCycle : public ::testing::TestWithParam<Design> {};

// The first page of a registered 4 MiB device-private pagemap.
page::Page* first_page(DeviceMemory& dm, DevPagemap& pgmap) {
  return MUST(dm.pfn_or_offset_to_page(pgmap.range().index(0)), "registered");
}

TEST_P(DevPagemapLifeCycle, FreeAtRefcountZeroCallsFolioFreeOnce) {
  auto rig = make_rig("workstation-46bit", GetParam());
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  EXPECT_EQ(pgmap.nr_references(), 0);

  page::Page* p = first_page(*rig->dm, pgmap);
  // Free device pages sit at refcount 0 with the pgmap set (kernel-baseline §2 step 1).
  EXPECT_EQ(p->ref_count(), 0);
  EXPECT_EQ(page_pgmap(p), &pgmap);
  EXPECT_EQ(p->zone_device_data(), nullptr);
  EXPECT_TRUE(p->test_flag(page::PageFlag::kReserved));
  EXPECT_EQ(p->releaser(), &pgmap);

  page::Folio f = MUST(zone_device_page_init(p, pgmap, Order(0)), "free page");
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_TRUE(page::folio_test_locked(f));
  EXPECT_EQ(pgmap.nr_references(), 1);
  // Initialising a page in use is refused.
  EXPECT_EQ(zone_device_page_init(p, pgmap, Order(0)).error().code(), Errno::kEINVAL);

  // Pretend an anon mapping, as after a migration to the device.
  f.set_mapping_word(0x1000 | page::kFolioMappingAnon);
  f.set_flag(page::PageFlag::kAnonExclusive);
  page::folio_get(f);
  page::folio_unlock(f);
  page::folio_put(f);
  EXPECT_EQ(ops.frees.load(), 0);
  page::folio_put(f);  // 1 -> 0
  EXPECT_EQ(ops.frees.load(), 1);
  EXPECT_EQ(ops.last_freed.load(), p);
  EXPECT_EQ(pgmap.nr_folio_frees(), 1u);
  EXPECT_EQ(pgmap.nr_references(), 0);
  EXPECT_EQ(p->ref_count(), 0);  // a free device page stays at 0
  EXPECT_EQ(p->mapping_word(), 0u);
  EXPECT_FALSE(p->test_flag(page::PageFlag::kAnonExclusive));
  EXPECT_EQ(page_pgmap(p), &pgmap);  // pgmap stays

  rig->dm->unregister_pagemap(pgmap);
}

TEST_P(DevPagemapLifeCycle, LargeFolioTakesOneReferencePerPage) {
  auto rig = make_rig("workstation-46bit", GetParam());
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  page::Page* p = first_page(*rig->dm, pgmap);
  // Not naturally aligned: refused.
  EXPECT_EQ(zone_device_page_init(p + 1, pgmap, Order(9)).error().code(), Errno::kEINVAL);

  page::Folio f = MUST(zone_device_folio_init(p, pgmap, Order(9)), "aligned free run");
  EXPECT_EQ(f.nr_pages().raw(), 512u);
  EXPECT_TRUE(f.is_large());
  EXPECT_TRUE(f.page(1)->test_flag(page::PageFlag::kLargeRmappable));
  EXPECT_EQ(pgmap.nr_references(), 512);
  // Every page still finds its pagemap through its head; offsets/PFNs stay per page.
  EXPECT_EQ(page_pgmap(f.page(511)), &pgmap);
  EXPECT_TRUE(is_device_private_page(f.page(300)));
  EXPECT_EQ(rig->dm->page_to_pfn_or_offset(f.page(300)), pgmap.range().index(300));

  page::folio_unlock(f);
  page::folio_put(f);
  EXPECT_EQ(ops.frees.load(), 1);
  EXPECT_EQ(pgmap.nr_references(), 0);

  // A former tail page can be handed out again as an order-0 folio.
  page::Folio small = MUST(zone_device_page_init(p + 7, pgmap, Order(0)), "free tail");
  EXPECT_FALSE(small.head()->is_tail());
  EXPECT_EQ(page_pgmap(small.head()), &pgmap);
  page::folio_unlock(small);
  page::folio_put(small);
  EXPECT_EQ(ops.frees.load(), 2);
  rig->dm->unregister_pagemap(pgmap);
}

TEST_P(DevPagemapLifeCycle, SplitCallbackCopiesPgmapWithoutTheOp) {
  auto rig = make_rig("workstation-46bit", GetParam());
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  page::Page* p = first_page(*rig->dm, pgmap);
  page::Folio f = MUST(zone_device_page_init(p, pgmap, Order(1)), "free pair");
  f.set_mapping_word(0x2000 | page::kFolioMappingAnon);
  // What split does to the tail before calling back: it becomes a folio of its own.
  page::clear_compound_page(f);
  EXPECT_EQ(p[1].pgmap(), nullptr);
  p[1].set_ref_count(1);
  zone_device_private_split_cb(page::Folio(p), page::Folio(p + 1));
  zone_device_private_split_cb(page::Folio(p), std::nullopt);
  EXPECT_EQ(page_pgmap(p + 1), &pgmap);
  EXPECT_EQ(p[1].mapping_word(), 0x2000 | page::kFolioMappingAnon);
  page::folio_unlock(page::Folio(p));
  page::folio_put(page::Folio(p));
  page::folio_put(page::Folio(p + 1));
  EXPECT_EQ(ops.frees.load(), 2);
  // Two pages were allocated as one order-1 folio and freed as two order-0 ones: the
  // references balance.
  EXPECT_EQ(pgmap.nr_references(), 0);
  rig->dm->unregister_pagemap(pgmap);
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, DevPagemapLifeCycle,
                         ::testing::ValuesIn(kAllDesigns), testing::design_test_name);

TEST(DevPagemap, AllocationAfterUnregisterStartsIsRefused) {
  auto rig = make_rig("workstation-46bit", Design::kDpas);
  FakeOps ops;
  DevPagemap pgmap(private_config(&ops, 4 * kMiB));
  ASSERT_TRUE(rig->dm->register_pagemap(pgmap).is_ok());
  page::Page* p = first_page(*rig->dm, pgmap);
  rig->dm->unregister_pagemap(pgmap);
  EXPECT_FALSE(pgmap.is_registered());
  (void)p;  // its array is gone; only the pagemap may be asked
  page::Page dummy;
  EXPECT_EQ(zone_device_page_init(&dummy, pgmap, Order(0)).error().code(), Errno::kENODEV);
}

}  // namespace
}  // namespace dpmm::devmem
