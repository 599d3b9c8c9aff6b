#include "page/buddy.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "base/thread.h"
#include "page/zone.h"

namespace dpmm::page {
namespace {

constexpr uint64_t kSection = 32768;

// A memmap with one section at 4 GiB and a Normal zone over `nr` pages of it starting at
// `offset` pages into the section.
struct SmallZone {
  SmallZone(uint64_t offset, uint64_t nr, DeferredInit init = DeferredInit::kNo)
      : mm(arch::x86_64_params(), arch::vmemmap_window(arch::x86_64_params(), PhysAddr(0))) {
    MUST(mm.add_sections(base, PageCount(kSection)), "one aligned section");
    zone = std::make_unique<Zone>(
        ZoneType::kNormal, 0, mm,
        std::vector<PfnRange>{{base + PageCount(offset), base + PageCount(offset + nr)}}, init);
  }
  Pfn pfn(Page* p) const { return mm.page_to_pfn_unchecked(p); }

  const Pfn base = Pfn(uint64_t{1} << 20);  // 4 GiB
  Memmap mm;
  std::unique_ptr<Zone> zone;
};

std::array<uint64_t, kNrPageOrders> blocks(uint64_t o10, uint64_t o9 = 0, uint64_t o8 = 0) {
  std::array<uint64_t, kNrPageOrders> b{};
  b[10] = o10;
  b[9] = o9;
  b[8] = o8;
  return b;
}

TEST(BuddyTest, InitialFreeListsUseTheLargestAlignedBlocks) {
  // 3 max-order blocks, then one order-8 block, then 3 single pages.
  SmallZone z(0, 3 * 1024 + 256 + 3);
  const ZoneStats s = z.zone->stats();
  EXPECT_EQ(s.nr_free_pages, 3u * 1024 + 256 + 3);
  auto want = blocks(3, 0, 1);
  want[1] = 1;
  want[0] = 1;
  EXPECT_EQ(s.nr_free_blocks, want);
  EXPECT_EQ(s.managed, PageCount(3 * 1024 + 256 + 3));
  EXPECT_EQ(s.present, s.managed);
  EXPECT_EQ(s.spanned, s.managed);
  EXPECT_EQ(s.deferred, PageCount(0));
  EXPECT_TRUE(z.zone->check().is_ok());
}

TEST(BuddyTest, UnalignedStartSplitsUpToAlignment) {
  // Starting 1 page into the section: one block of each order 0..9 up to pfn 1024, then
  // max-order blocks.
  SmallZone z(1, 1023 + 2048);
  auto want = blocks(2);
  for (unsigned o = 0; o < 10; ++o) want[o] = 1;
  EXPECT_EQ(z.zone->stats().nr_free_blocks, want);
}

TEST(BuddyTest, SplitIsExact) {
  SmallZone z(0, 1024);
  Page* p = z.zone->alloc_pages(Order(0)).value();
  EXPECT_EQ(z.pfn(p), z.base);
  EXPECT_EQ(p->ref_count(), 1);
  EXPECT_FALSE(p->is_buddy());
  // 1024 = 1 + 1 + 2 + 4 + ... + 512: one free block of each order 0..9.
  auto want = blocks(0, 1);
  for (unsigned o = 0; o < 9; ++o) want[o] = 1;
  EXPECT_EQ(z.zone->stats().nr_free_blocks, want);
  EXPECT_EQ(z.zone->stats().nr_free_pages, 1023u);
  // Its buddy (pfn ^ 1) is the free order-0 block.
  Page* buddy = z.mm.pfn_to_page_unchecked(z.base + PageCount(1));
  EXPECT_TRUE(buddy->is_buddy());
  EXPECT_EQ(buddy->buddy_order(), 0u);
  z.zone->free_pages(p, Order(0));
  EXPECT_EQ(z.zone->stats().nr_free_blocks, blocks(1));
  EXPECT_TRUE(z.zone->check().is_ok());
}

TEST(BuddyTest, LargeAllocationIsACompoundFolio) {
  SmallZone z(0, 2048);
  Page* p = z.zone->alloc_pages(Order(9)).value();
  Folio f(p);
  EXPECT_EQ(f.order(), Order(9));
  EXPECT_EQ(page_folio(p + 300), f);
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(z.pfn(p).raw() % 512, 0u);
  // Dropping the last reference returns it through the zone's release hook.
  folio_put(f);
  EXPECT_EQ(z.zone->stats().nr_free_blocks, blocks(2));
  EXPECT_FALSE((p + 1)->is_tail());
  EXPECT_TRUE(z.zone->check().is_ok());
}

TEST(BuddyTest, AllocateEverythingThenFreeInRandomOrderMergesBack) {
  constexpr uint64_t kPages = 4 * 1024;
  SmallZone z(0, kPages);
  const ZoneStats start = z.zone->stats();
  std::vector<Page*> pages;
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < kPages; ++i) {
    Page* p = z.zone->alloc_pages(Order(0)).value();
    ASSERT_TRUE(seen.insert(z.pfn(p).raw()).second) << "page handed out twice";
    pages.push_back(p);
  }
  Result<Page*> none = z.zone->alloc_pages(Order(0));
  ASSERT_TRUE(none.is_error());
  EXPECT_EQ(none.error().code(), Errno::kENOMEM);
  EXPECT_EQ(z.zone->stats().nr_free_pages, 0u);
  EXPECT_EQ(z.zone->stats().nr_alloc_fail, 1u);

