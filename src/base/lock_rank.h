// The lock order of dpmm, declared once.
//
// Rule: a thread may acquire a lock only if its rank is greater than the rank of every ranked
// lock it already holds. Ranks marked "nestable" below may also be taken while holding another
// lock of the same rank (the kernel takes several folio locks, or several page-table locks of
// one mm, under a documented ordering of its own). LockRank::kNone opts a lock out of checking.
//
// The order follows the kernel's (mm/rmap.c's lock-ordering comment and mm/filemap.c's):
// mmap_lock outermost, then folio lock, the file and anon rmap locks, the mmu-notifier state,
// a driver's device-page-table mutex (its invalidate callback runs inside the rmap walk),
// page-table locks, and the allocator locks innermost.
//
// Checking is on whenever assertions are (every build but a pure NDEBUG one).
#pragma once

#include <cstdint>

namespace dpmm {

enum class LockRank : uint8_t {
  kNone = 0,
  kMmapLock,           // mm->mmap_lock (rw)
  kHugetlbFaultMutex,  // hugetlb_fault_mutex_table (mm/hugetlb.c): serialises hugetlb faults
                       // on one page; taken under mmap_lock, before the folio lock
  kFolioLock,          // PG_locked; nestable (migration locks many folios)
  kIMmapRwsem,         // address_space->i_mmap_rwsem
  kAnonVma,            // anon_vma->rwsem
  kMmuNotifier,        // mmu_notifier subscription list
  kMmuIntervalTree,    // the interval-tree state (subscriptions->lock of mm/mmu_notifier.c):
                       // taken inside the list's callbacks, never held across a driver's
                       // invalidate callback
  kDeviceMutex,        // a device driver's mutex over its page table (dmirror->mutex): taken
                       // in invalidate callbacks, which run under the rmap locks above
  kPageTable,          // page-table lock (ptl); nestable (src then dst in fork)
  kPagemapTree,        // the device private address space allocator
  kPagemapRegistry,    // the pgmap_array of physical pagemaps
  kResourceTree,       // resource_lock of iomem_resource
  kZone,               // zone->lock (buddy allocator)
  kMemmap,             // memmap sections
  kBackingStore,       // RAM backing store bookkeeping
  kLeaf,               // statistics and counters; never held while taking another lock
  kCount,
};

// True for ranks that may be held more than once by one thread.
constexpr bool lock_rank_nestable(LockRank r) {
  return r == LockRank::kFolioLock || r == LockRank::kPageTable;
}

const char* lock_rank_name(LockRank r);

namespace lock_rank {
// Records that the calling thread takes / drops a lock of rank `r`; aborts with both rank
// names on an order violation. Constant time: the thread keeps a count per rank, so `lock`
// only names the lock (the lock itself knows whether it is held). No-ops for kNone and in
// NDEBUG builds.
void on_acquire(LockRank r, const void* lock);
void on_release(LockRank r, const void* lock);
// A successful trylock: recorded (so locks taken under it are checked) but not checked itself,
// since a trylock cannot wait and so cannot deadlock.
void on_try_acquire(LockRank r, const void* lock);
// Number of ranked locks the calling thread holds (for tests and for asserting
// "no locks held" at blocking points).
int held_count();
}  // namespace lock_rank

}  // namespace dpmm
