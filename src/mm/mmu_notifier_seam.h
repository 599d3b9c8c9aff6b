// The MMU-notifier seam of phase 1 (include/linux/mmu_notifier.h).
//
// Every change the kernel brackets with mmu_notifier_invalidate_range_start/end goes through
// Mm::invalidate_range_start / invalidate_range_end with a MmuNotifierRange naming the event,
// the range and the owner; phase 1 calls them at the kernel's places (munmap: UNMAP, mprotect:
// PROTECTION_VMA, device-exclusive restore: CLEAR with no owner, COW: CLEAR, exit: RELEASE) and
// forwards them to one optional subscriber. Phase 2 replaces the subscriber with the real
// subscription list and interval notifiers (sequence counts, read_begin/read_retry, blockable
// rules).
#pragma once

#include <cstdint>
#include <string_view>

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

struct MmuNotifierRange {
  Mm* mm = nullptr;
  VirtAddr start;
  VirtAddr end;
  MmuNotifyEvent event = MmuNotifyEvent::kUnmap;
  const void* owner = nullptr;  // MMU_NOTIFY_MIGRATE / MMU_NOTIFY_EXCLUSIVE only
};

// The phase-1 subscriber: called with the caller's locks as the kernel holds them around
// invalidations (mmap_lock, never the page-table lock). Implementations must not take
// mmap_lock.
class MmuNotifierHook {
 public:
  virtual ~MmuNotifierHook() = default;
  virtual void invalidate_range_start(const MmuNotifierRange& range) = 0;
  virtual void invalidate_range_end(const MmuNotifierRange& range) = 0;
};

}  // namespace dpmm::mm
