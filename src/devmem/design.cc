#include "devmem/design.h"

namespace dpmm::devmem {

std::string_view design_name(Design d) {
  switch (d) {
    case Design::kLegacy:
      return "legacy";
    case Design::kDpas:
      return "dpas";
    case Design::kDpasZone:
      return "dpas-zone";
  }
  return "?";
}

Result<Design> parse_design(std::string_view text) {
  for (Design d : kAllDesigns) {
    if (design_name(d) == text) return d;
  }
  return make_error(Errno::kEINVAL, "unknown design '{}' (expected legacy, dpas or dpas-zone)",
                    text);
}

}  // namespace dpmm::devmem
