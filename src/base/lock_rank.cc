#include "base/lock_rank.h"

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <vector>

namespace dpmm {

const char* lock_rank_name(LockRank r) {
  switch (r) {
    case LockRank::kNone: return "none";
    case LockRank::kMmapLock: return "mmap_lock";
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

// The ranked locks this thread holds, in acquisition order. Unbounded: migrate_vma may hold
// one folio lock per page of its range.
struct Entry {
  LockRank rank;
  const void* lock;
};
thread_local std::vector<Entry> t_held;

[[noreturn, maybe_unused]] void die(const char* what, LockRank a, LockRank b) {
  std::fprintf(stderr, "dpmm: lock order violation: %s (%s then %s)\n", what, lock_rank_name(a),
               lock_rank_name(b));
  std::abort();
}

[[maybe_unused]] void record(LockRank r, const void* lock) { t_held.push_back({r, lock}); }

}  // namespace

void on_acquire(LockRank r, const void* lock) {
#ifndef NDEBUG
  if (r == LockRank::kNone) return;
  for (const Entry& e : t_held) {
    const LockRank held = e.rank;
    if (held < r) continue;
    if (held == r && lock_rank_nestable(r)) continue;
    die("acquiring a lock of lower or equal rank", held, r);
  }
  record(r, lock);
#else
  (void)r;
  (void)lock;
#endif
}

void on_release(LockRank r, const void* lock) {
#ifndef NDEBUG
  if (r == LockRank::kNone) return;
  // Locks may be released out of order (hand-over-hand walks); find this one, newest first.
  for (auto it = t_held.rbegin(); it != t_held.rend(); ++it) {
    if (it->lock != lock) continue;
    t_held.erase(std::next(it).base());
    return;
  }
  die("releasing a lock that is not held", r, r);
#else
  (void)r;
  (void)lock;
#endif
}

void on_try_acquire(LockRank r, const void* lock) {
#ifndef NDEBUG
  if (r != LockRank::kNone) record(r, lock);
#else
  (void)r;
  (void)lock;
#endif
}

int held_count() { return static_cast<int>(t_held.size()); }

}  // namespace lock_rank
}  // namespace dpmm
