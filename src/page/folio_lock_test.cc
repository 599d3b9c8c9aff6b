#include "page/folio_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "base/lock_rank.h"
#include "base/thread.h"

namespace dpmm::page {
namespace {

struct Pages {
  explicit Pages(size_t n) : p(std::make_unique<Page[]>(n)) {
    for (size_t i = 0; i < n; ++i) init_single_page(&p[i], PageLinks{});
  }
  Folio folio(size_t i) { return Folio(&p[i]); }
  std::unique_ptr<Page[]> p;
};

// Spins (yielding) until `cond` holds; the test's only clock is the other thread's progress.
template <typename F>
void spin_until(F cond) {
  while (!cond()) std::this_thread::yield();
}

TEST(FolioLockTest, TrylockAndUnlock) {
  Pages pages(1);
  Folio f = pages.folio(0);
  EXPECT_FALSE(folio_test_locked(f));
  ASSERT_TRUE(folio_trylock(f));
  EXPECT_TRUE(folio_test_locked(f));
  EXPECT_FALSE(folio_trylock(f));
  folio_unlock(f);
  EXPECT_FALSE(folio_test_locked(f));
  EXPECT_FALSE(f.test_flag(PageFlag::kWaiters));
  folio_lock(f);
  EXPECT_TRUE(folio_test_locked(f));
  folio_unlock(f);
}

TEST(FolioLockTest, ReportsToTheLockRankChecker) {
  Pages pages(2);
  const int before = lock_rank::held_count();
  folio_lock(pages.folio(0));
  ASSERT_TRUE(folio_trylock(pages.folio(1)));  // nestable, as migration does
#ifndef NDEBUG
  EXPECT_EQ(lock_rank::held_count(), before + 2);
#endif
  folio_unlock(pages.folio(1));
  folio_unlock(pages.folio(0));
  EXPECT_EQ(lock_rank::held_count(), before);
}

TEST(FolioLockTest, TailPageLocksTheFolio) {
  Pages pages(4);
  Folio f = prep_compound_page(&pages.p[0], Order(2));
  lock_page(&pages.p[3]);
  EXPECT_TRUE(folio_test_locked(f));
  EXPECT_FALSE(trylock_page(&pages.p[2]));
  unlock_page(&pages.p[1]);
  EXPECT_FALSE(folio_test_locked(f));
}

TEST(FolioLockTest, WaiterIsWokenByUnlock) {
  Pages pages(1);
  Folio f = pages.folio(0);
  folio_lock(f);
  std::atomic<bool> acquired{false};
  {
    Thread waiter("waiter", [&] {
      folio_lock(f);
      acquired = true;
      folio_unlock(f);
    });
    // The waiter announces itself with PG_waiters before sleeping.
    spin_until([&] { return f.test_flag(PageFlag::kWaiters); });
    EXPECT_FALSE(acquired.load());
    folio_unlock(f);
  }
  EXPECT_TRUE(acquired.load());
  EXPECT_FALSE(folio_test_locked(f));
}

TEST(FolioLockTest, WaitLockedDoesNotTakeTheLock) {
  Pages pages(1);
  Folio f = pages.folio(0);
  folio_lock(f);
  std::atomic<bool> done{false};
  {
    Thread waiter("wait_locked", [&] {
      folio_wait_locked(f);
      done = true;
    });
    spin_until([&] { return f.test_flag(PageFlag::kWaiters); });
    EXPECT_FALSE(done.load());
    folio_unlock(f);
  }
  EXPECT_TRUE(done.load());
  EXPECT_FALSE(folio_test_locked(f));
}

TEST(FolioLockTest, MutualExclusionUnderContention) {
  constexpr int kThreads = 6;
  constexpr int kIters = 3000;
  Pages pages(1);
  Folio f = pages.folio(0);
  int counter = 0;  // protected by the folio lock only
  std::atomic<int> inside{0};
  std::atomic<int> violations{0};
  {
    std::vector<Thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back("locker", [&, t] {
        for (int i = 0; i < kIters; ++i) {
          if ((i + t) % 3 == 0) {
            if (!folio_trylock(f)) continue;
          } else {
            folio_lock(f);
          }
          if (inside.fetch_add(1) != 0) violations.fetch_add(1);
          ++counter;
          inside.fetch_sub(1);
          folio_unlock(f);
        }
      });
    }
  }
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GE(counter, kThreads * kIters * 2 / 3);
  EXPECT_LE(counter, kThreads * kIters);
  EXPECT_FALSE(folio_test_locked(f));
}

TEST(FolioLockTest, ManyFoliosSharingWaitQueues) {
  // More folios than wait queues, so several hash to one queue and wake each other.
  constexpr int kFolios = 600;
  constexpr int kThreads = 4;
  Pages pages(kFolios);
  std::vector<int> counts(kFolios, 0);
  {
    std::vector<Thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back("many", [&, t] {
        for (int round = 0; round < 5; ++round) {
          for (int i = 0; i < kFolios; ++i) {
            const int k = (i * 7 + t * 13 + round) % kFolios;
            folio_lock(pages.folio(k));
            ++counts[k];
            folio_unlock(pages.folio(k));
          }
        }
      });
    }
  }
  for (int i = 0; i < kFolios; ++i) ASSERT_EQ(counts[i], kThreads * 5) << i;
}

}  // namespace
}  // namespace dpmm::page
