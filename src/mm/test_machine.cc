#include "mm/test_machine.h"

#include "phys/machine_toml.h"

namespace dpmm::mm::testing {
namespace {

constexpr const char* kX86Toml = R"(
name = "mm-test-x86"
arch = "x86_64"
phys_bits = 46
kaslr = false
[[ram]]
start = "0x100000000"
size = "256MiB"
)";

constexpr const char* kArmToml = R"(
name = "mm-test-arm64"
arch = "arm64"
phys_bits = 48
kaslr = false
memstart_addr = "0x80000000"
[[ram]]
start = "0x80000000"
size = "256MiB"
)";

}  // namespace

std::unique_ptr<Kernel> make_test_kernel(arch::SwapNumberingKind numbering, arch::ArchKind arch,
                                         ThpPolicy thp, UseHugeZeroPage huge_zero) {
  const char* text = arch == arch::ArchKind::kX86_64 ? kX86Toml : kArmToml;
  phys::Machine m = MUST(phys::parse_machine_toml(text, "mm-test", ""), "test machine parses");
  KernelOptions options;
  options.numbering = numbering;
  options.deferred_init = page::DeferredInit::kNo;
  options.transparent_hugepage = thp;
  options.use_zero_page = huge_zero;
  return MUST(Kernel::create(std::move(m), options), "test kernel builds");
}

}  // namespace dpmm::mm::testing
