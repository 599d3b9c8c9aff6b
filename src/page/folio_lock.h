// The folio lock: PG_locked on the head page, sleepers on a hashed table of wait queues
// (mm/filemap.c: folio_lock, __folio_lock, folio_unlock, folio_wait_bit_common,
// folio_waitqueue / folio_wait_table of PAGE_WAIT_TABLE_SIZE = 256 queues).
//
// Protocol (how a wakeup cannot be lost):
//   locker:   fast path test_and_set(PG_locked). Slow path, under the queue's mutex: set
//             PG_waiters, then try test_and_set(PG_locked) again; if still held, wait on the
//             queue's condition (which releases the mutex atomically) and retry.
//   unlocker: clear PG_locked (release); if PG_waiters was set, take the queue's mutex,
//             clear PG_waiters and wake every sleeper of the queue. Sleepers whose folio is
//             still locked set PG_waiters again before sleeping.
// Because a sleeper re-checks PG_locked after setting PG_waiters while holding the mutex, and
// the unlocker wakes under the same mutex, an unlock either lets the re-check succeed or
// finds PG_waiters and wakes the sleeper.
//
// Lock ranking: the folio lock reports itself as LockRank::kFolioLock (nestable: migration
// holds many folio locks, taking all but the first with trylock). The queue mutexes are ranked
// kLeaf: held only across the flag check, never while taking another lock.
//
// Every function REQUIRES `folio` to be a head page held by a reference (the kernel's rule).
// The folio lock is a bit, not an object, so clang's thread-safety analysis cannot follow it;
// the lock-rank checker does.
#pragma once

#include "page/folio.h"

namespace dpmm::page {

void folio_lock(Folio folio);
// Returns true with the lock held, false (nothing held) if it was locked.
[[nodiscard]] bool folio_trylock(Folio folio);
// REQUIRES: the caller holds the folio lock.
void folio_unlock(Folio folio);
// Sleeps until the folio is unlocked, without taking the lock (folio_wait_locked).
void folio_wait_locked(Folio folio);
inline bool folio_test_locked(Folio folio) { return folio.test_flag(PageFlag::kLocked); }

// Kernel names for the page-level entry points (they act on the page's folio).
inline void lock_page(Page* page) { folio_lock(page_folio(page)); }
inline void unlock_page(Page* page) { folio_unlock(page_folio(page)); }
[[nodiscard]] inline bool trylock_page(Page* page) { return folio_trylock(page_folio(page)); }

}  // namespace dpmm::page
