#include "arch/swap_pte.h"

#include "base/bits.h"

namespace dpmm::arch {

Status check_swap_pte_leaf(const SwapPteField& field, EntryLevel level, Softleaf leaf,
                           SwpBit swp) {
  if (softleaf_is_none(leaf)) {
    return make_error(Errno::kEINVAL, "the none softleaf has no swap PTE (it would {})",
                      field.none_meaning);
  }
  TRY(softleaf_validate(leaf));
  if (!bits::fits(leaf.swp_offset(), field.offset_bits)) {
    return make_error(Errno::kERANGE, "swap offset {:#x} exceeds the {}-bit {} offset field",
                      leaf.swp_offset(), field.offset_bits, field.arch);
  }
  if (level != EntryLevel::kPmd) return ok();
  if (has(swp, SwpBit::kExclusive)) {
    return make_error(Errno::kEINVAL, "PMD swap entries have no exclusive bit");
  }
  if (!softleaf_is_migration(leaf) && !softleaf_is_device_private(leaf)) {
    return make_error(Errno::kEINVAL,
                      "a PMD holds only migration or device-private leaves, not {}",
                      softleaf_describe(leaf));
  }
  return ok();
}

}  // namespace dpmm::arch
