// get_free_mem_region(): the search against a literal, step-by-step reference, and the
// analysis that explains a failure.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <optional>

#include "phys/resource.h"

namespace dpmm::phys {
namespace {

PhysRange R(uint64_t start, uint64_t end) { return PhysRange{PhysAddr(start), PhysAddr(end)}; }

PhysLimit limit_at(uint64_t end) { return PhysLimit{PhysAddr(end), LimitCause::kPhysBits, "test"}; }

// kernel/resource.c's descending loop, one candidate at a time, no shortcuts.
std::optional<uint64_t> reference_descending(const std::vector<PhysRange>& top, PhysRange base,
                                             uint64_t size, uint64_t align, uint64_t limit) {
  size = (size + align - 1) & ~(align - 1);
  const uint64_t end = std::min(base.end.raw(), limit);
  if (size == 0 || size - 1 > end) return std::nullopt;
  for (uint64_t addr = end - size + 1; addr > align && addr >= base.start.raw(); addr -= align) {
    const PhysRange w = R(addr, addr + size - 1);
    bool hit = false;
    for (const PhysRange& t : top) hit = hit || t.overlaps(w);
    if (!hit) return addr;
  }
  return std::nullopt;
}

std::optional<uint64_t> reference_ascending(const std::vector<PhysRange>& top, PhysRange base,
                                            uint64_t size, uint64_t align, uint64_t limit) {
  size = (size + align - 1) & ~(align - 1);
  const uint64_t end = std::min(base.end.raw(), limit);
  for (uint64_t addr = (base.start.raw() + align - 1) & ~(align - 1);
       addr > addr - align && addr <= end; addr += align) {
    const PhysRange w = R(addr, addr + size - 1);
    bool hit = false;
    for (const PhysRange& t : top) hit = hit || t.overlaps(w);
    if (!hit) return addr;
  }
  return std::nullopt;
}

struct World {
  std::unique_ptr<ResourceTree> tree;
  std::vector<PhysRange> top;
};

// Random disjoint top-level resources in [0, 2^20) (some with children, which never matter).
World random_world() {
  World w;
  w.tree = std::make_unique<ResourceTree>(PhysAddr((1u << 20) - 1));
  const int n = *rc::gen::inRange(0, 20);
  for (int i = 0; i < n; ++i) {
    const uint64_t start = *rc::gen::inRange<uint64_t>(0, 1u << 20);
    const uint64_t len = *rc::gen::inRange<uint64_t>(1, 1u << 17);
    const uint64_t end = std::min<uint64_t>(start + len - 1, (1u << 20) - 1);
    auto id = w.tree->request_resource(w.tree->root(), NewResource{R(start, end), "r"});
    if (id.is_error()) continue;
    w.top.push_back(R(start, end));
    if (*rc::gen::arbitrary<bool>()) {
      (void)w.tree->request_resource(*id, NewResource{R(start, start), "child"});
    }
  }
  return w;
}

RC_GTEST_PROP(GetFreeMemRegionProperty, DescendingMatchesTheKernelsLoop, ()) {
  World w = random_world();
  const uint64_t align = uint64_t{1} << *rc::gen::inRange(8, 15);
  const uint64_t size = *rc::gen::inRange<uint64_t>(1, 1u << 18);
  // Limits off the alignment grid exercise the un-re-aligned first candidate.
  const uint64_t limit = *rc::gen::inRange<uint64_t>(0, (1u << 21));
  const PhysRange base = R(0, (1u << 20) - 1);
  const auto want = reference_descending(w.top, base, size, align, limit);
  RC_CLASSIFY(want.has_value(), "found");
  RC_CLASSIFY(w.top.size() > 4, "crowded");
  auto got = w.tree->get_free_mem_region(w.tree->root(), size, GfrParams{align, limit_at(limit)},
                                         "dev", IoresDesc::kDevicePrivateMemory,
                                         GfrFlags::kDescending | GfrFlags::kRequestRegion);
  if (!want) {
    RC_ASSERT(got.is_error());
    RC_ASSERT(got.error().code() == Errno::kERANGE);
    return;
  }
  RC_ASSERT(got.is_ok());
  const uint64_t asize = (size + align - 1) & ~(align - 1);
  RC_ASSERT(got->range == R(*want, *want + asize - 1));
  RC_ASSERT(got->desc == IoresDesc::kDevicePrivateMemory);
  RC_ASSERT(got->flags == (IoresourceFlags::kMem | IoresourceFlags::kBusy));
  RC_ASSERT(got->depth == 0u);
  for (const PhysRange& t : w.top) RC_ASSERT(!t.overlaps(got->range));
}

RC_GTEST_PROP(GetFreeMemRegionProperty, AscendingMatchesTheKernelsLoop, ()) {
  World w = random_world();
  const uint64_t align = uint64_t{1} << *rc::gen::inRange(8, 15);
  const uint64_t size = *rc::gen::inRange<uint64_t>(1, 1u << 18);
  const uint64_t limit = *rc::gen::inRange<uint64_t>(0, (1u << 21));
  const PhysRange base = R(0, (1u << 20) - 1);
  const auto want = reference_ascending(w.top, base, size, align, limit);
  auto got = w.tree->alloc_free_mem_region(w.tree->root(), size, align, "cxl", limit_at(limit));
  const uint64_t asize = (size + align - 1) & ~(align - 1);
  // The kernel checks only the start against the limit; a window that runs past the root is
  // refused by insert_resource, which the reference above does not model.
  if (want && *want + asize - 1 > base.end.raw()) return;
  if (!want) {
    RC_ASSERT(got.is_error());
    RC_ASSERT(got.error().code() == Errno::kERANGE);
    return;
  }
  RC_ASSERT(got.is_ok());
  RC_ASSERT(got->range == R(*want, *want + asize - 1));
  RC_ASSERT(got->flags == IoresourceFlags::kMem);
  RC_ASSERT(got->desc == IoresDesc::kCxl);
}

// The largest window the analysis reports is exactly the largest request that succeeds.
RC_GTEST_PROP(GetFreeMemRegionProperty, LargestWindowIsTheLargestSuccess, ()) {
  World w = random_world();
  const uint64_t align = uint64_t{1} << *rc::gen::inRange(8, 15);
  const uint64_t limit = *rc::gen::inRange<uint64_t>(0, (1u << 21));
  const GfrParams params{align, limit_at(limit)};
  const FreeRegionAnalysis a = *w.tree->analyze_free_mem_region(w.tree->root(), 0, params);
  const uint64_t biggest = a.largest_window_size();
  if (a.largest_window) {
    RC_ASSERT(a.largest_gap.has_value());
    // Inside some free gap (not necessarily the largest: that one may be badly aligned).
    RC_ASSERT(a.largest_window->size() <= a.largest_gap->size());
    for (const PhysRange& t : w.top) RC_ASSERT(!t.overlaps(*a.largest_window));
    RC_ASSERT(biggest % align == 0);
    auto c = w.tree->clone();
    RC_ASSERT(c->request_free_mem_region(c->root(), biggest, "fits", params).is_ok());
  }
  auto c = w.tree->clone();
  RC_ASSERT(c->request_free_mem_region(c->root(), biggest + align, "too big", params).is_error());
}

TEST(GetFreeMemRegion, StepsDownFromAnUnalignedStart) {
  // Root [0, 0xffff_ffff]; limit 0x1234_5fff is not on the 1 MiB grid, so candidates are
  // 0x1234_6000 - size - k * 1 MiB.
  ResourceTree t(PhysAddr(0xffff'ffff));
  ASSERT_TRUE(t.request_resource(t.root(), NewResource{R(0x1200'0000, 0x1234'5fff), "blocker"})
                  .is_ok());
  const GfrParams p{1u << 20, limit_at(0x1234'5fff)};
  auto r = t.request_free_mem_region(t.root(), 2u << 20, "dev", p);
  ASSERT_TRUE(r.is_ok()) << r.error().to_string();
  // Candidates are 0x1234_6000 - 2 MiB - k MiB, all ≡ 0x4_6000 (mod 1 MiB). The first,
  // 0x1214_6000, overlaps the blocker; the highest whose window ends below 0x1200_0000 is
  // 0x11d4_6000 (its window ends at 0x11f4_5fff; the next one up, 0x11e4_6000, would end at
  // 0x1204_5fff, inside the blocker).
  EXPECT_EQ(r->range, R(0x11d4'6000, 0x11f4'5fff));
  EXPECT_EQ(r->name, "dev");
}

TEST(GetFreeMemRegion, FailureSaysWhyInWords) {
  ResourceTree t(PhysAddr((uint64_t{1} << 32) - 1));
  ASSERT_TRUE(t.request_resource(t.root(), NewResource{R(0x0, 0x7fff'ffff), "System RAM"}).is_ok());
  ASSERT_TRUE(
      t.request_resource(t.root(), NewResource{R(0xa000'0000, 0xffff'ffff), "PCI Bus 0000:00"})
          .is_ok());
  const GfrParams p{1u << 27, PhysLimit{PhysAddr(0xbfff'ffff), LimitCause::kKaslrDirectMapEnd,
                                        "a test limit"}};
  auto r = t.request_free_mem_region(t.root(), 1u << 30, "big", p);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kERANGE);
  EXPECT_EQ(errno_neg(r.error().code()), -34);
  const std::string& m = r.error().message();
  EXPECT_NE(m.find("no free 1 GiB window"), std::string::npos) << m;
  EXPECT_NE(m.find("search limit P0xbfffffff (kaslr_direct_map_end: a test limit)"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("largest free 128 MiB-aligned window below the limit: 512 MiB at "
                   "[P0x80000000-P0x9fffffff]"),
            std::string::npos)
      << m;
  // 512 MiB fits exactly there.
  auto ok = t.request_free_mem_region(t.root(), 512u << 20, "fits", p);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->range, R(0x8000'0000, 0x9fff'ffff));
  // A size larger than everything below the limit, and a size that rounds to zero.
  EXPECT_EQ(t.request_free_mem_region(t.root(), uint64_t{1} << 33, "huge", p).error().code(),
            Errno::kERANGE);
  EXPECT_EQ(t.request_free_mem_region(t.root(), ~uint64_t{0}, "wrap", p).error().code(),
            Errno::kERANGE);
  EXPECT_EQ(t.request_free_mem_region(t.root(), 4096, "x", GfrParams{3, p.limit}).error().code(),
            Errno::kEINVAL);
}

TEST(GetFreeMemRegion, DevmVariantIsNamedAfterTheDevice) {
  ResourceTree t(PhysAddr((uint64_t{1} << 40) - 1));
  auto r = t.devm_request_free_mem_region("0000:03:00.0", t.root(), 8ull << 30,
                                          GfrParams{1u << 27, limit_at((uint64_t{1} << 40) - 1)});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->name, "0000:03:00.0");
  EXPECT_EQ(r->range, R(0xfe00000000, 0xffffffffff));
}

}  // namespace
}  // namespace dpmm::phys
