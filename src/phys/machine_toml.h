// Machine descriptions in TOML.
//
// Schema (every key is checked; unknown keys are refused):
//
//   name             string   required
//   description      string   optional
//   arch             string   required: "x86_64" or "arm64" (parse_arch spellings)
//   paging           integer  x86_64 only, 4 (default) or 5 (LA57)
//   phys_bits        integer  required: CPU physical address bits, 32..52
//   kaslr            boolean  default true
//   kaslr_padding_tb integer  default 10 (CONFIG_RANDOMIZE_MEMORY_PHYSICAL_PADDING)
//   p2pdma           boolean  default false (CONFIG_PCI_P2PDMA)
//   memstart_addr    address  arm64 only, required there
//   arm64_physmem_end string  arm64 only: "after-fix" (default) or "before-fix" (eeb8fdfcf090)
//   iomem            string   a /proc/iomem dump, relative to the TOML file's folder; the
//                             alternative to the range tables below
//   [[ram]]          start, then end (inclusive) or size         -> "System RAM"
//   [[pci]]          start, end or size, name (default "PCI Bus 0000:00") -> a bridge window
//   [[reserved]]     start, end or size, name (default "Reserved")
//   [[resource]]     start, end or size, name (required); flags as /proc/iomem's name implies
//
// Addresses and sizes are integers or text that parse_size() reads ("0x100000000", "64GiB").
// Ranges are top-level resources: they must not overlap each other and must lie below
// 2^phys_bits. Errors are EINVAL naming the key (e.g. "ram[1].size") and the line.
#pragma once

#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "base/result.h"
#include "phys/machine.h"

namespace dpmm::phys {

// `source` names the text in messages; relative `iomem` paths resolve against `base_dir`
// (an empty base_dir refuses `iomem`, as for the built-in machines).
Result<Machine> parse_machine_toml(std::string_view text, std::string_view source,
                                   const std::string& base_dir);
// The same schema for a table that is already parsed (a scenario's inline [machine] table);
// messages name `source` and the table's own lines.
Result<Machine> parse_machine_table(const toml::table& table, std::string_view source,
                                    const std::string& base_dir);
Result<Machine> load_machine_file(const std::string& path);

}  // namespace dpmm::phys
