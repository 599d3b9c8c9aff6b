// MMU interval notifiers (include/linux/mmu_notifier.h, mm/mmu_notifier.c, the interval-tree
// half): a driver subscribes to one range of an mm and hears every invalidation that touches
// it, and reads the CPU page tables under a collision-retry sequence instead of a lock.
//
// Driver protocol (Documentation/mm/hmm.rst; kernel-baseline §6, §7):
//
//   again:
//     seq = sub.read_begin();               // sleeps while an invalidation of sub runs
//     { ReadLocker l(mm.mmap_lock()); r = hmm_range_fault(mm, range); }
//     if (r is EBUSY) goto again;
//     lock(driver->mutex);
//     if (sub.read_retry(seq)) { unlock; goto again; }
//     program the device page table from range.hmm_pfns
//     unlock(driver->mutex);
//
//   ops.invalidate(sub, range, cur_seq):    // may sleep only if range.blockable()
//     lock(driver->mutex)  (trylock and return false when !blockable)
//     sub.set_seq(cur_seq);
//     tear down device mappings of [range.start, range.end)
//     unlock(driver->mutex); return true;
//
// Sequence protocol (per mm, the interval-tree subscriber):
//   - the mm's invalidate_seq is even while idle; an invalidation that finds a subscription in
//     its range makes it odd (seq |= 1) and hands that odd value to every invalidate callback
//     as cur_seq; the last end of overlapping invalidations makes it even again (seq++) and
//     wakes read_begin sleepers;
//   - a subscription's own invalidate_seq is odd, set by set_seq(cur_seq); read_begin returns
//     it, sleeping first if it equals the mm's current (odd) seq, i.e. an invalidation of this
//     subscription is still between start and end; read_retry(seq) is true once set_seq stored
//     another value (an invalidation ran since read_begin);
//   - while any invalidation is running with the mm's seq odd, the interval tree does not
//     change: insert and remove are deferred to the last end (the kernel's deferred list).
//
// Locking: the interval-tree state has its own mutex (LockRank::kMmuIntervalTree), taken only
// for short critical sections and never held across ops.invalidate, which runs with the mm's
// notifier list lock (kMmuNotifier) held for read and may take a driver mutex
// (kDeviceMutex). read_retry, check_retry and set_seq take no lock: their ordering comes from
// the driver's mutex (read_retry, set_seq) or is a hint (check_retry).
//
// Lifetime: the per-mm state is created by the first insert on an mm and lives as long as the
// mm or any subscription on it (the kernel's mmgrab in insert): remove() after the mm is gone
// is fine and mm() then answers null. exit runs MMU_NOTIFY_RELEASE over the whole address
// space through the interval tree before anything is unmapped (mn_itree_release), then the
// exit UNMAP range.
#pragma once

#include <atomic>
#include <cassert>
#include <cstdint>
#include <memory>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "mm/mm.h"
#include "mm/mmu_notifier.h"

namespace dpmm::hmm {

class MmuIntervalNotifier;
class MmuIntervalTree;

// struct mmu_interval_notifier_ops.
class MmuIntervalNotifierOps {
 public:
  virtual ~MmuIntervalNotifierOps() = default;
  // Called for every invalidation overlapping the subscription, with cur_seq (odd). Return
  // false only when !range.blockable() and the driver lock is contended (dpmm issues only
  // blockable ranges, so false is a bug there: the kernel WARNs and carries on). Must call
  // sub.set_seq(cur_seq) under the lock that guards read_retry. Must not insert or remove
  // subscriptions of this mm, nor take mmap_lock.
  virtual bool invalidate(MmuIntervalNotifier& sub, const mm::MmuNotifierRange& range,
                          uint64_t cur_seq) = 0;
};

// struct mmu_interval_notifier.
class MmuIntervalNotifier {
 public:
  MmuIntervalNotifier();
  // REQUIRES: not inserted (removed, or never inserted). Asserted.
  ~MmuIntervalNotifier();
  MmuIntervalNotifier(const MmuIntervalNotifier&) = delete;
  MmuIntervalNotifier& operator=(const MmuIntervalNotifier&) = delete;

