// DecodedEntry: what any PTE or PMD word of either arch says, in arch-neutral terms.
// Produced by the per-arch decoders (pte_x86.h, pte_arm64.h) for every 64-bit word; a word the
// kernel could not have produced still decodes, and validate() says what is wrong with it.
#pragma once

#include <cstdint>
#include <string>

#include "arch/entry_bits.h"
#include "arch/softleaf.h"
#include "base/types.h"

namespace dpmm::arch {

struct DecodedEntry {
  enum class Kind : uint8_t {
    kNone,     // pte_none / pmd_none
    kPresent,  // pte_present / pmd_present leaf, PROT_NONE included
    kTable,    // a PMD pointing to a page of PTEs
    kSwap,     // neither: a softleaf with its software bits
  };

  Kind kind = Kind::kNone;
  EntryLevel level = EntryLevel::kPte;
  uint64_t raw = 0;

  // kPresent and kTable. For a PMD leaf the PFN of the first 4 KiB page of the 2 MiB page.
  Pfn pfn;
  // kPresent.
  Prot prot = Prot::kNone;
  bool hw_valid = false;    // the MMU would translate through it
  unsigned attr_index = 0;  // x86: PAT index (PAT<<2 | PCD<<1 | PWT); arm64: AttrIndx
  unsigned pkey = 0;        // x86: protection key bits 59..62; arm64: POIndex bits 60..62

  // kSwap.
  Softleaf leaf = Softleaf::none(SoftleafFormat{});
  SwpBit swp_bits = SwpBit::kNone;

  // kSwap conveniences: the type number, its kernel name, the raw offset field.
  unsigned swap_type() const { return leaf.swp_type(); }
  std::string swap_type_name() const {
    return type_name(leaf.format().swap_numbering(), leaf.swp_type());
  }
  uint64_t swap_offset() const { return leaf.swp_offset(); }
};

std::string_view kind_name(DecodedEntry::Kind k);  // "none", "present", "table", "swap"

// One line: "present pfn:0x1234 write|user|accessed", "table pfn:0x42",
// "swap SWP_DEVICE_WRITE pfn:0x12345 [exclusive]", "none".
std::string describe(const DecodedEntry& d);

}  // namespace dpmm::arch
