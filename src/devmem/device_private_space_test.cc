#include "devmem/device_private_space.h"

#include "devmem/dev_pagemap.h"  // complete type, so rapidcheck can print owners

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <vector>

namespace dpmm::devmem {
namespace {

// Distinct fake owners (never dereferenced).
DevPagemap* owner(uintptr_t i) { return reinterpret_cast<DevPagemap*>((i + 1) * 64); }

constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST(DevicePrivateSpace, LowestFitAndLookups) {
  DevicePrivateSpace s(46);
  EXPECT_EQ(s.max(), uint64_t{1} << 46);
  EXPECT_EQ(*s.alloc_range(owner(0), 80 * kGiB), 0u);
  EXPECT_EQ(*s.alloc_range(owner(1), 4096), 80 * kGiB);
  EXPECT_EQ(*s.alloc_range(owner(2), 2 * kGiB), 80 * kGiB + 4096);
  // Free the first: the next small request reuses the lowest gap.
  EXPECT_EQ(*s.erase(12345), owner(0));
  EXPECT_EQ(*s.alloc_range(owner(3), kGiB), 0u);
  const auto r = s.load(80 * kGiB + 4095);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, (DevicePrivateRange{80 * kGiB, 80 * kGiB + 4095, owner(1)}));
  EXPECT_FALSE(s.load(kGiB).has_value());  // the hole left behind
  EXPECT_FALSE(s.load(s.max()).has_value());
  EXPECT_EQ(s.nr_ranges(), 3u);
  // The hole left at [1 GiB, 80 GiB) takes exactly 79 GiB.
  EXPECT_EQ(*s.alloc_range(owner(4), 79 * kGiB), kGiB);
}

TEST(DevicePrivateSpace, Errors) {
  DevicePrivateSpace s(32);  // [0, 4 GiB]
  EXPECT_EQ(s.alloc_range(owner(0), 0).error().code(), Errno::kEINVAL);
  EXPECT_EQ(s.alloc_range(nullptr, 4096).error().code(), Errno::kEINVAL);
  // max - min < size - 1: 4 GiB + 2 bytes cannot fit [0, 4 GiB].
  EXPECT_EQ(s.alloc_range(owner(0), 4 * kGiB + 2).error().code(), Errno::kEINVAL);
  // The inclusive maximum: exactly 4 GiB + 1 bytes fits.
  EXPECT_EQ(*s.alloc_range(owner(0), 4 * kGiB + 1), 0u);
  const auto full = s.alloc_range(owner(1), 4096);
  ASSERT_TRUE(full.is_error());
  EXPECT_EQ(full.error().code(), Errno::kEBUSY);
  EXPECT_NE(full.error().message().find("no free range"), std::string::npos);
  EXPECT_EQ(s.erase(4 * kGiB + 1).error().code(), Errno::kENOENT);
  EXPECT_EQ(*s.erase(4 * kGiB), owner(0));
  EXPECT_EQ(s.nr_ranges(), 0u);
}

// One huge range below many small ones: the lookup index's buckets then hold many starts
// each (the binary-search fallback), and the tables grow 16 -> 32 -> ... -> 1024 slots.
TEST(DevicePrivateSpace, SkewedLayoutResolvesEveryRange) {
  DevicePrivateSpace s(46);
  EXPECT_EQ(*s.alloc_range(owner(0), 80 * kGiB), 0u);
  constexpr uint64_t kSmall = 1000;
  std::vector<DevicePrivateRange> want{{0, 80 * kGiB - 1, owner(0)}};
  uint64_t next = 80 * kGiB;
  for (uint64_t i = 1; i <= kSmall; ++i) {
    const uint64_t size = 4096 * (1 + i % 3);
    EXPECT_EQ(*s.alloc_range(owner(i), size), next);
    want.push_back({next, next + size - 1, owner(i)});
    next += size;
  }
  EXPECT_EQ(s.ranges(), want);
  auto check = [&] {
    for (const DevicePrivateRange& r : want) {
      for (uint64_t addr : {r.start, r.start + r.size() / 2, r.last}) {
        const auto got = s.load(addr);
        ASSERT_TRUE(got.has_value()) << addr;
        EXPECT_EQ(*got, r);
        EXPECT_EQ(s.load_pgmap(addr), r.pgmap);
      }
    }
    EXPECT_FALSE(s.load(next).has_value());
    EXPECT_EQ(s.load_pgmap(next), nullptr);
  };
  check();
  // Erase every other small range: their bytes miss, the others still resolve.
  std::vector<DevicePrivateRange> kept{want[0]};
  for (uint64_t i = 1; i <= kSmall; ++i) {
    if (i % 2 == 0) {
      kept.push_back(want[i]);
      continue;
    }
    EXPECT_EQ(*s.erase(want[i].last), owner(i));
    EXPECT_FALSE(s.load(want[i].start).has_value());
    EXPECT_EQ(s.load_pgmap(want[i].last), nullptr);
  }
  want = kept;
  EXPECT_EQ(s.ranges(), want);
  check();
}

// Brute force over 256 units of 16 MiB (a 32-bit space): lowest fit, no overlap, exact lookups.
RC_GTEST_PROP(DevicePrivateSpace, MatchesBruteForce, ()) {
  constexpr unsigned kUnitShift = 24;
  constexpr unsigned kUnits = 256;
  DevicePrivateSpace s(32);
  std::vector<int> model(kUnits, -1);  // owner index per unit, -1 free
  std::vector<std::pair<uint64_t, uint64_t>> live;  // (first unit, units) by owner index
  const int steps = *rc::gen::inRange(1, 80);
  for (int step = 0; step < steps; ++step) {
    const bool do_free = !live.empty() && *rc::gen::inRange(0, 3) == 0;
    if (do_free) {
      const size_t i = *rc::gen::inRange<size_t>(0, live.size());
      if (live[i].second == 0) continue;  // already freed
      const uint64_t addr = (live[i].first << kUnitShift) +
                            *rc::gen::inRange<uint64_t>(0, live[i].second << kUnitShift);
      RC_ASSERT(*s.erase(addr) == owner(i));
      for (uint64_t u = live[i].first; u < live[i].first + live[i].second; ++u) model[u] = -1;
      live[i].second = 0;
      continue;
    }
    const uint64_t units = *rc::gen::inRange<uint64_t>(1, 65);
    const size_t idx = live.size();
    // Brute force: the lowest unit where `units` free units start.
    std::optional<uint64_t> want;
    for (uint64_t start = 0; start + units <= kUnits && !want; ++start) {
      bool free = true;
      for (uint64_t u = start; u < start + units; ++u) free = free && model[u] == -1;
      if (free) want = start;
    }
    const Result<uint64_t> got = s.alloc_range(owner(idx), units << kUnitShift);
    if (!want) {
      RC_ASSERT(got.is_error());
      RC_ASSERT(got.error().code() == Errno::kEBUSY);
      continue;
    }
    RC_ASSERT(got.is_ok());
    RC_ASSERT(*got == (*want << kUnitShift));
    for (uint64_t u = *want; u < *want + units; ++u) model[u] = static_cast<int>(idx);
    live.emplace_back(*want, units);
  }
  // Every unit's first and last byte resolve to exactly the model's owner.
  for (uint64_t u = 0; u < kUnits; ++u) {
    for (uint64_t addr : {u << kUnitShift, ((u + 1) << kUnitShift) - 1}) {
      const auto r = s.load(addr);
      if (model[u] == -1) {
        RC_ASSERT(!r.has_value());
      } else {
        RC_ASSERT(r.has_value());
        RC_ASSERT(r->pgmap == owner(static_cast<size_t>(model[u])));
      }
    }
  }
  // No two ranges overlap, and they come back sorted.
  const auto all = s.ranges();
  for (size_t i = 1; i < all.size(); ++i) RC_ASSERT(all[i - 1].last < all[i].start);
}

}  // namespace
}  // namespace dpmm::devmem
