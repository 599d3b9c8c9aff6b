// Dmirror: the state of one open dmirror file (struct dmirror, lib/test_hmm.c) and the
// HMM_DMIRROR_* commands that run on it.
//
// It mirrors one process's address space (current->mm at open) into a device page table (pt,
// device_page_table.h) and keeps that table coherent through one MMU interval notifier over
// the whole address space [0, ULONG_MAX & PAGE_MASK). The invalidate callback ignores
// MMU_NOTIFY_MIGRATE ranges whose owner is this file's device (the device updates its own
// table while it migrates) and otherwise erases the entries of [start >> PAGE_SHIFT,
// end >> PAGE_SHIFT] -- inclusive of the page at `end`, as the kernel's xa_for_each_range is.
//
// Locking (kernel-baseline §10): mutex_ (dmirror->mutex, LockRank::kDeviceMutex) guards pt_
// and orders set_seq against read_retry. It is never held across hmm_range_fault,
// migrate_vma_setup, make_device_exclusive or anything else that can issue an invalidation
// (the callback takes it). Commands run on the caller's thread; several may run at once.
//
// The mm: a command that needs the mirrored mm takes it from the notifier (interval_sub->mm,
// null once the process is gone: mmget_not_zero failing).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "drivers/dmirror/device_page_table.h"
#include "drivers/dmirror/uapi.h"
#include "hmm/hmm_range_fault.h"
#include "hmm/mmu_interval_notifier.h"
#include "devmem/dev_pagemap.h"
#include "migrate/migrate_device.h"
#include "mm/fault.h"

namespace dpmm::mm {
class Process;
}  // namespace dpmm::mm

namespace dpmm::dmirror {

class DmirrorDevice;

// The 32-entry hmm_pfns arrays of dmirror_fault and dmirror_snapshot.
inline constexpr uint64_t kDmirrorFaultChunk = 32;
// HMM_RANGE_DEFAULT_TIMEOUT (ms): how long one range fault or snapshot keeps retrying.
inline constexpr uint64_t kHmmRangeDefaultTimeoutMs = 1000;

// Whether a device fault asks for write access.
enum class FaultWrite : bool { kNo, kYes };

class Dmirror final : public hmm::MmuIntervalNotifierOps {
 public:
  Dmirror(DmirrorDevice& mdevice, mm::Process& process);
  // REQUIRES: release() ran, or open() failed.
  ~Dmirror() override;
  Dmirror(const Dmirror&) = delete;
  Dmirror& operator=(const Dmirror&) = delete;

  // dmirror_fops_open's part: mmu_interval_notifier_insert over the whole address space.
  Status open();
  // dmirror_fops_release: remove the notifier, evict every chunk of the device, drop pt.
  void release();

  DmirrorDevice& mdevice() const { return mdevice_; }
  mm::Process& process() const { return process_; }
  Mutex& mutex() RETURN_CAPABILITY(mutex_) { return mutex_; }
  DevicePageTable& pt() REQUIRES(mutex_) { return pt_; }
  // A copy of pt (tests).
  DevicePageTable pt_snapshot() EXCLUDES(mutex_);
  hmm::MmuIntervalNotifier& notifier() { return notifier_; }

  // dmirror->flags (HMM_DMIRROR_FLAGS).
  void set_flags(uint64_t flags) { flags_.store(flags, std::memory_order_relaxed); }
  uint64_t flags() const { return flags_.load(std::memory_order_relaxed); }
  // Tests and clears HMM_DMIRROR_FLAG_FAIL_ALLOC: the one-shot allocation failure.
  bool take_fail_alloc() {
    return (flags_.fetch_and(~kHmmDmirrorFlagFailAlloc, std::memory_order_relaxed) &
            kHmmDmirrorFlagFailAlloc) != 0;
  }

  // ---- hmm::MmuIntervalNotifierOps: dmirror_interval_invalidate ----
  bool invalidate(hmm::MmuIntervalNotifier& sub, const mm::MmuNotifierRange& range,
                  uint64_t cur_seq) override;

