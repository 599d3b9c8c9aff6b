// DeviceKernel: one simulated machine with device memory -- an mm::Kernel, the design's
// devmem::DeviceMemory on its node, and the device-private fault handler that joins them.
//
// The kernel's page-table entries use the design's swap numbering (dpas numbering, with the
// SWP_MIGRATION_DEVICE_* types, for dpas and dpas-zone), and its node has ZONE_DEVICE_PRIVATE
// for dpas-zone. The handler (device_fault_handler.h) is installed on the Kernel at creation,
// so the fault path, fork and zap reach device-private pages through DeviceMemory.
//
// Lifetime: destroy every Mm (Process) and unregister every pagemap before the DeviceKernel
// (asserted with a message). Destruction uninstalls the handler, then destroys DeviceMemory,
// then the Kernel.
//
// device_memory_of(kernel) gives code that holds only an Mm (migrate_vma_setup has args.vma
// and its mm) the design's page lookups, as the real kernel reaches them through globals.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "devmem/design.h"
#include "devmem/device_memory.h"
#include "mm/kernel.h"
#include "page/node.h"
#include "phys/machine.h"

namespace dpmm::migrate {

class DeviceFaultHandler;

struct DeviceKernelOptions {
  // As mm::KernelOptions::deferred_init: kNo gives exact free-page counts from the start.
  page::DeferredInit deferred_init = page::DeferredInit::kYes;
  // As mm::KernelOptions::cpu_device_ranges: physical ranges a coherent pagemap will cover,
  // given bytes so the CPU (and a driver's copy) can reach its pages.
  std::vector<phys::PhysRange> coherent_ranges;
};

class DeviceKernel {
 public:
  // mm::Kernel::create with the design's numbering and zone, then DeviceMemory::create, then
  // the handler installed. Errors: those of Kernel::create and DeviceMemory::create.
  static Result<std::unique_ptr<DeviceKernel>> create(phys::Machine machine,
                                                      devmem::Design design,
                                                      DeviceKernelOptions options = {});
  // create() on phys::builtin_machine(name): ENOENT listing the names for an unknown one.
  static Result<std::unique_ptr<DeviceKernel>> create_builtin(std::string_view machine_name,
                                                              devmem::Design design,
                                                              DeviceKernelOptions options = {});
  // REQUIRES: no Mm of this kernel left, no pagemap registered (asserted).
  ~DeviceKernel();
  DeviceKernel(const DeviceKernel&) = delete;
  DeviceKernel& operator=(const DeviceKernel&) = delete;

  mm::Kernel& kernel() { return *kernel_; }
  devmem::DeviceMemory& device_memory() { return *device_memory_; }
  devmem::Design design() const { return design_; }

 private:
  DeviceKernel(devmem::Design design, std::unique_ptr<mm::Kernel> kernel);

  devmem::Design design_;
  // Declaration order is destruction order reversed: the handler goes first, the kernel last.
  std::unique_ptr<mm::Kernel> kernel_;
  std::unique_ptr<devmem::DeviceMemory> device_memory_;
  std::unique_ptr<DeviceFaultHandler> handler_;
};

// The DeviceMemory behind `kernel`'s installed DeviceFaultHandler. REQUIRES (asserted): the
// kernel belongs to a DeviceKernel.
devmem::DeviceMemory& device_memory_of(mm::Kernel& kernel);
const devmem::DeviceMemory& device_memory_of(const mm::Kernel& kernel);

}  // namespace dpmm::migrate
