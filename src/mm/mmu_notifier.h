// MMU notifiers (include/linux/mmu_notifier.h, mm/mmu_notifier.c): secondary MMUs (device
// page tables, KVM) hear about every change to a process's page tables.
//
// Every change the kernel brackets with mmu_notifier_invalidate_range_start/end goes through
// Mm::invalidate_range_start / invalidate_range_end with a MmuNotifierRange naming the event,
// the range, the flags and the owner:
//   munmap              MMU_NOTIFY_UNMAP           (do_vmi_munmap -> unmap_region)
//   exit                release() of every subscriber first (mmu_notifier_release), then
//                       MMU_NOTIFY_UNMAP over everything (exit_mmap -> unmap_vmas)
//   mprotect            MMU_NOTIFY_PROTECTION_VMA  (change_protection)
//   fork                MMU_NOTIFY_PROTECTION_PAGE over each copied COW VMA of the parent
//                       (copy_page_range)
//   COW break           MMU_NOTIFY_CLEAR           (wp_page_copy)
//   device-exclusive    MMU_NOTIFY_CLEAR, no owner (remove_device_exclusive_entry)
//   restore
//   migration           MMU_NOTIFY_MIGRATE with the pgmap owner (migrate_vma_collect; later)
//   make_device_excl.   MMU_NOTIFY_EXCLUSIVE with the caller's owner (later)
//
// Subscribers (MmuNotifier) are called without the page-table lock and may sleep: they may take
// their own mutex (LockRank::kDeviceMutex), never mmap_lock or a page-table lock. Every range
// the mm layer issues is blockable (mmu_notifier_invalidate_range_start sets
// MMU_NOTIFIER_RANGE_BLOCKABLE; only the OOM reaper's _nonblock variant does not, and dpmm has
// no OOM reaper), so start cannot fail here.
//
// Registration against concurrent invalidations (the kernel's mm_take_all_locks + SRCU):
//   - register takes mmap_lock for write and the anon_vma lock for write, which every
//     invalidation of the mm runs under (mmap_lock for its own mm's paths, the anon_vma lock
//     for rmap walks from another mm), so a new subscriber never sees an end without its start;
//   - the subscriber list has its own RwLock (LockRank::kMmuNotifier), held for read across the
//     callbacks of one start or end, and for write by register and unregister; so unregister
//     returns only after every callback into the subscriber has returned (synchronize_srcu),
//     and no call reaches it afterwards. A subscriber removed between a start and its end
//     misses that end, as in the kernel. Callbacks must not register or unregister.
//
// Interval notifiers (mmu_interval_notifier) are left to the hmm layer. It builds them as one
// MmuNotifier of kind kIntervalTree that owns the interval tree and filters by range: such a
// subscriber stays registered through release() (the kernel keeps the interval tree when
// mmu_notifier_release empties the subscription list), so it also hears exit's UNMAP range.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"

namespace dpmm::mm {

class Mm;

// enum mmu_notifier_event.
enum class MmuNotifyEvent : uint8_t {
  kUnmap,
  kClear,
  kProtectionVma,
  kProtectionPage,
  kSoftDirty,
  kRelease,
  kMigrate,
  kExclusive,
};
std::string_view mmu_notify_event_name(MmuNotifyEvent e);  // "MMU_NOTIFY_UNMAP", ...

// MMU_NOTIFIER_RANGE_BLOCKABLE.
enum class MmuNotifierRangeFlags : uint8_t { kNone = 0, kBlockable = 1 };

// struct mmu_notifier_range.
struct MmuNotifierRange {
  Mm* mm = nullptr;
  VirtAddr start;
  VirtAddr end;
  MmuNotifyEvent event = MmuNotifyEvent::kUnmap;
  const void* owner = nullptr;  // MMU_NOTIFY_MIGRATE / MMU_NOTIFY_EXCLUSIVE only
  MmuNotifierRangeFlags flags = MmuNotifierRangeFlags::kBlockable;

  // mmu_notifier_range_blockable.
  bool blockable() const { return flags == MmuNotifierRangeFlags::kBlockable; }
};

// struct mmu_notifier with its mmu_notifier_ops. Every callback has an empty default.
class MmuNotifier {
 public:
  virtual ~MmuNotifier() = default;
  // ops->invalidate_range_start: after it returns the subscriber must not use translations of
  // [start, end) until the matching end.
  virtual void invalidate_range_start(const MmuNotifierRange& range) { (void)range; }
  // ops->invalidate_range_end: the change is done and visible.
  virtual void invalidate_range_end(const MmuNotifierRange& range) { (void)range; }
  // ops->release: the mm is going away (exit_mmap); stop using it.
  virtual void release(Mm& mm) { (void)mm; }
};

// What happens to a subscription at release (see the header comment).
enum class MmuNotifierKind : uint8_t {
  kSubscription,  // a struct mmu_notifier: dropped after its release() call
  kIntervalTree,  // the hmm layer's interval-tree subscriber: kept until unregistered
};

// The hmm layer's interval-tree subscriber (mm->notifier_subscriptions with has_itree,
// hmm/mmu_interval_notifier.h): registered as kIntervalTree by Mm::interval_tree_subscriber and
// owned jointly by the mm and the interval notifiers inserted on it (the kernel's mmgrab keeps
// the mm_struct for them). ~Mm calls mm_gone() after exit's last invalidation; no callback and
// no Mm access follows.
class MmuIntervalTreeSubscriber : public MmuNotifier {
 public:
  virtual void mm_gone() = 0;
};

// mm->notifier_subscriptions: the per-mm list. Mm owns one; the locking the header comment
// describes is split between Mm (mmap_lock and the anon_vma lock) and this class (the list).
class MmuNotifierSubscriptions {
 public:
  MmuNotifierSubscriptions() = default;
  MmuNotifierSubscriptions(const MmuNotifierSubscriptions&) = delete;
  MmuNotifierSubscriptions& operator=(const MmuNotifierSubscriptions&) = delete;

  // EEXIST when `n` is already registered; EINVAL after release().
  Status add(MmuNotifier& n, MmuNotifierKind kind) EXCLUDES(lock_);
  // ENOENT when `n` is not registered (or was dropped by release()).
  Status remove(MmuNotifier& n) EXCLUDES(lock_);
  void invalidate_range_start(const MmuNotifierRange& range) EXCLUDES(lock_);
  void invalidate_range_end(const MmuNotifierRange& range) EXCLUDES(lock_);
  // mmu_notifier_release: calls release(mm) on every subscriber, then drops the
  // kSubscription ones.
  void release(Mm& mm) EXCLUDES(lock_);
  size_t size() EXCLUDES(lock_);

 private:
  struct Entry {
    MmuNotifier* notifier;
    MmuNotifierKind kind;
  };
  RwLock lock_{LockRank::kMmuNotifier};
  std::vector<Entry> list_ GUARDED_BY(lock_);
  bool released_ GUARDED_BY(lock_) = false;
};

}  // namespace dpmm::mm
