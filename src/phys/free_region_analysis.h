// Why get_free_mem_region() found (or would find) no window: the gaps between the top-level
// resources below the search limit, measured the way the search steps through them.
//
// The descending search (kernel/resource.c gfr_start/gfr_continue/gfr_next) tries windows
// [a, a + size - 1] with a = end - size + 1 - k * align, end = min(base->end, LIMIT), so every
// candidate start is congruent to end + 1 modulo align, and only candidates with a > align and
// a >= base->start are tried. "Aligned" below means aligned to that phase.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "phys/phys_limit.h"
#include "phys/phys_range.h"

namespace dpmm::phys {

struct FreeRegionAnalysis {
  uint64_t size = 0;             // the request, rounded up to align (0: no size given)
  uint64_t align = 0;            // GFR_DEFAULT_ALIGN: the section size
  PhysRange base;                // the resource searched in (iomem_resource)
  PhysLimit limit;               // the machine's LIMIT and its cause
  PhysAddr search_end;           // min(base.end, limit.end)
  // Largest free range of [base.start, search_end] (no top-level resource touches it).
  std::optional<PhysRange> largest_gap;
  // Largest window the search could return: inside a free range, start and end + 1 on the
  // search's phase, start > align. A request of at most its size succeeds.
  std::optional<PhysRange> largest_window;
  // Largest free range of (search_end, base.end]: space the search never looks at.
  std::optional<PhysRange> largest_gap_above_limit;

  uint64_t largest_window_size() const { return largest_window ? largest_window->size() : 0; }
  // Several lines in words: the limit and its cause, the gaps with ranges and sizes.
  std::string describe() const;
};

// `top_level` are the direct children of `base`, sorted by start and disjoint (as a resource
// tree keeps them). REQUIRES: align is a power of two.
FreeRegionAnalysis analyze_free_region(std::span<const PhysRange> top_level, PhysRange base,
                                       uint64_t size, uint64_t align, const PhysLimit& limit);

}  // namespace dpmm::phys
