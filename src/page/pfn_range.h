// A half-open range of page frames [start, end).
#pragma once

#include <fmt/format.h>

#include "base/types.h"

namespace dpmm::page {

struct PfnRange {
  Pfn start;
  Pfn end;  // exclusive

  constexpr PageCount pages() const { return end - start; }
  constexpr bool empty() const { return end <= start; }
  constexpr bool contains(Pfn p) const { return p >= start && p < end; }
  constexpr bool operator==(const PfnRange&) const = default;
};

}  // namespace dpmm::page

template <>
struct fmt::formatter<dpmm::page::PfnRange> : fmt::formatter<std::string_view> {
  auto format(const dpmm::page::PfnRange& r, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "[{}, {})", r.start, r.end);
  }
};
