#include "base/size.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace dpmm {
namespace {

TEST(Size, Parses) {
  EXPECT_EQ(parse_size("8GiB").value(), 8ull << 30);
  EXPECT_EQ(parse_size("80G").value(), 80ull << 30);
  EXPECT_EQ(parse_size("512MiB").value(), 512ull << 20);
  EXPECT_EQ(parse_size("512 mb").value(), 512ull << 20);
  EXPECT_EQ(parse_size("4k").value(), 4096u);
  EXPECT_EQ(parse_size("0x200000000").value(), 0x200000000ull);
  EXPECT_EQ(parse_size("4096").value(), 4096u);
  EXPECT_EQ(parse_size("1T").value(), 1ull << 40);
  EXPECT_EQ(parse_size(" 2M ").value(), 2u << 20);
}

TEST(Size, RefusesBadInput) {
  for (const char* bad : {"", "G", "8X", "8GiBs", "1.5G", "0xzz", "-1", "0x10G",
                          "99999999999999999999", "16E"}) {
    auto r = parse_size(bad);
    ASSERT_TRUE(r.is_error()) << bad;
    EXPECT_EQ(r.error().code(), Errno::kEINVAL) << bad;
    EXPECT_FALSE(r.error().message().empty());
  }
  EXPECT_NE(parse_size("8X").error().message().find("unknown unit 'X'"), std::string::npos);
}

TEST(Size, Formats) {
  EXPECT_EQ(format_size(80ull << 30), "80 GiB");
  EXPECT_EQ(format_size(128ull << 20), "128 MiB");
  EXPECT_EQ(format_size(4097), "4.0 KiB");
  EXPECT_EQ(format_size(100), "100 B");
  EXPECT_EQ(format_size(3ull << 29), "1.5 GiB");
}

RC_GTEST_PROP(Size, FormatOfExactUnitsParsesBack, (uint16_t n, uint8_t unit)) {
  const unsigned shift = 10 * (unit % 5);
  const uint64_t bytes = uint64_t{n} << shift;
  const std::string text = format_size(bytes);
  if (text.find('.') != std::string::npos) return;  // rounded forms are for humans only
  std::string compact;
  for (char c : text)
    if (c != ' ') compact += c;
  RC_ASSERT(parse_size(compact).value() == bytes);
}

}  // namespace
}  // namespace dpmm
