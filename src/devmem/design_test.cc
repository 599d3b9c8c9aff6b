#include "devmem/design.h"

#include <gtest/gtest.h>

namespace dpmm::devmem {
namespace {

TEST(Design, NamesRoundTrip) {
  EXPECT_EQ(design_name(Design::kLegacy), "legacy");
  EXPECT_EQ(design_name(Design::kDpas), "dpas");
  EXPECT_EQ(design_name(Design::kDpasZone), "dpas-zone");
  for (Design d : kAllDesigns) EXPECT_EQ(*parse_design(design_name(d)), d);
  const auto bad = parse_design("dpas_zone");
  ASSERT_TRUE(bad.is_error());
  EXPECT_EQ(bad.error().code(), Errno::kEINVAL);
  EXPECT_NE(bad.error().message().find("'dpas_zone'"), std::string::npos);
}

TEST(Design, SwapNumberingAndZones) {
  EXPECT_EQ(swap_numbering_kind(Design::kLegacy), arch::SwapNumberingKind::kLegacy);
  EXPECT_EQ(swap_numbering_kind(Design::kDpas), arch::SwapNumberingKind::kDpas);
  EXPECT_EQ(swap_numbering_kind(Design::kDpasZone), arch::SwapNumberingKind::kDpas);
  EXPECT_EQ(arch::swap_numbering(swap_numbering_kind(Design::kDpas)).device_num, 6u);
  EXPECT_EQ(arch::swap_numbering(swap_numbering_kind(Design::kLegacy)).device_num, 3u);
  EXPECT_EQ(device_private_zone(Design::kDpasZone), page::DevicePrivateZone::kPresent);
  EXPECT_EQ(device_private_zone(Design::kDpas), page::DevicePrivateZone::kAbsent);
  EXPECT_EQ(device_private_zone(Design::kLegacy), page::DevicePrivateZone::kAbsent);
  EXPECT_EQ(device_private_zone_type(Design::kDpasZone), page::ZoneType::kDevicePrivate);
  EXPECT_EQ(device_private_zone_type(Design::kDpas), page::ZoneType::kDevice);
  EXPECT_FALSE(uses_device_private_space(Design::kLegacy));
  EXPECT_TRUE(uses_device_private_space(Design::kDpasZone));
}

}  // namespace
}  // namespace dpmm::devmem
