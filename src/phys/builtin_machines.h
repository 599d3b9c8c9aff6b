// Machines built into the binary: machines/*.toml at the repository root, embedded as text at
// build time (src/phys/CMakeLists.txt) and parsed on demand.
//
//   vm-43bit-pci-full   the seed's VM: a 64-bit PCI window fills the space above RAM up to
//                       2^43, so request_free_mem_region(80 GiB) fails with -ERANGE
//   x86-kaslr-err34     free space only above the KASLR direct-map end: 80 GiB fails with
//                       KASLR on (nvidia-uvm "err -34") and succeeds with it off
//   workstation-46bit   80 GiB succeeds below the KASLR direct-map end
//   arm64-server        arm64, RAM from 0x80000000, memstart_addr 0x80000000; the window is
//                       below the linear-map end after eeb8fdfcf090 and above it before
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "phys/machine.h"

namespace dpmm::phys {

std::vector<std::string> builtin_machine_names();
// ENOENT listing the names when there is no such machine.
Result<Machine> builtin_machine(std::string_view name);
// The embedded TOML text (ENOENT as above).
Result<std::string_view> builtin_machine_text(std::string_view name);

namespace detail {
struct BuiltinMachineText {
  const char* name;
  const char* toml;
};
const std::vector<BuiltinMachineText>& builtin_machine_texts();
}  // namespace detail

}  // namespace dpmm::phys
