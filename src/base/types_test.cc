#include "base/types.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <type_traits>

namespace dpmm {
namespace {

// The point of the types: no silent conversions between address spaces.
static_assert(!std::is_convertible_v<Pfn, DevPrivOffset>);
static_assert(!std::is_convertible_v<DevPrivOffset, Pfn>);
static_assert(!std::is_constructible_v<Pfn, DevPrivOffset>);
static_assert(!std::is_constructible_v<DevPrivOffset, Pfn>);
static_assert(!std::is_convertible_v<uint64_t, Pfn>);
static_assert(!std::is_convertible_v<uint64_t, PhysAddr>);
static_assert(!std::is_convertible_v<PhysAddr, VirtAddr>);
static_assert(!std::is_convertible_v<VirtAddr, PhysAddr>);
static_assert(!std::is_convertible_v<PageCount, uint64_t>);
static_assert(std::is_trivially_copyable_v<Pfn> && sizeof(Pfn) == 8);
static_assert(std::is_trivially_copyable_v<DevPrivOffset> && sizeof(DevPrivOffset) == 8);

template <typename A, typename B>
concept Addable = requires(A a, B b) { a + b; };
static_assert(Addable<Pfn, PageCount>);
static_assert(!Addable<Pfn, Pfn>);
static_assert(!Addable<Pfn, uint64_t>);
static_assert(!Addable<DevPrivOffset, Pfn>);
static_assert(Addable<PhysAddr, uint64_t>);
static_assert(!Addable<PhysAddr, PhysAddr>);

TEST(Types, PfnArithmetic) {
  const Pfn p(0x1000);
  EXPECT_EQ((p + PageCount(5)).raw(), 0x1005u);
  EXPECT_EQ((p + PageCount(5)) - p, PageCount(5));
  EXPECT_EQ(p.to_phys(), PhysAddr(0x1000000));
  EXPECT_EQ(Pfn::from_phys(PhysAddr(0x1000fff)), p);
}

TEST(Types, DevPrivOffsetArithmetic) {
  const DevPrivOffset o(0);
  EXPECT_EQ((o + PageCount(512)) - o, PageCount(512));
  EXPECT_EQ((o + PageCount(1)).to_bytes(), 4096u);
}

TEST(Types, PageCountAndOrder) {
  EXPECT_EQ(Order(9).pages(), PageCount(512));
  EXPECT_EQ(Order(9).to_bytes(), 2u << 20);
  EXPECT_EQ(PageCount::from_bytes_round_up(4097), PageCount(2));
  EXPECT_EQ(PageCount::from_bytes_round_up(0), PageCount(0));
  EXPECT_EQ(PageCount(3).to_bytes(), 3u * 4096);
}

TEST(Types, Formatting) {
  EXPECT_EQ(fmt::format("{}", PhysAddr(0x1000)), "P0x1000");
  EXPECT_EQ(fmt::format("{}", VirtAddr(0x7f00)), "V0x7f00");
  EXPECT_EQ(fmt::format("{}", Pfn(0x10)), "pfn:0x10");
  EXPECT_EQ(fmt::format("{}", DevPrivOffset(0x10)), "dpoff:0x10");
  EXPECT_EQ(fmt::format("{}", Order(9)), "order-9");
}

TEST(Types, VirtAlign) {
  EXPECT_EQ(VirtAddr(0x201234).align_down(2 << 20), VirtAddr(0x200000));
  EXPECT_EQ(VirtAddr(0x201234).align_up(2 << 20), VirtAddr(0x400000));
  EXPECT_TRUE(VirtAddr(0x400000).is_aligned(2 << 20));
}

RC_GTEST_PROP(Types, PfnPhysRoundTrip, (uint64_t raw)) {
  const Pfn p(raw >> kPageShift);
  RC_ASSERT(Pfn::from_phys(p.to_phys()) == p);
}

RC_GTEST_PROP(Types, PfnDifferenceInvertsAdd, (uint32_t base, uint32_t n)) {
  const Pfn p(base);
  RC_ASSERT((p + PageCount(n)) - p == PageCount(n));
  RC_ASSERT((p + PageCount(n)) - PageCount(n) == p);
}

#ifndef NDEBUG
TEST(TypesDeathTest, UnderflowAsserts) {
  EXPECT_DEATH((void)(Pfn(1) - PageCount(2)), "Pfn underflow");
  EXPECT_DEATH((void)(PageCount(1) - PageCount(2)), "PageCount underflow");
}
#endif

}  // namespace
}  // namespace dpmm
