#include "arch/decoded_entry.h"

#include <fmt/format.h>

namespace dpmm::arch {

std::string_view kind_name(DecodedEntry::Kind k) {
  switch (k) {
    case DecodedEntry::Kind::kNone: return "none";
    case DecodedEntry::Kind::kPresent: return "present";
    case DecodedEntry::Kind::kTable: return "table";
    case DecodedEntry::Kind::kSwap: return "swap";
  }
  return "?";
}

std::string describe(const DecodedEntry& d) {
  switch (d.kind) {
    case DecodedEntry::Kind::kNone:
      return "none";
    case DecodedEntry::Kind::kTable:
      return fmt::format("table {}", d.pfn);
    case DecodedEntry::Kind::kPresent: {
      std::string s = fmt::format("present {} {}", d.pfn, prot_to_string(d.prot));
      if (!d.hw_valid) s += " (not valid to the MMU)";
      if (d.attr_index != 0) s += fmt::format(" attr {}", d.attr_index);
      if (d.pkey != 0) s += fmt::format(" pkey {}", d.pkey);
      return s;
    }
    case DecodedEntry::Kind::kSwap: {
      std::string s = fmt::format("swap {}", softleaf_describe(d.leaf));
      if (d.swp_bits != SwpBit::kNone) s += fmt::format(" [{}]", swp_bits_to_string(d.swp_bits));
      return s;
    }
  }
  return "?";
}

}  // namespace dpmm::arch
