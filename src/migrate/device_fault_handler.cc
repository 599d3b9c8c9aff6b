#include "migrate/device_fault_handler.h"

#include <cassert>

#include "base/trace.h"
#include "devmem/dev_pagemap.h"

#include "migrate/migrate_device.h"

namespace dpmm::migrate {

mm::FaultResult vm_fault_to_fault_result(devmem::VmFaultCode code) {
  switch (code) {
    case devmem::VmFaultCode::kHandled:
      return mm::FaultResult::handled();
    case devmem::VmFaultCode::kOom:
      return {mm::FaultOutcome::kOom, "migrate_to_ram: VM_FAULT_OOM"};
    case devmem::VmFaultCode::kSigBus:
      return {mm::FaultOutcome::kSigBus, "migrate_to_ram: VM_FAULT_SIGBUS"};
    case devmem::VmFaultCode::kRetry:
      return {mm::FaultOutcome::kRetry, "migrate_to_ram: VM_FAULT_RETRY"};
  }
  assert(false && "unknown VmFaultCode");
  return {mm::FaultOutcome::kSigBus, "migrate_to_ram: unknown vm_fault_t"};
}

page::Page* DeviceFaultHandler::softleaf_to_page(arch::Softleaf entry) {
  Result<page::Page*> page = dm_.device_private_entry_to_page(entry);
  return page.is_ok() ? *page : nullptr;
}

mm::FaultResult DeviceFaultHandler::migrate_to_ram(mm::VmFault& vmf) {
  assert(vmf.page != nullptr && devmem::is_device_private_page(vmf.page) &&
         "migrate_to_ram of a page that is not device-private");
  devmem::DevPagemap* pgmap = devmem::page_pgmap(vmf.page);
  TraceScope trace("migrate_to_ram", TraceCategory::kFault, 1);
  return vm_fault_to_fault_result(pgmap->ops()->migrate_to_ram(vmf));
}

void DeviceFaultHandler::folio_split(page::Folio orig, std::optional<page::Folio> tail) {
  devmem::zone_device_private_split_cb(orig, tail);
}

Status DeviceFaultHandler::migrate_longterm_unpinnable(page::Folio folio) {
  assert(devmem::folio_is_device_coherent(folio) &&
         "migrate_longterm_unpinnable of a folio that is not device-coherent");
  return migrate_device_coherent_folio(kernel_, folio);
}

}  // namespace dpmm::migrate
