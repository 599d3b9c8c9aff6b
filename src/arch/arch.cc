#include "arch/arch.h"

namespace dpmm::arch {

static_assert(kPageShift == 12, "both modelled arches use 4 KiB base pages");

std::string_view arch_name(ArchKind a) {
  switch (a) {
    case ArchKind::kX86_64: return "x86_64";
    case ArchKind::kArm64: return "arm64";
  }
  return "?";
}

Result<ArchKind> parse_arch(std::string_view text) {
  if (text == "x86_64" || text == "x86-64" || text == "amd64") return ArchKind::kX86_64;
  if (text == "arm64" || text == "aarch64") return ArchKind::kArm64;
  return make_error(Errno::kEINVAL, "unknown arch '{}' (expected x86_64 or arm64)", text);
}

}  // namespace dpmm::arch
