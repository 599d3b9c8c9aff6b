#include "mm/mmu_notifier.h"

#include <algorithm>

namespace dpmm::mm {

std::string_view mmu_notify_event_name(MmuNotifyEvent e) {
  switch (e) {
    case MmuNotifyEvent::kUnmap: return "MMU_NOTIFY_UNMAP";
    case MmuNotifyEvent::kClear: return "MMU_NOTIFY_CLEAR";
    case MmuNotifyEvent::kProtectionVma: return "MMU_NOTIFY_PROTECTION_VMA";
    case MmuNotifyEvent::kProtectionPage: return "MMU_NOTIFY_PROTECTION_PAGE";
    case MmuNotifyEvent::kSoftDirty: return "MMU_NOTIFY_SOFT_DIRTY";
    case MmuNotifyEvent::kRelease: return "MMU_NOTIFY_RELEASE";
    case MmuNotifyEvent::kMigrate: return "MMU_NOTIFY_MIGRATE";
    case MmuNotifyEvent::kExclusive: return "MMU_NOTIFY_EXCLUSIVE";
  }
  return "MMU_NOTIFY_?";
}

Status MmuNotifierSubscriptions::add(MmuNotifier& n, MmuNotifierKind kind) {
  WriteLocker guard(lock_);
  if (released_)
    return make_error(Errno::kEINVAL, "mmu_notifier_register on an mm that is exiting");
  for (const Entry& e : list_) {
    if (e.notifier == &n)
      return make_error(Errno::kEEXIST, "mmu_notifier_register: subscriber already registered");
  }
  list_.push_back(Entry{&n, kind});
  return ok();
}

Status MmuNotifierSubscriptions::remove(MmuNotifier& n) {
  // The write lock waits for every callback in flight (they hold the lock for read).
  WriteLocker guard(lock_);
  auto it = std::find_if(list_.begin(), list_.end(),
                         [&](const Entry& e) { return e.notifier == &n; });
  if (it == list_.end())
    return make_error(Errno::kENOENT, "mmu_notifier_unregister: subscriber not registered");
  list_.erase(it);
  return ok();
}

void MmuNotifierSubscriptions::invalidate_range_start(const MmuNotifierRange& range) {
  ReadLocker guard(lock_);
  for (const Entry& e : list_) e.notifier->invalidate_range_start(range);
}

void MmuNotifierSubscriptions::invalidate_range_end(const MmuNotifierRange& range) {
  ReadLocker guard(lock_);
  for (const Entry& e : list_) e.notifier->invalidate_range_end(range);
}

void MmuNotifierSubscriptions::release(Mm& mm) {
  {
    ReadLocker guard(lock_);
    for (const Entry& e : list_) e.notifier->release(mm);
  }
  WriteLocker guard(lock_);
  released_ = true;
  std::erase_if(list_, [](const Entry& e) { return e.kind == MmuNotifierKind::kSubscription; });
}

size_t MmuNotifierSubscriptions::size() {
  ReadLocker guard(lock_);
  return list_.size();
}

}  // namespace dpmm::mm