  // mmu_interval_notifier_insert: subscribe to [start, start + length) of `mm`. Takes mmap_lock
  // for write only the first time an mm gets a subscription (mmu_notifier_register(NULL, mm)),
  // as the kernel does; later inserts take no mmap_lock. When an invalidation is in progress
  // the subscription joins the tree at its end; callers must use read_begin / read_retry
  // before trusting any reading anyway.
  //   EOVERFLOW  length 0, or start + length - 1 overflows (the kernel's check_add_overflow)
  //   EINVAL     the mm is exiting (mm_users is zero), or this notifier is already inserted
  Status insert(mm::Mm& mm, VirtAddr start, uint64_t length, MmuIntervalNotifierOps& ops)
      EXCLUDES(mm.mmap_lock());
  // mmu_interval_notifier_insert_locked: the same with mmap_lock already held for write.
  Status insert_locked(mm::Mm& mm, VirtAddr start, uint64_t length,
                       MmuIntervalNotifierOps& ops) REQUIRES(mm.mmap_lock());
  // mmu_interval_notifier_remove: once it returns no callback into this subscription runs or
  // will run. Waits for an invalidation of the mm that is running right now to end. Must not be
  // called from an invalidate callback. REQUIRES: inserted.
  void remove();

  // mmu_interval_read_begin: the sequence to pass to read_retry. Sleeps while an invalidation
  // that has already called (or will call) this subscription's invalidate is running.
  // REQUIRES: inserted. May sleep: hold no lock an invalidate callback takes.
  uint64_t read_begin();
  // mmu_interval_read_retry: true if an invalidation of this subscription ran (set_seq) since
  // read_begin returned `seq`. Call under the driver lock that set_seq runs under.
  bool read_retry(uint64_t seq) const {
    return invalidate_seq_.load(std::memory_order_relaxed) != seq;
  }
  // mmu_interval_check_retry: the same, as an unlocked hint (true is reliable, false is not).
  bool check_retry(uint64_t seq) const {
    return invalidate_seq_.load(std::memory_order_acquire) != seq;
  }
  // mmu_interval_set_seq: from ops.invalidate, under the driver lock, with its cur_seq.
  void set_seq(uint64_t cur_seq) {
    assert((cur_seq & 1) != 0 && "cur_seq handed to invalidate is always odd");
    invalidate_seq_.store(cur_seq, std::memory_order_release);
  }

  // interval_sub->mm: the mm this subscription was inserted on, or null once that mm has been
  // destroyed (the kernel's mm stays allocated through mmgrab; a driver gets a live one with
  // mmget_not_zero, which a null here stands for).
  mm::Mm* mm() const;
  VirtAddr start() const { return VirtAddr(start_); }
  // The last byte covered (interval_tree.last, inclusive).
  VirtAddr last() const { return VirtAddr(last_); }
  bool is_inserted() const { return tree_ != nullptr; }

 private:
  friend class MmuIntervalTree;

  void insert_into(std::shared_ptr<MmuIntervalTree> tree, VirtAddr start, uint64_t last,
                   MmuIntervalNotifierOps& ops);

  // The per-mm tree this subscription belongs to; set by insert, cleared by remove.
  std::shared_ptr<MmuIntervalTree> tree_;
  MmuIntervalNotifierOps* ops_ = nullptr;
  uint64_t start_ = 0;
  uint64_t last_ = 0;  // inclusive
  // interval_sub->invalidate_seq: odd once set; written by set_seq and insert.
  std::atomic<uint64_t> invalidate_seq_{0};
  // Guarded by the tree's mutex: in the interval tree (!RB_EMPTY_NODE) and on the deferred
  // list (hlist_unhashed is false).
  bool in_tree_ = false;
  bool deferred_ = false;
};

}  // namespace dpmm::hmm
