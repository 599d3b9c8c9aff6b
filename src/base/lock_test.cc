#include "base/lock.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/thread.h"

namespace dpmm {
namespace {

TEST(Lock, MutexCountsUnderContention) {
  Mutex m(LockRank::kLeaf);
  int counter GUARDED_BY(m) = 0;
  std::vector<Thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back("adder", [&] {
      for (int i = 0; i < 10000; ++i) {
        MutexLocker l(m);
        ++counter;
      }
    });
  }
  for (auto& t : threads) t.join();
  MutexLocker l(m);
  EXPECT_EQ(counter, 40000);
}

TEST(Lock, SpinLockAndProtected) {
  Protected<std::vector<int>, SpinLock> v(LockRank::kLeaf);
  std::vector<Thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back("pusher", [&, t] {
      for (int i = 0; i < 1000; ++i) v.with([&](std::vector<int>& x) { x.push_back(t); });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(v.with([](const std::vector<int>& x) { return x.size(); }), 3000u);
}

TEST(Lock, RanksInOrderAreAccepted) {
  RwLock mmap(LockRank::kMmapLock);
  SpinLock ptl1(LockRank::kPageTable);
  SpinLock ptl2(LockRank::kPageTable);
  Mutex zone(LockRank::kZone);
  {
    ReadLocker a(mmap);
    SpinLocker b(ptl1);
    SpinLocker c(ptl2);  // page-table locks nest (fork takes src then dst)
    MutexLocker d(zone);
    EXPECT_EQ(lock_rank::held_count(), 4);
  }
  EXPECT_EQ(lock_rank::held_count(), 0);
}

TEST(Lock, CondVarWakesWaiter) {
  Mutex m(LockRank::kLeaf);
  CondVar cv;
  bool ready GUARDED_BY(m) = false;
  Thread t("waker", [&] {
    MutexLocker l(m);
    ready = true;
    cv.notify_all();
  });
  {
    MutexLocker l(m);
    cv.wait(m, [&]() REQUIRES(m) { return ready; });
    EXPECT_TRUE(ready);
  }
}

#ifndef NDEBUG
TEST(LockDeathTest, OutOfOrderAborts) {
  EXPECT_DEATH(
      {
        Mutex zone(LockRank::kZone);
        RwLock mmap(LockRank::kMmapLock);
        MutexLocker a(zone);
        ReadLocker b(mmap);
      },
      "lock order violation.*zone then mmap_lock");
  EXPECT_DEATH(
      {
        Mutex z1(LockRank::kZone);
        Mutex z2(LockRank::kZone);
        MutexLocker a(z1);
        MutexLocker b(z2);
      },
      "lock order violation");
}

TEST(Lock, TrylockAgainstOrderIsAllowed) {
  Mutex zone(LockRank::kZone);
  Mutex folio(LockRank::kFolioLock);
  MutexLocker a(zone);
  ASSERT_TRUE(folio.try_lock());
  EXPECT_EQ(lock_rank::held_count(), 2);
  folio.unlock();
}
#endif

}  // namespace
}  // namespace dpmm
