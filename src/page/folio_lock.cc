#include "page/folio_lock.h"

#include <array>
#include <cstdint>

#include "base/lock.h"
#include "base/lock_rank.h"

namespace dpmm::page {

namespace {

// PAGE_WAIT_TABLE_BITS = 8 (mm/filemap.c).
constexpr unsigned kWaitTableBits = 8;
constexpr size_t kWaitTableSize = size_t{1} << kWaitTableBits;

struct WaitQueue {
  Mutex mutex{LockRank::kLeaf};
  CondVar cond;
};

std::array<WaitQueue, kWaitTableSize>& wait_table() {
  static std::array<WaitQueue, kWaitTableSize> table;
  return table;
}

// folio_waitqueue(): hash_ptr of the folio onto the table.
WaitQueue& folio_waitqueue(Folio folio) {
  const uint64_t key = reinterpret_cast<uint64_t>(folio.head()) >> 6;  // descriptors are 64 B
  const uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> (64 - kWaitTableBits);
  return wait_table()[h];
}

constexpr uint64_t kLocked = page_flag_mask(PageFlag::kLocked);
constexpr uint64_t kWaiters = page_flag_mask(PageFlag::kWaiters);

bool try_set_locked(Folio folio) {
  return (folio.head()->flags_atomic().fetch_or(kLocked, std::memory_order_acquire) & kLocked) == 0;
}

enum class WaitFor : bool { kUnlocked, kLockTaken };

// folio_wait_bit_common(): sleeps on the folio's queue until PG_locked is clear (and, for
// kLockTaken, sets it on our behalf).
void wait_on_locked(Folio folio, WaitFor what) {
  WaitQueue& q = folio_waitqueue(folio);
  std::atomic<uint64_t>& flags = folio.head()->flags_atomic();
  MutexLocker guard(q.mutex);
  for (;;) {
    flags.fetch_or(kWaiters, std::memory_order_seq_cst);
    if (what == WaitFor::kLockTaken) {
      if (try_set_locked(folio)) return;
    } else if ((flags.load(std::memory_order_seq_cst) & kLocked) == 0) {
      return;
    }
    q.cond.wait(q.mutex);
  }
}

}  // namespace

void folio_lock(Folio folio) {
  assert(!folio.head()->is_tail() && "folio_lock on a tail page");
  // Check the order before blocking, as Mutex::lock does.
  lock_rank::on_acquire(LockRank::kFolioLock, folio.head());
  if (try_set_locked(folio)) return;
  wait_on_locked(folio, WaitFor::kLockTaken);
}

bool folio_trylock(Folio folio) {
  if (!try_set_locked(folio)) return false;
  lock_rank::on_try_acquire(LockRank::kFolioLock, folio.head());
  return true;
}

void folio_unlock(Folio folio) {
  lock_rank::on_release(LockRank::kFolioLock, folio.head());
  // seq_cst pairs with the sleeper's PG_waiters store and re-check (see the header).
  const uint64_t old = folio.head()->flags_atomic().fetch_and(~kLocked, std::memory_order_seq_cst);
  assert((old & kLocked) && "folio_unlock of an unlocked folio");
  if ((old & kWaiters) == 0) return;
  // folio_wake_bit(): wake the queue. Waiters of other folios hashed to the same queue wake
  // too, find their folio still locked and go back to sleep.
  WaitQueue& q = folio_waitqueue(folio);
  MutexLocker guard(q.mutex);
  folio.head()->flags_atomic().fetch_and(~kWaiters, std::memory_order_relaxed);
  q.cond.notify_all();
}

void folio_wait_locked(Folio folio) {
  if (!folio_test_locked(folio)) return;
  wait_on_locked(folio, WaitFor::kUnlocked);
}

}  // namespace dpmm::page
