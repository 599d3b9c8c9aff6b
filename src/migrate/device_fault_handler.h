// DeviceFaultHandler: the mm::DevicePrivateFaultHandler (mm/device_private.h) that a
// DeviceKernel installs on its Kernel.
//
//   softleaf_to_page  DeviceMemory::device_private_entry_to_page: device-private entries and
//                     (dpas) migration device-private entries, PFN or offset by design;
//                     null when the entry names no registered page.
//   migrate_to_ram    page_pgmap(vmf.page)->ops()->migrate_to_ram(vmf) (do_swap_page,
//                     mm/memory.c), its vm_fault_t mapped to an mm::FaultResult:
//                     0 -> kHandled, VM_FAULT_OOM -> kOom, VM_FAULT_SIGBUS -> kSigBus,
//                     VM_FAULT_RETRY -> kRetry.
//   migrate_longterm_unpinnable
//                     migrate_device_coherent_folio (GUP FOLL_LONGTERM): consumes the caller's
//                     reference whatever the outcome; EBUSY when the folio stays.
// Called as the mm layer documents: mmap_lock held for read, no page-table lock, vmf.page
// locked and referenced by the caller.
#pragma once

#include "devmem/dev_pagemap.h"
#include "devmem/device_memory.h"
#include "mm/device_private.h"
#include "mm/fault.h"

namespace dpmm::migrate {

class DeviceFaultHandler final : public mm::DevicePrivateFaultHandler {
 public:
  DeviceFaultHandler(mm::Kernel& kernel, devmem::DeviceMemory& dm) : kernel_(kernel), dm_(dm) {}

  page::Page* softleaf_to_page(arch::Softleaf entry) override;
  mm::FaultResult migrate_to_ram(mm::VmFault& vmf) override;
  Status migrate_longterm_unpinnable(page::Folio folio) override;
  // devmem::zone_device_private_split_cb.
  void folio_split(page::Folio orig, std::optional<page::Folio> tail) override;

  devmem::DeviceMemory& device_memory() const { return dm_; }

 private:
  mm::Kernel& kernel_;
  devmem::DeviceMemory& dm_;
};

// vm_fault_t (the subset migrate_to_ram returns) -> mm::FaultResult.
mm::FaultResult vm_fault_to_fault_result(devmem::VmFaultCode code);

}  // namespace dpmm::migrate
