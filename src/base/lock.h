// Annotated, ranked locks. Every lock in dpmm is one of these, so the lock-rank checker sees
// every acquisition and a deterministic scheduler can later take over at one seam.
//
//   Mutex        sleeping mutex (mutex_lock)
//   RwLock       reader/writer semaphore (rw_semaphore: mmap_lock, i_mmap_rwsem)
//   SpinLock     busy-waiting lock for short critical sections (spinlock_t: ptl, zone->lock)
//   CondVar      waits on a Mutex (wait_event / wake_up)
//   Protected<T> data reachable only through its lock
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "base/lock_rank.h"
#include "base/thread_annotations.h"

namespace dpmm {

inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class CAPABILITY("mutex") Mutex {
 public:
  explicit Mutex(LockRank rank = LockRank::kNone) : rank_(rank) {}
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() {
    lock_rank::on_acquire(rank_, this);
    m_.lock();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    // A trylock cannot deadlock, so it is allowed against the order; it is still recorded so
    // that locks taken under it are checked.
    if (!m_.try_lock()) return false;
    lock_rank::on_try_acquire(rank_, this);
    return true;
  }
  void unlock() RELEASE() {
    lock_rank::on_release(rank_, this);
    m_.unlock();
  }
  LockRank rank() const { return rank_; }
  std::mutex& native() { return m_; }

 private:
  std::mutex m_;
  LockRank rank_;
};

class SCOPED_CAPABILITY MutexLocker {
 public:
  explicit MutexLocker(Mutex& m) ACQUIRE(m) : m_(m) { m_.lock(); }
  ~MutexLocker() RELEASE() { m_.unlock(); }
  MutexLocker(const MutexLocker&) = delete;
  MutexLocker& operator=(const MutexLocker&) = delete;

 private:
  Mutex& m_;
};

class CAPABILITY("rwlock") RwLock {
 public:
  explicit RwLock(LockRank rank = LockRank::kNone) : rank_(rank) {}
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;

  void lock() ACQUIRE() {
    lock_rank::on_acquire(rank_, this);
    m_.lock();
  }
  void unlock() RELEASE() {
    lock_rank::on_release(rank_, this);
    m_.unlock();
  }
  void lock_shared() ACQUIRE_SHARED() {
    lock_rank::on_acquire(rank_, this);
    m_.lock_shared();
  }
  void unlock_shared() RELEASE_SHARED() {
    lock_rank::on_release(rank_, this);
    m_.unlock_shared();
  }
  LockRank rank() const { return rank_; }

 private:
  std::shared_mutex m_;
  LockRank rank_;
};

class SCOPED_CAPABILITY ReadLocker {
 public:
  explicit ReadLocker(RwLock& l) ACQUIRE_SHARED(l) : l_(l) { l_.lock_shared(); }
  ~ReadLocker() RELEASE() { l_.unlock_shared(); }
  ReadLocker(const ReadLocker&) = delete;
  ReadLocker& operator=(const ReadLocker&) = delete;

 private:
  RwLock& l_;
};

class SCOPED_CAPABILITY WriteLocker {
 public:
  explicit WriteLocker(RwLock& l) ACQUIRE(l) : l_(l) { l_.lock(); }
  ~WriteLocker() RELEASE() { l_.unlock(); }
  WriteLocker(const WriteLocker&) = delete;
  WriteLocker& operator=(const WriteLocker&) = delete;

 private:
  RwLock& l_;
};

class CAPABILITY("spinlock") SpinLock {
 public:
  explicit SpinLock(LockRank rank = LockRank::kNone) : rank_(rank) {}
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() ACQUIRE() {
    lock_rank::on_acquire(rank_, this);
    // Test-and-test-and-set: spin on a plain load so waiters do not bounce the cache line.
    // After a short spin, yield: the model often runs more threads than the machine has cores.
    unsigned spins = 0;
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 64) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  void unlock() RELEASE() {
    lock_rank::on_release(rank_, this);
    locked_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<bool> locked_{false};
  LockRank rank_;
};

class SCOPED_CAPABILITY SpinLocker {
 public:
  explicit SpinLocker(SpinLock& l) ACQUIRE(l) : l_(l) { l_.lock(); }
  ~SpinLocker() RELEASE() { l_.unlock(); }
  SpinLocker(const SpinLocker&) = delete;
  SpinLocker& operator=(const SpinLocker&) = delete;

 private:
  SpinLock& l_;
};

// A condition variable bound to dpmm's Mutex. wait() releases and re-takes the mutex; the
// rank bookkeeping stays as "held" across the wait, which is what the caller sees. Callers loop
// on their condition themselves (`while (!ready) cv.wait(m);`), so the thread-safety analysis
// sees the guarded reads under the lock; a predicate lambda would hide them from it.
class CondVar {
 public:
  void wait(Mutex& m) REQUIRES(m) {
    std::unique_lock<std::mutex> lk(m.native(), std::adopt_lock);
    cv_.wait(lk);
    lk.release();
  }
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// Scoped holder for any of the lock types above.
template <typename Lock>
class SCOPED_CAPABILITY ScopedLock {
 public:
  explicit ScopedLock(Lock& l) ACQUIRE(l) : l_(l) { l_.lock(); }
  ~ScopedLock() RELEASE() { l_.unlock(); }
  ScopedLock(const ScopedLock&) = delete;
  ScopedLock& operator=(const ScopedLock&) = delete;

 private:
  Lock& l_;
};

// Data that can be reached only while holding its lock:
//   Protected<Stats> stats{LockRank::kLeaf};
//   stats.with([](Stats& s) { ++s.faults; });
template <typename T, typename Lock = Mutex>
class Protected {
 public:
  template <typename... Args>
  explicit Protected(LockRank rank, Args&&... args)
      : lock_(rank), value_(std::forward<Args>(args)...) {}

  template <typename F>
  decltype(auto) with(F&& f) {
    ScopedLock<Lock> g(lock_);
    return std::forward<F>(f)(value_);
  }
  template <typename F>
  decltype(auto) with(F&& f) const {
    ScopedLock<Lock> g(lock_);
    return std::forward<F>(f)(static_cast<const T&>(value_));
  }

 private:
  mutable Lock lock_;
  T value_ GUARDED_BY(lock_);
};

}  // namespace dpmm
