#include "page/page.h"

#include <gtest/gtest.h>

#include <memory>

#include "page/folio.h"

namespace dpmm::page {
namespace {

TEST(PageTest, FlagBitsAreTheKernels) {
  EXPECT_EQ(static_cast<unsigned>(PageFlag::kLocked), 0u);
  EXPECT_EQ(static_cast<unsigned>(PageFlag::kWriteback), 1u);
  EXPECT_EQ(static_cast<unsigned>(PageFlag::kLru), 5u);
  EXPECT_EQ(static_cast<unsigned>(PageFlag::kHead), 6u);
  EXPECT_EQ(static_cast<unsigned>(PageFlag::kWaiters), 7u);
  EXPECT_EQ(static_cast<unsigned>(PageFlag::kReserved), 13u);
  EXPECT_EQ(static_cast<unsigned>(PageFlag::kSwapBacked), 17u);
  EXPECT_EQ(PageFlag::kAnonExclusive, PageFlag::kOwner2);
  EXPECT_EQ(PageFlag::kAnonExclusive, PageFlag::kMappedToDisk);
  EXPECT_EQ(PageFlag::kSwapCache, PageFlag::kOwnerPriv1);
  EXPECT_EQ(PageFlag::kLargeRmappable, PageFlag::kWorkingset);
  EXPECT_EQ(kZonesPgShift, 30u);
  EXPECT_EQ(kNodesPgShift, 33u);
  EXPECT_EQ(kSectionsPgShift, 39u);
}

TEST(PageTest, FreshDescriptor) {
  Page p;
  EXPECT_EQ(p.flags_word(), 0u);
  EXPECT_EQ(p.ref_count(), 0);
  EXPECT_EQ(p.mapcount_raw(), -1);
  EXPECT_EQ(p.mapcount(), 0);
  EXPECT_FALSE(p.is_tail());
  EXPECT_FALSE(p.is_head());
  EXPECT_FALSE(p.is_buddy());
  EXPECT_EQ(p.compound_head(), &p);
  EXPECT_EQ(p.releaser(), nullptr);
}

TEST(PageTest, LinksPackIntoTheTopOfFlags) {
  Page p;
  p.set_flag(PageFlag::kDirty);
  p.set_links(PageLinks{.zone = ZoneType::kDevicePrivate, .nid = 37, .section = 0x1abcdef});
  EXPECT_EQ(p.zone_id(), ZoneType::kDevicePrivate);
  EXPECT_EQ(p.node_id(), 37u);
  EXPECT_EQ(p.section_nr(), 0x1abcdefu);
  EXPECT_TRUE(p.test_flag(PageFlag::kDirty));
  EXPECT_EQ(p.flags_word(), (uint64_t{0x1abcdef} << 39) | (uint64_t{37} << 33) |
                                (uint64_t{4} << 30) | (uint64_t{1} << 4));
  p.clear_page_flags();
  EXPECT_FALSE(p.test_flag(PageFlag::kDirty));
  EXPECT_EQ(p.zone_id(), ZoneType::kDevicePrivate);
  EXPECT_EQ(p.node_id(), 37u);
}

TEST(PageTest, TestAndSetReturnOldBit) {
  Page p;
  EXPECT_FALSE(p.test_and_set_flag(PageFlag::kWriteback));
  EXPECT_TRUE(p.test_and_set_flag(PageFlag::kWriteback));
  EXPECT_TRUE(p.test_and_clear_flag(PageFlag::kWriteback));
  EXPECT_FALSE(p.test_and_clear_flag(PageFlag::kWriteback));
}

TEST(PageTest, BuddyTypeSharesMapcount) {
  Page p;
  p.set_type(PageType::kBuddy);
  EXPECT_TRUE(p.is_buddy());
  EXPECT_EQ(p.page_type(), 0xf0000000u);
  EXPECT_EQ(p.mapcount(), 0) << "a typed page is not mapped";
  p.clear_type(PageType::kBuddy);
  EXPECT_FALSE(p.is_buddy());
  EXPECT_EQ(p.mapcount_raw(), -1);
  EXPECT_EQ(p.mapcount_add_return(1), 0);
  EXPECT_EQ(p.mapcount(), 1);
  EXPECT_FALSE(p.is_buddy());
}

TEST(PageTest, DeviceFieldsShareTheLruWords) {
  Page p;
  int data = 0;
  auto* pgmap = reinterpret_cast<devmem::DevPagemap*>(uintptr_t{0x1000});
  p.set_pgmap(pgmap);
  p.set_zone_device_data(&data);
  EXPECT_EQ(p.pgmap(), pgmap);
  EXPECT_EQ(p.zone_device_data(), &data);
  EXPECT_FALSE(p.is_tail()) << "a pgmap pointer is aligned, so never reads as a tail";
}

TEST(PageTest, InitSinglePageResetsEverything) {
  auto storage = std::make_unique<Page[]>(1);
  Page* p = &storage[0];
  p->set_flag(PageFlag::kLru);
  p->set_ref_count(5);
  p->set_index(7);
  init_single_page(p, PageLinks{.zone = ZoneType::kNormal, .nid = 1, .section = 3});
  EXPECT_FALSE(p->test_flag(PageFlag::kLru));
  EXPECT_EQ(p->ref_count(), 0);
  EXPECT_EQ(p->mapcount_raw(), -1);
  EXPECT_EQ(p->index(), 0u);
  EXPECT_EQ(p->zone_id(), ZoneType::kNormal);
  EXPECT_EQ(p->section_nr(), 3u);
}

}  // namespace
}  // namespace dpmm::page
