// HMM_DMIRROR_EXCLUSIVE (lib/test_hmm.c dmirror_exclusive, dmirror_atomic_map): make each page
// of the range device-exclusive and map it in the device page table for atomics (tag ATOMIC),
// then read the range back from the device page table for verification.
#include "drivers/dmirror/dmirror_device.h"
#include "drivers/dmirror/mirror.h"
#include "hmm/device_exclusive.h"
#include "page/folio_lock.h"

namespace dpmm::dmirror {

void Dmirror::atomic_map(VirtAddr addr, page::Page* page) {
  MutexLocker g(mutex_);
  pt_.store(addr.raw() >> kPageShift, DptEntry{page, DptTag::kAtomic});
}

Status Dmirror::exclusive(HmmDmirrorCmd& cmd) {
  const uint64_t size = cmd.npages << kPageShift;
  const VirtAddr start(cmd.addr);
  const VirtAddr end(cmd.addr + size);
  if (end < start) return make_error(Errno::kEINVAL, "range wraps");
  mm::Mm* mm = mirrored_mm();
  if (mm == nullptr) return make_error(Errno::kEINVAL, "the mirrored process is gone");

  {
    ReadLocker l(mm->mmap_lock());
    for (VirtAddr addr = start; addr < end; addr += kPageSize) {
      // Owner NULL: this device's own MMU_NOTIFY_EXCLUSIVE range erases the old pt entry
      // before the atomic one goes in (kernel-baseline §7).
      hmm::DeviceExclusive ex = TRY(hmm::make_device_exclusive(*mm, addr, nullptr));
      atomic_map(addr, ex.page);
      page::folio_unlock(ex.folio);
      page::folio_put(ex.folio);
    }
  }
  return read_back(cmd, start, end);
}

}  // namespace dpmm::dmirror
