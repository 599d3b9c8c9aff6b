#include "page/folio.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <vector>

#include "base/thread.h"

namespace dpmm::page {
namespace {

class CountingReleaser final : public FolioReleaser {
 public:
  void folio_release(Folio folio) override {
    ++calls;
    last = folio.head();
    last_refcount = folio.ref_count();
  }
  std::atomic<int> calls{0};
  Page* last = nullptr;
  int last_refcount = -1;
};

struct Pages {
  explicit Pages(size_t n, FolioReleaser* r = nullptr) : p(std::make_unique<Page[]>(n)) {
    for (size_t i = 0; i < n; ++i) init_single_page(&p[i], PageLinks{.releaser = r});
  }
  Page* operator[](size_t i) { return &p[i]; }
  std::unique_ptr<Page[]> p;
};

TEST(FolioTest, SmallFolio) {
  Pages pages(1);
  Folio f(pages[0]);
  EXPECT_FALSE(f.is_large());
  EXPECT_EQ(f.order(), Order(0));
  EXPECT_EQ(f.nr_pages(), PageCount(1));
  EXPECT_EQ(folio_page(f, 0), pages[0]);
  EXPECT_EQ(f.mapcount(), 0);
  EXPECT_EQ(f.entire_mapcount(), 0);
}

TEST(FolioTest, LargeFolioLayout) {
  Pages pages(16);
  Folio f = prep_compound_page(pages[0], Order(4));
  EXPECT_TRUE(f.is_large());
  EXPECT_TRUE(pages[0]->is_head());
  EXPECT_EQ(f.order(), Order(4));
  EXPECT_EQ(folio_nr_pages(f), PageCount(16));
  EXPECT_EQ(pages[1]->tail1_order(), 4u);
  for (size_t i = 1; i < 16; ++i) {
    EXPECT_TRUE(pages[i]->is_tail()) << i;
    EXPECT_EQ(pages[i]->compound_head(), pages[0]) << i;
    EXPECT_EQ(page_folio(pages[i]), f) << i;
    EXPECT_EQ(folio_page(f, i), pages[i]) << i;
    EXPECT_EQ(pages[i]->mapcount_raw(), -1) << "per-page mapcounts stay -1";
  }
  EXPECT_EQ(page_folio(pages[0]), f);
  EXPECT_TRUE(f.contains(pages[15]));
  EXPECT_EQ(f.mapcount(), 0);
  EXPECT_EQ(f.entire_mapcount(), 0);
  EXPECT_EQ(f.large_mapcount_raw().load(), -1);
  EXPECT_EQ(f.entire_mapcount_raw().load(), -1);
  EXPECT_EQ(f.nr_pages_mapped_raw().load(), 0);
  EXPECT_EQ(f.pincount_raw().load(), 0);
  // A PMD mapping: entire and large mapcounts both count it.
  f.entire_mapcount_raw().fetch_add(1);
  f.large_mapcount_raw().fetch_add(1);
  EXPECT_EQ(f.entire_mapcount(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  f.entire_mapcount_raw().fetch_sub(1);
  f.large_mapcount_raw().fetch_sub(1);

  clear_compound_page(f);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_FALSE(pages[i]->is_compound()) << i;
    EXPECT_EQ(page_folio(pages[i]).head(), pages[i]) << i;
  }
  EXPECT_EQ(pages[1]->flags_word() & kFolioOrderMask, 0u);
}

TEST(FolioTest, ZoneBitsOfTheFirstTailSurviveTheOrder) {
  auto storage = std::make_unique<Page[]>(4);
  for (int i = 0; i < 4; ++i) {
    init_single_page(&storage[i], PageLinks{.zone = ZoneType::kMovable, .nid = 5, .section = 9});
  }
  Folio f = prep_compound_page(&storage[0], Order(2));
  EXPECT_EQ(storage[1].zone_id(), ZoneType::kMovable);
  EXPECT_EQ(storage[1].node_id(), 5u);
  EXPECT_EQ(storage[1].section_nr(), 9u);
  EXPECT_EQ(f.order(), Order(2));
}

TEST(FolioTest, RefcountRulesAndReleaseOnce) {
  CountingReleaser rel;
  Pages pages(1, &rel);
  Folio f(pages[0]);
  EXPECT_FALSE(folio_try_get(f)) << "a free folio (count 0) cannot be got";
  f.head()->set_ref_count(1);
  EXPECT_TRUE(folio_try_get(f));
  EXPECT_EQ(folio_ref_count(f), 2);
  folio_get(f);
  EXPECT_EQ(folio_ref_count(f), 3);
  folio_put(f);
  folio_put(f);
  EXPECT_EQ(rel.calls.load(), 0);
  folio_put(f);
  EXPECT_EQ(rel.calls.load(), 1);
  EXPECT_EQ(rel.last, pages[0]);
  EXPECT_EQ(rel.last_refcount, 0);
  EXPECT_FALSE(folio_try_get(f));
}

TEST(FolioTest, PutRefsAndFreeze) {
  CountingReleaser rel;
  Pages pages(1, &rel);
  Folio f(pages[0]);
  f.head()->set_ref_count(1);
  folio_ref_add(f, 4);
  EXPECT_EQ(folio_ref_count(f), 5);
  EXPECT_FALSE(folio_ref_freeze(f, 3));
  EXPECT_TRUE(folio_ref_freeze(f, 5));
  EXPECT_EQ(folio_ref_count(f), 0);
  EXPECT_FALSE(folio_try_get(f)) << "a frozen folio cannot be got";
  folio_ref_unfreeze(f, 2);
  folio_put_refs(f, 2);
  EXPECT_EQ(rel.calls.load(), 1);
}

TEST(FolioTest, ConcurrentPutsReleaseExactlyOnce) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 200;
  CountingReleaser rel;
  Pages pages(8, &rel);
  Folio f = prep_compound_page(pages[0], Order(3));
  for (int round = 0; round < kRounds; ++round) {
    f.head()->set_ref_count(1);
    {
      std::vector<Thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        folio_get(f);  // each thread owns one reference
        threads.emplace_back("put", [&] {
          for (int i = 0; i < 50; ++i) {
            if (folio_try_get(f)) folio_put(f);
          }
          folio_put(f);
        });
      }
      folio_put(f);  // the creator's reference
    }
    ASSERT_EQ(rel.calls.load(), round + 1);
    ASSERT_EQ(rel.last, pages[0]);
  }
}

TEST(FolioTest, TailLookupsFromAnyPage) {
  Pages pages(512);
  Folio f = prep_compound_page(pages[0], Order(9));
  for (size_t i = 0; i < 512; i += 37) EXPECT_EQ(page_folio(pages[i]).head(), pages[0]);
  EXPECT_EQ(f.nr_pages(), PageCount(512));
}

}  // namespace
}  // namespace dpmm::page
