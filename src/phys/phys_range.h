// An inclusive range of physical addresses, as struct resource and struct range hold them.
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "base/types.h"

namespace dpmm::phys {

// [start, end], end inclusive (the kernel's convention: a range may end at 2^64 - 1).
struct PhysRange {
  PhysAddr start;
  PhysAddr end;

  // Bytes in the range; 0 stands for the full 2^64 (only [0, 2^64 - 1] has that size).
  constexpr uint64_t size() const { return end.raw() - start.raw() + 1; }
  constexpr bool contains(PhysAddr a) const { return a >= start && a <= end; }
  constexpr bool contains(const PhysRange& r) const { return r.start >= start && r.end <= end; }
  constexpr bool overlaps(const PhysRange& r) const { return start <= r.end && end >= r.start; }
  constexpr bool operator==(const PhysRange&) const = default;
};

}  // namespace dpmm::phys

template <>
struct fmt::formatter<dpmm::phys::PhysRange> : fmt::formatter<std::string_view> {
  // "[P0x100000000-P0x47fffffff]"
  auto format(const dpmm::phys::PhysRange& r, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "[{}-{}]", r.start, r.end);
  }
};
