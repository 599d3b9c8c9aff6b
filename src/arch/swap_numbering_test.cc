#include "arch/swap_numbering.h"

#include <gtest/gtest.h>

#include <set>

namespace dpmm::arch {
namespace {

// Today's kernel: MAX_SWAPFILES = 32 - 3 (device) - 3 (migration) - 1 (hwpoison) - 1 (marker).
static_assert(kLegacyNumbering.max_swapfiles == 24);
static_assert(kLegacyNumbering.hwpoison == 24);
static_assert(kLegacyNumbering.migration_read == 25);
static_assert(kLegacyNumbering.migration_read_exclusive == 26);
static_assert(kLegacyNumbering.migration_write == 27);
static_assert(kLegacyNumbering.device_write == 28);
static_assert(kLegacyNumbering.device_read == 29);
static_assert(kLegacyNumbering.device_exclusive == 30);
static_assert(kLegacyNumbering.pte_marker == 31);
static_assert(!kLegacyNumbering.migration_device_read.has_value());

// The series: SWP_DEVICE_NUM 6, so MAX_SWAPFILES = 32 - 6 - 3 - 1 - 1 = 21; the device base is
// 21 + 1 + 3 = 25 and the migration-device types are base + 3, 4, 5.
static_assert(kDpasNumbering.max_swapfiles == 21);
static_assert(kDpasNumbering.hwpoison == 21);
static_assert(kDpasNumbering.migration_read == 22);
static_assert(kDpasNumbering.migration_read_exclusive == 23);
static_assert(kDpasNumbering.migration_write == 24);
static_assert(kDpasNumbering.device_write == 25);
static_assert(kDpasNumbering.device_read == 26);
static_assert(kDpasNumbering.device_exclusive == 27);
static_assert(*kDpasNumbering.migration_device_read == 28);
static_assert(*kDpasNumbering.migration_device_read_exclusive == 29);
static_assert(*kDpasNumbering.migration_device_write == 30);
static_assert(kDpasNumbering.pte_marker == 31);

TEST(SwapNumbering, CountsAndValues) {
  EXPECT_EQ(kLegacyNumbering.device_num, 3u);
  EXPECT_EQ(kDpasNumbering.device_num, 6u);
  EXPECT_EQ(swap_numbering(SwapNumberingKind::kDpas).max_swapfiles, 21u);
  EXPECT_EQ(swap_numbering(SwapNumberingKind::kLegacy).max_swapfiles, 24u);
}

TEST(SwapNumbering, KernelNames) {
  EXPECT_EQ(type_name(kLegacyNumbering, 28), "SWP_DEVICE_WRITE");
  EXPECT_EQ(type_name(kLegacyNumbering, 29), "SWP_DEVICE_READ");
  EXPECT_EQ(type_name(kLegacyNumbering, 30), "SWP_DEVICE_EXCLUSIVE");
  EXPECT_EQ(type_name(kLegacyNumbering, 24), "SWP_HWPOISON");
  EXPECT_EQ(type_name(kLegacyNumbering, 31), "SWP_PTE_MARKER");
  EXPECT_EQ(type_name(kLegacyNumbering, 23), "swapfile:23");
  EXPECT_EQ(type_name(kDpasNumbering, 25), "SWP_DEVICE_WRITE");
  EXPECT_EQ(type_name(kDpasNumbering, 28), "SWP_MIGRATION_DEVICE_READ");
  EXPECT_EQ(type_name(kDpasNumbering, 29), "SWP_MIGRATION_DEVICE_READ_EXCLUSIVE");
  EXPECT_EQ(type_name(kDpasNumbering, 30), "SWP_MIGRATION_DEVICE_WRITE");
  EXPECT_EQ(type_name(kDpasNumbering, 21), "SWP_HWPOISON");
  EXPECT_EQ(type_name(kDpasNumbering, 24), "SWP_MIGRATION_WRITE");
}

TEST(SwapNumbering, EveryValueNamedOnceAndParsesBack) {
  for (const SwapNumbering* n : {&kLegacyNumbering, &kDpasNumbering}) {
    std::set<std::string> names;
    for (unsigned t = 0; t < kSwapTypeCount; ++t) {
      const std::string name = type_name(*n, t);
      EXPECT_EQ(name.find("SWP_TYPE_"), std::string::npos) << name;
      EXPECT_TRUE(names.insert(name).second) << "duplicate " << name;
      auto parsed = parse_type_name(*n, name);
      ASSERT_TRUE(parsed.is_ok()) << parsed.error().to_string();
      EXPECT_EQ(*parsed, t);
    }
  }
}

TEST(SwapNumbering, ParseRefusals) {
  auto legacy_mig_dev = parse_type_name(kLegacyNumbering, "SWP_MIGRATION_DEVICE_READ");
  ASSERT_TRUE(legacy_mig_dev.is_error());
  EXPECT_EQ(legacy_mig_dev.error().code(), Errno::kEINVAL);
  EXPECT_NE(legacy_mig_dev.error().message().find("only in the dpas numbering"), std::string::npos);

  EXPECT_EQ(parse_type_name(kLegacyNumbering, "SWP_BOGUS").error().code(), Errno::kEINVAL);
  EXPECT_EQ(parse_type_name(kLegacyNumbering, "").error().code(), Errno::kEINVAL);
  EXPECT_EQ(parse_type_name(kLegacyNumbering, "32").error().code(), Errno::kEINVAL);
  EXPECT_EQ(parse_type_name(kLegacyNumbering, "3x").error().code(), Errno::kEINVAL);
  EXPECT_EQ(parse_type_name(kDpasNumbering, "swapfile:21").error().code(), Errno::kEINVAL);
  EXPECT_EQ(parse_type_name(kLegacyNumbering, "swapfile:23").value(), 23u);
  EXPECT_EQ(parse_type_name(kDpasNumbering, "7").value(), 7u);
  EXPECT_EQ(parse_type_name(kDpasNumbering, "31").value(), 31u);
}

TEST(SwapNumbering, DesignNames) {
  EXPECT_EQ(parse_numbering("legacy").value(), SwapNumberingKind::kLegacy);
  EXPECT_EQ(parse_numbering("dpas").value(), SwapNumberingKind::kDpas);
  EXPECT_EQ(parse_numbering("dpas-zone").value(), SwapNumberingKind::kDpas);
  EXPECT_EQ(parse_numbering("zone").error().code(), Errno::kEINVAL);
  EXPECT_EQ(numbering_name(SwapNumberingKind::kDpas), "dpas");
}

}  // namespace
}  // namespace dpmm::arch
