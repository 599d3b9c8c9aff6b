#include "base/result.h"

#include <gtest/gtest.h>

#include <memory>

namespace dpmm {
namespace {

Result<int> half(int x) {
  if (x % 2 != 0) return make_error(Errno::kEINVAL, "{} is odd", x);
  return x / 2;
}

Result<int> quarter(int x) {
  const int h = TRY(half(x));
  return TRY(half(h));
}

Status check_positive(int x) {
  if (x <= 0) return make_error(Errno::kERANGE, "{} is not positive", x);
  return ok();
}

Status check_both(int a, int b) {
  TRY(check_positive(a));
  TRY(check_positive(b));
  return ok();
}

TEST(Result, ValueAndError) {
  auto r = half(8);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, 4);
  auto e = half(3);
  ASSERT_TRUE(e.is_error());
  EXPECT_EQ(e.error().code(), Errno::kEINVAL);
  EXPECT_EQ(e.error().message(), "3 is odd");
  EXPECT_EQ(e.error().to_string(), "EINVAL (-22): 3 is odd");
}

TEST(Result, TryPropagates) {
  EXPECT_EQ(quarter(8).value(), 2);
  auto e = quarter(6);  // 6 -> 3 -> odd
  ASSERT_TRUE(e.is_error());
  EXPECT_EQ(e.error().message(), "3 is odd");
  EXPECT_TRUE(check_both(1, 2).is_ok());
  EXPECT_EQ(check_both(1, -2).error().code(), Errno::kERANGE);
}

TEST(Result, MoveOnlyValue) {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(7));
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(Result, ErrnoNumbersAreLinux) {
  EXPECT_EQ(errno_neg(Errno::kERANGE), -34);
  EXPECT_EQ(errno_neg(Errno::kENOMEM), -12);
  EXPECT_EQ(errno_neg(Errno::kEBUSY), -16);
  EXPECT_EQ(errno_neg(Errno::kENOSPC), -28);
  EXPECT_EQ(errno_neg(Errno::kEINVAL), -22);
  EXPECT_EQ(errno_neg(Errno::kEFAULT), -14);
  EXPECT_EQ(errno_neg(Errno::kENXIO), -6);
  EXPECT_EQ(errno_name(Errno::kERANGE), "ERANGE");
}

TEST(ResultDeathTest, ValueOnErrorAborts) {
  EXPECT_DEATH((void)half(3).value(), "3 is odd");
  EXPECT_DEATH((void)MUST(half(3), "test"), "MUST failed \\(test\\)");
}

}  // namespace
}  // namespace dpmm
