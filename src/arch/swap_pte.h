// What both arches require of a softleaf before they write it into a swap PTE or PMD
// (swp_entry_to_pte / swp_entry_to_pmd): a meaningful leaf whose offset fits the arch's field,
// and at PMD level only the leaves a PMD can hold (softleaf_from_pmd, pmd_is_valid_softleaf).
#pragma once

#include <string_view>

#include "arch/entry_bits.h"
#include "arch/softleaf.h"
#include "base/result.h"

namespace dpmm::arch {

struct SwapPteField {
  std::string_view arch;          // "x86" / "arm64", for messages
  unsigned offset_bits;           // width of the arch's swap-offset field
  std::string_view none_meaning;  // what an all-zero leaf would read back as on this arch
};

// EINVAL for the none leaf, an invalid leaf, an exclusive bit or a non-migration,
// non-device-private leaf at PMD level; ERANGE for an offset wider than the field.
Status check_swap_pte_leaf(const SwapPteField& field, EntryLevel level, Softleaf leaf,
                           SwpBit swp);

}  // namespace dpmm::arch
