// The small machines that tests of the layers above phys build their kernels on, so each
// test file says what it needs (architecture, RAM size) instead of carrying its own TOML.
// They are written as TOML and parsed, so every test kernel also goes through the parser that
// users' machine files do.
//
//   x86_64: 46-bit physical, RAM at 4 GiB (the 32-bit PCI hole below it, as on a PC)
//   arm64:  48-bit physical, RAM and memstart_addr at 2 GiB
// Neither has KASLR. With ReserveLow::kYes, x86_64's first 4 GiB is a reserved range in the
// resource tree (firmware and the PCI hole), so nothing can be placed there.
#pragma once

#include <cassert>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "arch/arch.h"
#include "base/result.h"
#include "phys/machine.h"
#include "phys/machine_toml.h"

namespace dpmm::phys::testing {

enum class ReserveLow : bool { kNo, kYes };

inline Machine small_machine(std::string_view name, arch::ArchKind arch, uint64_t ram_mib,
                             ReserveLow low = ReserveLow::kNo) {
  std::string toml;
  if (arch == arch::ArchKind::kX86_64) {
    toml = fmt::format("name = \"{}\"\narch = \"x86_64\"\nphys_bits = 46\nkaslr = false\n", name);
    if (low == ReserveLow::kYes) toml += "[[reserved]]\nstart = \"0x0\"\nsize = \"4GiB\"\n";
    toml += fmt::format("[[ram]]\nstart = \"0x100000000\"\nsize = \"{}MiB\"\n", ram_mib);
  } else {
    assert(low == ReserveLow::kNo && "ReserveLow is an x86_64 layout");
    toml = fmt::format(
        "name = \"{}\"\narch = \"arm64\"\nphys_bits = 48\nkaslr = false\n"
        "memstart_addr = \"0x80000000\"\n[[ram]]\nstart = \"0x80000000\"\nsize = \"{}MiB\"\n",
        name, ram_mib);
  }
  return MUST(parse_machine_toml(toml, name, ""), "test machine parses");
}

}  // namespace dpmm::phys::testing
