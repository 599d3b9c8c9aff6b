#include "phys/phys_limit.h"

namespace dpmm::phys {

std::string_view limit_cause_name(LimitCause c) {
  switch (c) {
    case LimitCause::kPhysBits: return "phys_bits";
    case LimitCause::kKaslrDirectMapEnd: return "kaslr_direct_map_end";
    case LimitCause::kArm64LinearMapEnd: return "arm64_linear_map_end";
    case LimitCause::kMaxPhysmemBits: return "max_physmem_bits";
    case LimitCause::kIomemEnd: return "iomem_end";
  }
  return "?";
}

}  // namespace dpmm::phys