  std::mt19937_64 rng(12345);
  std::shuffle(pages.begin(), pages.end(), rng);
  for (Page* p : pages) z.zone->free_pages(p, Order(0));
  const ZoneStats end = z.zone->stats();
  EXPECT_EQ(end.nr_free_blocks, start.nr_free_blocks);
  EXPECT_EQ(end.nr_free_blocks, blocks(4));
  EXPECT_EQ(end.nr_free_pages, kPages);
  EXPECT_EQ(end.nr_alloc, kPages);
  EXPECT_EQ(end.nr_free, kPages);
  EXPECT_TRUE(z.zone->check().is_ok());
}

TEST(BuddyTest, RejectsOrdersAboveMax) {
  SmallZone z(0, 1024);
  EXPECT_EQ(z.zone->alloc_pages(Order(11)).error().code(), Errno::kEINVAL);
  EXPECT_EQ(z.zone->alloc_pages(Order(10)).is_ok(), true);
  EXPECT_EQ(z.zone->alloc_pages(Order(0)).error().code(), Errno::kENOMEM);
}

// Random alloc/free sequences against a model of allocated pfns.
RC_GTEST_PROP(BuddyProperty, NeverDoubleAllocatesAndCountsExactly, ()) {
  const uint64_t offset = *rc::gen::inRange<uint64_t>(0, 64);
  const uint64_t nr = *rc::gen::inRange<uint64_t>(1, 3 * 1024);
  SmallZone z(offset, nr);
  const ZoneStats start = z.zone->stats();
  std::map<uint64_t, std::pair<Page*, unsigned>> live;  // head pfn -> (page, order)
  std::set<uint64_t> used;                              // every allocated pfn
  uint64_t allocs = 0;
  uint64_t frees = 0;
  const int steps = *rc::gen::inRange(1, 200);
  for (int i = 0; i < steps; ++i) {
    const bool do_alloc = live.empty() || *rc::gen::inRange(0, 3) != 0;
    if (do_alloc) {
      const unsigned order = *rc::gen::inRange(0u, 11u);
      const uint64_t free_before = z.zone->stats().nr_free_pages;
      Result<Page*> r = z.zone->alloc_pages(Order(order));
      if (r.is_error()) {
        RC_ASSERT(r.error().code() == Errno::kENOMEM);
        continue;
      }
      const uint64_t pfn = z.pfn(*r).raw();
      RC_ASSERT(pfn % (uint64_t{1} << order) == 0);
      RC_ASSERT(pfn >= (z.base + PageCount(offset)).raw());
      RC_ASSERT(pfn + (uint64_t{1} << order) <= (z.base + PageCount(offset + nr)).raw());
      for (uint64_t p = pfn; p < pfn + (uint64_t{1} << order); ++p) {
        RC_ASSERT(used.insert(p).second);
      }
      RC_ASSERT(z.zone->stats().nr_free_pages == free_before - (uint64_t{1} << order));
      live[pfn] = {*r, order};
      ++allocs;
    } else {
      auto it = live.begin();
      std::advance(it, *rc::gen::inRange<size_t>(0, live.size()));
      const auto [page, order] = it->second;
      for (uint64_t p = it->first; p < it->first + (uint64_t{1} << order); ++p) used.erase(p);
      z.zone->free_pages(page, Order(order));
      live.erase(it);
      ++frees;
    }
    const ZoneStats s = z.zone->stats();
    RC_ASSERT(s.nr_free_pages == nr - used.size());
    RC_ASSERT(s.nr_alloc == allocs);
    RC_ASSERT(s.nr_free == frees);
  }
  RC_ASSERT(z.zone->check().is_ok());
  for (auto& [pfn, po] : live) z.zone->free_pages(po.first, Order(po.second));
  const ZoneStats end = z.zone->stats();
  RC_ASSERT(end.nr_free_blocks == start.nr_free_blocks);
  RC_ASSERT(end.nr_free_pages == nr);
  RC_ASSERT(z.zone->check().is_ok());
}

TEST(BuddyTest, ConcurrentAllocFreeKeepsExactCounts) {
  constexpr uint64_t kPages = 8 * 1024;
  constexpr int kThreads = 4;
  constexpr int kOps = 4000;
  SmallZone z(0, kPages);
  const ZoneStats start = z.zone->stats();
  std::vector<std::atomic<uint8_t>> owner(kPages);  // 0 free, else thread id + 1
  std::atomic<int> double_alloc{0};
  std::atomic<uint64_t> ok_allocs{0};
  {
    std::vector<Thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back("buddy", [&, t] {
        std::mt19937 rng(t + 1);
        std::vector<std::pair<Page*, unsigned>> mine;
        for (int i = 0; i < kOps; ++i) {
          if (mine.empty() || rng() % 2 == 0) {
            const unsigned order = rng() % 6;
            Result<Page*> r = z.zone->alloc_pages(Order(order));
            if (r.is_error()) continue;
            ok_allocs.fetch_add(1);
            const uint64_t idx = (z.pfn(*r) - z.base).raw();
            for (uint64_t p = idx; p < idx + (uint64_t{1} << order); ++p) {
              uint8_t expected = 0;
              if (!owner[p].compare_exchange_strong(expected, static_cast<uint8_t>(t + 1))) {
                double_alloc.fetch_add(1);
              }
            }
            mine.emplace_back(*r, order);
          } else {
            const size_t k = rng() % mine.size();
            auto [page, order] = mine[k];
            mine[k] = mine.back();
            mine.pop_back();
            const uint64_t idx = (z.pfn(page) - z.base).raw();
            for (uint64_t p = idx; p < idx + (uint64_t{1} << order); ++p) owner[p].store(0);
            z.zone->free_pages(page, Order(order));
          }
        }
        for (auto [page, order] : mine) {
          const uint64_t idx = (z.pfn(page) - z.base).raw();
          for (uint64_t p = idx; p < idx + (uint64_t{1} << order); ++p) owner[p].store(0);
          z.zone->free_pages(page, Order(order));
        }
      });
    }
  }
  EXPECT_EQ(double_alloc.load(), 0);
  const ZoneStats end = z.zone->stats();
  EXPECT_EQ(end.nr_free_pages, kPages);
  EXPECT_EQ(end.nr_free_blocks, start.nr_free_blocks);
  EXPECT_EQ(end.nr_alloc, ok_allocs.load());
  EXPECT_EQ(end.nr_free, ok_allocs.load());
  EXPECT_TRUE(z.zone->check().is_ok());
}

}  // namespace
}  // namespace dpmm::page
