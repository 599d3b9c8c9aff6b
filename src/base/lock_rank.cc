#include "base/lock_rank.h"

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace dpmm {

const char* lock_rank_name(LockRank r) {
  switch (r) {
    case LockRank::kNone: return "none";
    case LockRank::kMmapLock: return "mmap_lock";
    case LockRank::kHugetlbFaultMutex: return "hugetlb_fault_mutex";
    case LockRank::kFolioLock: return "folio_lock";
    case LockRank::kIMmapRwsem: return "i_mmap_rwsem";
    case LockRank::kAnonVma: return "anon_vma";
    case LockRank::kMmuNotifier: return "mmu_notifier";
    case LockRank::kMmuIntervalTree: return "mmu_interval_tree";
    case LockRank::kDeviceMutex: return "device_mutex";
    case LockRank::kPageTable: return "page_table";
    case LockRank::kPagemapTree: return "pagemap_tree";
    case LockRank::kPagemapRegistry: return "pagemap_registry";
    case LockRank::kResourceTree: return "resource_tree";
    case LockRank::kZone: return "zone";
    case LockRank::kMemmap: return "memmap";
    case LockRank::kBackingStore: return "backing_store";
    case LockRank::kLeaf: return "leaf";
    case LockRank::kCount: break;
  }
  return "?";
}

namespace lock_rank {

namespace {

// How many locks of each rank this thread holds. Counts, not a list of locks: migrate_vma
// holds one folio lock per page of its range (512 at a time), and a list made every acquire
// and release walk all of them. The order check needs only which ranks are held; what the
// counts cannot tell (which lock of a rank is released) the lock itself checks.
struct Held {
  std::array<uint32_t, static_cast<size_t>(LockRank::kCount)> count{};
  int total = 0;
};
thread_local Held t_held;

[[noreturn, maybe_unused]] void die(const char* what, LockRank a, LockRank b) {
  std::fprintf(stderr, "dpmm: lock order violation: %s (%s then %s)\n", what, lock_rank_name(a),
               lock_rank_name(b));
  std::abort();
}

[[maybe_unused]] void record(LockRank r) {
  t_held.count[static_cast<size_t>(r)]++;
  t_held.total++;
}

}  // namespace

void on_acquire(LockRank r, const void* lock) {
  (void)lock;
#ifndef NDEBUG
  if (r == LockRank::kNone) return;
  // Any held lock of a higher rank, or of the same rank unless it nests, is a violation.
  for (size_t i = static_cast<size_t>(LockRank::kCount); i-- > static_cast<size_t>(r);) {
    if (t_held.count[i] == 0) continue;
    const LockRank held = static_cast<LockRank>(i);
    if (held == r && lock_rank_nestable(r)) continue;
    die("acquiring a lock of lower or equal rank", held, r);
  }
  record(r);
#else
  (void)r;
#endif
}

void on_release(LockRank r, const void* lock) {
  (void)lock;
#ifndef NDEBUG
  if (r == LockRank::kNone) return;
  // Locks may be released out of order (hand-over-hand walks).
  uint32_t& n = t_held.count[static_cast<size_t>(r)];
  if (n == 0) die("releasing a lock that is not held", r, r);
  n--;
  t_held.total--;
#else
  (void)r;
#endif
}

void on_try_acquire(LockRank r, const void* lock) {
  (void)lock;
#ifndef NDEBUG
  if (r != LockRank::kNone) record(r);
#else
  (void)r;
#endif
}

int held_count() { return t_held.total; }

}  // namespace lock_rank
}  // namespace dpmm
