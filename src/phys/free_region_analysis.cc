#include "phys/free_region_analysis.h"

#include <cassert>

#include <fmt/format.h>

#include "base/bits.h"
#include "base/size.h"

namespace dpmm::phys {

namespace {

// Smallest x >= v with x ≡ phase (mod align); nullopt if it does not fit 64 bits.
std::optional<uint64_t> up_to_phase(uint64_t v, uint64_t phase, uint64_t align) {
  const uint64_t r = (phase - v) & (align - 1);
  if (v + r < v) return std::nullopt;
  return v + r;
}

// The largest window [a, t] inside the free range `g` whose start a and end + 1 lie on the
// phase, with a > align and a >= base_start.
std::optional<PhysRange> window_in(const PhysRange& g, uint64_t phase, uint64_t align,
                                   uint64_t base_start) {
  uint64_t lo = g.start.raw();
  if (lo < base_start) lo = base_start;
  if (lo <= align) lo = align + 1;
  if (lo > g.end.raw()) return std::nullopt;
  const auto a = up_to_phase(lo, phase, align);
  if (!a) return std::nullopt;
  // Largest t <= g.end with t + 1 on the phase; computed in 128 bits since g.end + 1 may be
  // 2^64.
  using U128 = unsigned __int128;
  const U128 end_excl = U128(g.end.raw()) + 1;
  const U128 top_excl = end_excl - ((end_excl - phase) & (align - 1));
  if (top_excl <= *a) return std::nullopt;
  return PhysRange{PhysAddr(*a), PhysAddr(static_cast<uint64_t>(top_excl - 1))};
}

void keep_larger(std::optional<PhysRange>& best, const PhysRange& r) {
  if (!best || r.size() > best->size()) best = r;
}

// Free ranges of [lo, hi] not touched by any of `used` (sorted, disjoint).
template <typename F>
void for_each_gap(std::span<const PhysRange> used, uint64_t lo, uint64_t hi, F&& f) {
  if (lo > hi) return;
  uint64_t cursor = lo;  // first address not yet known to be used
  for (const PhysRange& u : used) {
    if (u.end.raw() < cursor) continue;
    if (u.start.raw() > hi) break;
    if (u.start.raw() > cursor) f(PhysRange{PhysAddr(cursor), PhysAddr(u.start.raw() - 1)});
    if (u.end.raw() >= hi) return;
    cursor = u.end.raw() + 1;
  }
  f(PhysRange{PhysAddr(cursor), PhysAddr(hi)});
}

std::string range_words(const std::optional<PhysRange>& r) {
  if (!r) return "none";
  // A full 2^64 range has size() == 0; print it as 16 EiB.
  const std::string sz = r->size() == 0 ? std::string("16 EiB") : format_size(r->size());
  return fmt::format("{} at {}", sz, *r);
}

}  // namespace

FreeRegionAnalysis analyze_free_region(std::span<const PhysRange> top_level, PhysRange base,
                                       uint64_t size, uint64_t align, const PhysLimit& limit) {
  assert(bits::is_pow2(align) && "GFR alignment must be a power of two");
  FreeRegionAnalysis a;
  a.size = size;
  a.align = align;
  a.base = base;
  a.limit = limit;
  a.search_end = std::min(base.end, limit.end);
  const uint64_t phase = (a.search_end.raw() + 1) & (align - 1);

  for_each_gap(top_level, base.start.raw(), a.search_end.raw(), [&](const PhysRange& g) {
    keep_larger(a.largest_gap, g);
    if (auto w = window_in(g, phase, align, base.start.raw())) keep_larger(a.largest_window, *w);
  });
  if (a.search_end < base.end) {
    for_each_gap(top_level, a.search_end.raw() + 1, base.end.raw(),
                 [&](const PhysRange& g) { keep_larger(a.largest_gap_above_limit, g); });
  }
  return a;
}

std::string FreeRegionAnalysis::describe() const {
  std::string out = fmt::format("search limit {} ({}: {})", search_end,
                                limit_cause_name(limit.cause), limit.reason);
  if (search_end < limit.end) {
    out += fmt::format("; the resource root ends lower, at {}", base.end);
  }
  out += fmt::format("; largest free {}-aligned window below the limit: {}", format_size(align),
                     range_words(largest_window));
  out += fmt::format("; largest free gap below the limit: {}", range_words(largest_gap));
  if (largest_gap_above_limit) {
    out += fmt::format("; above the limit (never searched): {}",
                       range_words(largest_gap_above_limit));
  }
  return out;
}

}  // namespace dpmm::phys
