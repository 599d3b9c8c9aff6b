// The highest physical address the free-region search may use, and what set it.
//
// get_free_mem_region() (kernel/resource.c) searches below min(base->end, LIMIT), where base is
// iomem_resource (end = 2^phys_bits - 1 on x86, arch/x86/kernel/setup.c) and LIMIT is
// DIRECT_MAP_PHYSMEM_END (include/linux/mm.h; x86 sets it in arch/x86/mm/kaslr.c, arm64 in
// arch/arm64/include/asm/memory.h). A failure report must say which of these bound the search.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/types.h"

namespace dpmm::phys {

enum class LimitCause : uint8_t {
  kPhysBits,           // iomem_resource.end = 2^phys_bits - 1 (x86 CPUID address sizes)
  kKaslrDirectMapEnd,  // x86 KASLR: the direct map trimmed to (ceil(RAM/1TiB) + padding) TiB
  kArm64LinearMapEnd,  // arm64 after eeb8fdfcf090: memstart_addr + 2^linear_map_bits - 1
  kMaxPhysmemBits,     // (1 << MAX_PHYSMEM_BITS) - 1: the generic DIRECT_MAP_PHYSMEM_END
  kIomemEnd,           // the end of the resource tree's root (a tree with no machine behind it)
};

std::string_view limit_cause_name(LimitCause c);  // "phys_bits", "kaslr_direct_map_end", ...

struct PhysLimit {
  PhysAddr end;         // inclusive
  LimitCause cause;
  std::string reason;   // in words, with the numbers that produced `end`
};

}  // namespace dpmm::phys
