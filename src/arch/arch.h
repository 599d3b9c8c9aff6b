// The modelled architectures: sizes, physical-address limits and the vmemmap window.
//
// Both arches use 4 KiB base pages (base/types.h's kPageShift). Values come from
//   x86_64: arch/x86/include/asm/page_64_types.h, sparsemem.h, pgtable_64_types.h
//   arm64:  arch/arm64/include/asm/memory.h, sparsemem.h, pgtable-hwdef.h
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"
#include "base/types.h"

namespace dpmm::arch {

enum class ArchKind : uint8_t { kX86_64, kArm64 };

std::string_view arch_name(ArchKind a);  // "x86_64", "arm64"
// Accepts "x86_64"/"x86-64"/"amd64" and "arm64"/"aarch64"; EINVAL naming the text otherwise.
Result<ArchKind> parse_arch(std::string_view text);

struct ArchParams {
  ArchKind kind;
  unsigned page_table_levels;   // 4, or 5 for x86_64 with LA57
  unsigned pmd_shift;           // 21: a PMD leaf maps 2 MiB
  unsigned pud_shift;           // 30
  unsigned section_size_bits;   // SECTION_SIZE_BITS = PA_SECTION_SHIFT: 27 (128 MiB) on both
  unsigned max_physmem_bits;    // MAX_PHYSMEM_BITS: x86_64 46 (4-level) / 52 (5-level), arm64 48
  // arm64 only: VA_BITS_MIN - 1, the log2 size of the linear map (and so of what the vmemmap
  // can describe): 47 for 48-bit VA.
  unsigned linear_map_bits;

  constexpr uint64_t pmd_size() const { return uint64_t{1} << pmd_shift; }
  constexpr PageCount pages_per_pmd() const { return PageCount(pmd_size() >> kPageShift); }
  constexpr Order pmd_order() const { return Order(pmd_shift - kPageShift); }
  constexpr uint64_t section_size() const { return uint64_t{1} << section_size_bits; }
  constexpr PageCount pages_per_section() const {
    return PageCount(section_size() >> kPageShift);
  }
  // (1 << MAX_PHYSMEM_BITS) - 1: the generic DIRECT_MAP_PHYSMEM_END.
  constexpr PhysAddr max_physmem_end() const {
    return PhysAddr((uint64_t{1} << max_physmem_bits) - 1);
  }
};

enum class PagingMode : uint8_t { kFourLevel, kFiveLevel };

constexpr ArchParams x86_64_params(PagingMode mode = PagingMode::kFourLevel) {
  return ArchParams{
      .kind = ArchKind::kX86_64,
      .page_table_levels = mode == PagingMode::kFiveLevel ? 5u : 4u,
      .pmd_shift = 21,
      .pud_shift = 30,
      .section_size_bits = 27,
      .max_physmem_bits = mode == PagingMode::kFiveLevel ? 52u : 46u,
      .linear_map_bits = 0,
  };
}

constexpr ArchParams arm64_params() {
  return ArchParams{
      .kind = ArchKind::kArm64,
      .page_table_levels = 4,
      .pmd_shift = 21,
      .pud_shift = 30,
      .section_size_bits = 27,
      .max_physmem_bits = 48,
      .linear_map_bits = 47,
  };
}

constexpr ArchParams params_for(ArchKind k) {
  return k == ArchKind::kX86_64 ? x86_64_params() : arm64_params();
}

// The PFNs whose descriptors the vmemmap can hold, [start, end).
//  - x86_64: the vmemmap is sized for every PFN below 2^MAX_PHYSMEM_BITS.
//  - arm64: VMEMMAP_SIZE covers the linear map only (since 32697ff38287): PFNs of
//    [memstart_addr, memstart_addr + 2^linear_map_bits). A descriptor lookup outside it reads
//    past the end of the vmemmap region -- the seed's aarch64 problem.
struct VmemmapWindow {
  Pfn start;
  Pfn end;  // exclusive
  constexpr bool contains(Pfn p) const { return p >= start && p < end; }
};

constexpr VmemmapWindow vmemmap_window(const ArchParams& a, PhysAddr memstart_addr) {
  if (a.kind == ArchKind::kX86_64) {
    return VmemmapWindow{Pfn(0), Pfn(uint64_t{1} << (a.max_physmem_bits - kPageShift))};
  }
  const Pfn start = Pfn::from_phys(memstart_addr);
  return VmemmapWindow{start, start + PageCount(uint64_t{1} << (a.linear_map_bits - kPageShift))};
}

}  // namespace dpmm::arch
