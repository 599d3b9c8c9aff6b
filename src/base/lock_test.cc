#include "base/lock.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/thread.h"

namespace dpmm {
namespace {

struct Counter {
  Mutex m{LockRank::kLeaf};
  int value GUARDED_BY(m) = 0;
};

TEST(Lock, MutexCountsUnderContention) {
  Counter c;
  std::vector<Thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back("adder", [&] {
      for (int i = 0; i < 10000; ++i) {
        MutexLocker l(c.m);
        ++c.value;
      }
    });
  }
  for (auto& t : threads) t.join();
  MutexLocker l(c.m);
  EXPECT_EQ(c.value, 40000);
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

struct Flag {
  Mutex m{LockRank::kLeaf};
  CondVar cv;
  bool ready GUARDED_BY(m) = false;
};

TEST(Lock, CondVarWakesWaiter) {
  Flag f;
  Thread t("waker", [&] {
    MutexLocker l(f.m);
    f.ready = true;
    f.cv.notify_all();
  });
  MutexLocker l(f.m);
  while (!f.ready) f.cv.wait(f.m);
  EXPECT_TRUE(f.ready);
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
  if (!folio.try_lock()) {
    FAIL() << "an uncontended trylock failed";
    return;
  }
  EXPECT_EQ(lock_rank::held_count(), 2);
  folio.unlock();
}
#endif

}  // namespace
}  // namespace dpmm
