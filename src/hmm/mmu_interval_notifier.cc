// The interval-tree half of mm/mmu_notifier.c: mn_itree_inv_start_range, mn_itree_invalidate,
// mn_itree_inv_end, mn_itree_release, mmu_interval_read_begin,
// __mmu_interval_notifier_insert, mmu_interval_notifier_remove.
#include "hmm/mmu_interval_notifier.h"

#include <cassert>
#include <cstdio>
#include <limits>
#include <map>
#include <vector>

#include "base/trace.h"

namespace dpmm::hmm {

// mm->notifier_subscriptions' interval-tree part: the tree, its sequence and the deferred
// list. See the header for the protocol.
class MmuIntervalTree final : public mm::MmuIntervalTreeSubscriber,
                              public std::enable_shared_from_this<MmuIntervalTree> {
 public:
  explicit MmuIntervalTree(mm::Mm& mm) : mm_(&mm) {}

  // ---- mm::MmuNotifier: every invalidation of the mm passes here ----
  void invalidate_range_start(const mm::MmuNotifierRange& range) override { invalidate(range); }
  void invalidate_range_end(const mm::MmuNotifierRange& range) override {
    (void)range;
    inv_end();
  }
  // mn_itree_release: MMU_NOTIFY_RELEASE over [0, ULONG_MAX) before exit unmaps anything.
  void release(mm::Mm& mm) override {
    mm::MmuNotifierRange range{&mm, VirtAddr(0), VirtAddr(std::numeric_limits<uint64_t>::max()),
                               mm::MmuNotifyEvent::kRelease, nullptr,
                               mm::MmuNotifierRangeFlags::kBlockable};
    invalidate(range);
    inv_end();
  }
  void mm_gone() override {
    MutexLocker guard(lock_);
    mm_ = nullptr;
  }

  mm::Mm* mm() const {
    MutexLocker guard(lock_);
    return mm_;
  }

  // __mmu_interval_notifier_insert, after the caller set the subscription's range and ops.
  void insert(MmuIntervalNotifier& sub) EXCLUDES(lock_) {
    MutexLocker guard(lock_);
    if (active_invalidate_ranges_ != 0) {
      // Some invalidation is running: assume it covers the new range too.
      if (is_invalidating_locked()) {
        sub.deferred_ = true;
        deferred_.push_back(&sub);
      } else {
        invalidate_seq_ |= 1;
        tree_insert_locked(sub);
      }
      sub.invalidate_seq_.store(invalidate_seq_, std::memory_order_relaxed);
      return;
    }
    assert(!is_invalidating_locked() && "odd sequence with no invalidation running");
    // Odd, different from the mm's (even) seq, and far from what it will wrap to.
    sub.invalidate_seq_.store(invalidate_seq_ - 1, std::memory_order_relaxed);
    tree_insert_locked(sub);
  }

  // mmu_interval_notifier_remove's tree part.
  void remove(MmuIntervalNotifier& sub) EXCLUDES(lock_) {
    uint64_t seq = 0;
    {
      MutexLocker guard(lock_);
      if (is_invalidating_locked()) {
        if (!sub.in_tree_) {
          // Inserted while this invalidation ran and still on the deferred list: drop it.
          assert(sub.deferred_ && "a subscription neither in the tree nor deferred");
          std::erase(deferred_, &sub);
          sub.deferred_ = false;
        } else {
          // The tree may not change now: queue the removal for the last end and wait for it.
          sub.deferred_ = true;
          deferred_.push_back(&sub);
          seq = invalidate_seq_;
        }
      } else {
        assert(sub.in_tree_ && "removing a subscription that is not in the tree");
        tree_erase_locked(sub);
      }
      // Once the invalidation ends (seq changes) the subscription is off the tree and no
      // callback holds it.
      while (seq != 0 && invalidate_seq_ == seq) wq_.wait(lock_);
    }
  }

  // mmu_interval_read_begin.
  uint64_t read_begin(const MmuIntervalNotifier& sub) EXCLUDES(lock_) {
    MutexLocker guard(lock_);
    // Pairs with the release store in set_seq; the driver lock orders the rest.
    const uint64_t seq = sub.invalidate_seq_.load(std::memory_order_acquire);
    // Equal to the mm's odd seq: an invalidation that covers this subscription is between
    // start and end. Sleep until its end makes the seq even.
    while (seq == invalidate_seq_) wq_.wait(lock_);
    return seq;
  }

 private:
  bool is_invalidating_locked() const REQUIRES(lock_) { return (invalidate_seq_ & 1) != 0; }

  void tree_insert_locked(MmuIntervalNotifier& sub) REQUIRES(lock_) {
    assert(!sub.in_tree_ && "inserted twice into the interval tree");
    tree_.emplace(sub.start_, &sub);
    sub.in_tree_ = true;
  }
  void tree_erase_locked(MmuIntervalNotifier& sub) REQUIRES(lock_) {
    auto [lo, hi] = tree_.equal_range(sub.start_);
    for (auto it = lo; it != hi; ++it) {
      if (it->second == &sub) {
        tree_.erase(it);
        sub.in_tree_ = false;
        return;
      }
    }
    assert(false && "subscription missing from the interval tree");
  }

  // mn_itree_inv_start_range: counts the invalidation and, if any subscription overlaps
  // [start, end - 1], makes the seq odd and returns those subscriptions (the tree cannot
  // change until the matching end, so this list is what iterating the tree would give).
  std::vector<MmuIntervalNotifier*> inv_start_range(const mm::MmuNotifierRange& range,
                                                    uint64_t& cur_seq) EXCLUDES(lock_) {
    std::vector<MmuIntervalNotifier*> hits;
    MutexLocker guard(lock_);
    ++active_invalidate_ranges_;
    const uint64_t first = range.start.raw();
    const uint64_t last = range.end.raw() - 1;
    for (auto it = tree_.begin(); it != tree_.end() && it->first <= last; ++it) {
      if (it->second->last_ >= first) hits.push_back(it->second);
    }
    if (!hits.empty()) invalidate_seq_ |= 1;
    cur_seq = invalidate_seq_;
    return hits;
  }

  // mn_itree_invalidate. Every range dpmm issues is blockable, so a callback returning false
  // is the driver's bug (the kernel WARNs and continues).
  void invalidate(const mm::MmuNotifierRange& range) EXCLUDES(lock_) {
    assert(range.end > range.start && "empty invalidation range");
    uint64_t cur_seq = 0;
    for (MmuIntervalNotifier* sub : inv_start_range(range, cur_seq)) {
      TraceScope trace("mmu_interval_invalidate", TraceCategory::kNotifier,
                       (range.end - range.start) >> kPageShift);
      const bool ok = sub->ops_->invalidate(*sub, range, cur_seq);
      if (!ok && range.blockable())
        std::fprintf(stderr, "dpmm: WARNING: interval notifier refused a blockable range\n");
    }
  }

  // mn_itree_inv_end: the last end of overlapping invalidations makes the seq even, applies
  // the deferred inserts and removes, and wakes read_begin / remove sleepers.
  void inv_end() EXCLUDES(lock_) {
    MutexLocker guard(lock_);
    assert(active_invalidate_ranges_ > 0 && "invalidate_range_end without a start");
    if (--active_invalidate_ranges_ != 0 || !is_invalidating_locked()) return;
    ++invalidate_seq_;
    for (MmuIntervalNotifier* sub : deferred_) {
      sub->deferred_ = false;
      if (!sub->in_tree_) {
        tree_insert_locked(*sub);
      } else {
        tree_erase_locked(*sub);
      }
    }
    deferred_.clear();
    wq_.notify_all();
  }

  mutable Mutex lock_{LockRank::kMmuIntervalTree};
  CondVar wq_;
  mm::Mm* mm_ GUARDED_BY(lock_);
  // subscriptions->invalidate_seq: starts at 2 (even: idle).
  uint64_t invalidate_seq_ GUARDED_BY(lock_) = 2;
  uint64_t active_invalidate_ranges_ GUARDED_BY(lock_) = 0;
  // The interval tree, keyed by interval start (a sorted multimap scanned for overlaps; the
  // kernel's augmented rbtree answers the same query faster).
  std::multimap<uint64_t, MmuIntervalNotifier*> tree_ GUARDED_BY(lock_);
  std::vector<MmuIntervalNotifier*> deferred_ GUARDED_BY(lock_);
};

MmuIntervalNotifier::MmuIntervalNotifier() = default;

MmuIntervalNotifier::~MmuIntervalNotifier() {
  assert(tree_ == nullptr && "an interval notifier destroyed while still inserted");
}

namespace {

Result<uint64_t> interval_last(VirtAddr start, uint64_t length) {
  uint64_t last = 0;
  if (length == 0 || __builtin_add_overflow(start.raw(), length - 1, &last)) {
    return make_error(Errno::kEOVERFLOW,
                      "mmu_interval_notifier_insert: [{:#x} + {:#x}) is empty or overflows",
                      start.raw(), length);
  }
  return last;
}

// mmu_notifier_register(NULL, mm): the mm's tree, created and registered on first use.
// EINVAL once the mm is exiting.
Result<std::shared_ptr<MmuIntervalTree>> get_or_create_tree(mm::Mm& mm)
    REQUIRES(mm.mmap_lock()) {
  std::shared_ptr<mm::MmuIntervalTreeSubscriber> sub = TRY(mm.interval_tree_subscriber(
      [&mm] { return std::make_shared<MmuIntervalTree>(mm); }));
  return std::static_pointer_cast<MmuIntervalTree>(sub);
}

}  // namespace

void MmuIntervalNotifier::insert_into(std::shared_ptr<MmuIntervalTree> tree, VirtAddr start,
                                      uint64_t last, MmuIntervalNotifierOps& ops) {
  tree_ = std::move(tree);
  ops_ = &ops;
  start_ = start.raw();
  last_ = last;
  tree_->insert(*this);
}

Status MmuIntervalNotifier::insert(mm::Mm& mm, VirtAddr start, uint64_t length,
                                   MmuIntervalNotifierOps& ops) {
  if (tree_ != nullptr)
    return make_error(Errno::kEINVAL, "mmu_interval_notifier_insert: already inserted");
  const uint64_t last = TRY(interval_last(start, length));
  // An mm that has its tree already needs no mmap_lock (insert may run while an invalidation
  // of the mm holds it); the first insert registers the tree under mmap_lock for write.
  if (mm::MmuIntervalTreeSubscriber* t = mm.interval_tree_subscriber_if_any()) {
    insert_into(static_cast<MmuIntervalTree*>(t)->shared_from_this(), start, last, ops);
    return ok();
  }
  std::shared_ptr<MmuIntervalTree> tree;
  {
    WriteLocker guard(mm.mmap_lock());
    tree = TRY(get_or_create_tree(mm));
  }
  insert_into(std::move(tree), start, last, ops);
  return ok();
}

Status MmuIntervalNotifier::insert_locked(mm::Mm& mm, VirtAddr start, uint64_t length,
                                          MmuIntervalNotifierOps& ops) {
  if (tree_ != nullptr)
    return make_error(Errno::kEINVAL, "mmu_interval_notifier_insert: already inserted");
  const uint64_t last = TRY(interval_last(start, length));
  insert_into(TRY(get_or_create_tree(mm)), start, last, ops);
  return ok();
}

void MmuIntervalNotifier::remove() {
  assert(tree_ != nullptr && "mmu_interval_notifier_remove without insert");
  // Keep the tree alive through the wait (the kernel's mmgrab until mmdrop here).
  std::shared_ptr<MmuIntervalTree> tree = tree_;
  tree->remove(*this);
  tree_.reset();
  ops_ = nullptr;
}

uint64_t MmuIntervalNotifier::read_begin() {
  assert(tree_ != nullptr && "mmu_interval_read_begin on a notifier not inserted");
  return tree_->read_begin(*this);
}

mm::Mm* MmuIntervalNotifier::mm() const { return tree_ != nullptr ? tree_->mm() : nullptr; }

}  // namespace dpmm::hmm
