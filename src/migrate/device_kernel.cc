#include "migrate/device_kernel.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

#include "migrate/device_fault_handler.h"
#include "phys/builtin_machines.h"

namespace dpmm::migrate {

Result<std::unique_ptr<DeviceKernel>> DeviceKernel::create(phys::Machine machine,
                                                           devmem::Design design,
                                                           DeviceKernelOptions options) {
  mm::KernelOptions ko;
  ko.numbering = devmem::swap_numbering_kind(design);
  ko.deferred_init = options.deferred_init;
  ko.device_private_zone = devmem::device_private_zone(design);
  ko.cpu_device_ranges = options.coherent_ranges;
  std::unique_ptr<mm::Kernel> kernel = TRY(mm::Kernel::create(std::move(machine), ko));
  std::unique_ptr<DeviceKernel> dk(new DeviceKernel(design, std::move(kernel)));
  dk->device_memory_ =
      TRY(devmem::DeviceMemory::create(dk->kernel_->machine(), dk->kernel_->node(), design));
  dk->handler_ = std::make_unique<DeviceFaultHandler>(*dk->kernel_, *dk->device_memory_);
  dk->kernel_->set_device_private_handler(dk->handler_.get());
  return dk;
}

Result<std::unique_ptr<DeviceKernel>> DeviceKernel::create_builtin(std::string_view machine_name,
                                                                   devmem::Design design,
                                                                   DeviceKernelOptions options) {
  return create(TRY(phys::builtin_machine(machine_name)), design, options);
}

DeviceKernel::DeviceKernel(devmem::Design design, std::unique_ptr<mm::Kernel> kernel)
    : design_(design), kernel_(std::move(kernel)) {}

DeviceKernel::~DeviceKernel() {
  if (kernel_->nr_live_mms() != 0) {
    std::fprintf(stderr,
                 "dpmm: a DeviceKernel was destroyed while %d Mm(s) still use it: destroy every "
                 "Process/Mm first (their device-private entries need the handler)\n",
                 kernel_->nr_live_mms());
    std::abort();
  }
  if (device_memory_ != nullptr && device_memory_->nr_pagemaps() != 0) {
    std::fprintf(stderr,
                 "dpmm: a DeviceKernel was destroyed with %zu pagemap(s) registered: "
                 "unregister them first\n",
                 device_memory_->nr_pagemaps());
    std::abort();
  }
  if (handler_ != nullptr) kernel_->set_device_private_handler(nullptr);
  handler_.reset();
  device_memory_.reset();
  kernel_.reset();
}

devmem::DeviceMemory& device_memory_of(mm::Kernel& kernel) {
  auto* h = dynamic_cast<DeviceFaultHandler*>(kernel.device_private_handler());
  assert(h != nullptr &&
         "device_memory_of: this Kernel has no DeviceFaultHandler (build it with DeviceKernel)");
  return h->device_memory();
}

const devmem::DeviceMemory& device_memory_of(const mm::Kernel& kernel) {
  auto* h = dynamic_cast<DeviceFaultHandler*>(kernel.device_private_handler());
  assert(h != nullptr &&
         "device_memory_of: this Kernel has no DeviceFaultHandler (build it with DeviceKernel)");
  return h->device_memory();
}

}  // namespace dpmm::migrate
