#include "mm/test_machine.h"

#include "phys/test_machine.h"

namespace dpmm::mm::testing {

std::unique_ptr<Kernel> make_test_kernel(arch::SwapNumberingKind numbering, arch::ArchKind arch,
                                         ThpPolicy thp, UseHugeZeroPage huge_zero) {
  phys::Machine m = phys::testing::small_machine("mm-test", arch, 256);
  KernelOptions options;
  options.numbering = numbering;
  options.deferred_init = page::DeferredInit::kNo;
  options.transparent_hugepage = thp;
  options.use_zero_page = huge_zero;
  return MUST(Kernel::create(std::move(m), options), "test kernel builds");
}

}  // namespace dpmm::mm::testing