  // ---- commands (0 or the errno the ioctl returns); `cmd` is updated in place ----
  Status read(HmmDmirrorCmd& cmd) EXCLUDES(mutex_);               // dmirror_read
  Status write(HmmDmirrorCmd& cmd) EXCLUDES(mutex_);              // dmirror_write
  Status migrate_to_device(HmmDmirrorCmd& cmd) EXCLUDES(mutex_);  // dmirror_migrate_to_device
  Status migrate_to_system(HmmDmirrorCmd& cmd) EXCLUDES(mutex_);  // dmirror_migrate_to_system
  Status snapshot(HmmDmirrorCmd& cmd) EXCLUDES(mutex_);           // dmirror_snapshot
  Status exclusive(HmmDmirrorCmd& cmd) EXCLUDES(mutex_);          // dmirror_exclusive
  Status check_atomic(VirtAddr start, VirtAddr end) EXCLUDES(mutex_);  // dmirror_check_atomic

  // dmirror_fault: fault [start, end) in with hmm_range_fault, 32 pages at a time, and map
  // the answers in pt.
  Status fault(VirtAddr start, VirtAddr end, FaultWrite write) EXCLUDES(mutex_);

  // dmirror_devmem_fault_alloc_and_copy: for migrate_vma args collected from this device,
  // allocate system pages, erase the device PT entries and copy the data back.
  // kHandled, or kOom (dst entries of the failed page zeroed, as the kernel leaves them).
  devmem::VmFaultCode devmem_fault_alloc_and_copy(migrate::MigrateVma& args) EXCLUDES(mutex_);

 private:
  // A bounce buffer (struct dmirror_bounce).
  // dmirror_bounce_init: the kernel's kvmalloc'd buffer is not zeroed, and neither is this
  // one (make_unique_for_overwrite); every byte is written before it is read, and its bytes
  // reach the caller only when the whole range was copied.
  struct Bounce {
    Bounce(VirtAddr start, uint64_t bytes)
        : addr(start), size(bytes), buf(std::make_unique_for_overwrite<std::byte[]>(bytes)) {}
    VirtAddr addr;
    uint64_t size;
    std::unique_ptr<std::byte[]> buf;
    uint64_t cpages = 0;
  };

  // The mirrored mm, or null once it is gone (mmget_not_zero).
  mm::Mm* mirrored_mm() const { return notifier_.mm(); }
  // dmirror_range_fault: the read_begin / hmm_range_fault / read_retry loop for one range,
  // then dmirror_do_fault under the mutex. EBUSY after HMM_RANGE_DEFAULT_TIMEOUT.
  Status range_fault(hmm::HmmRange& range) EXCLUDES(mutex_);
  // dmirror_do_fault.
  Status do_fault(const hmm::HmmRange& range) REQUIRES(mutex_);
  // dmirror_do_read / dmirror_do_write: copy between pt's pages and the bounce buffer from
  // `start`; ENOENT at the first page missing (or, for write, not tagged WRITE).
  Status do_read(VirtAddr start, VirtAddr end, Bounce& bounce) REQUIRES(mutex_);
  Status do_write(VirtAddr start, VirtAddr end, Bounce& bounce) REQUIRES(mutex_);
  // The verification read that ends MIGRATE_TO_DEV and EXCLUSIVE: pt -> bounce -> cmd.ptr.
  Status read_back(HmmDmirrorCmd& cmd, VirtAddr start, VirtAddr end) EXCLUDES(mutex_);
  // dmirror_migrate_alloc_and_copy.
  void migrate_alloc_and_copy(migrate::MigrateVma& args);
  // dmirror_migrate_finalize_and_map.
  void migrate_finalize_and_map(const migrate::MigrateVma& args) EXCLUDES(mutex_);
  // dmirror_atomic_map.
  void atomic_map(VirtAddr addr, page::Page* page) EXCLUDES(mutex_);
  // dmirror_range_snapshot: one <= 32-page chunk under a temporary interval notifier.
  Status range_snapshot(hmm::HmmRange& range, std::span<uint8_t> perm) EXCLUDES(mutex_);
  // dmirror_mkentry.
  uint8_t mkentry(const hmm::HmmRange& range, uint64_t entry) const;

  DmirrorDevice& mdevice_;
  mm::Process& process_;
  Mutex mutex_{LockRank::kDeviceMutex};
  DevicePageTable pt_ GUARDED_BY(mutex_);
  hmm::MmuIntervalNotifier notifier_;
  std::atomic<uint64_t> flags_{0};
};

}  // namespace dpmm::dmirror
