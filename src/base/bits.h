// Bit-field helpers for hardware words: masks and field extract/insert by bit position.
#pragma once

#include <cassert>
#include <cstdint>

namespace dpmm::bits {

// Mask of bits [lo, hi] inclusive.
constexpr uint64_t mask(unsigned lo, unsigned hi) {
  assert(lo <= hi && hi < 64 && "bad bit range");
  const uint64_t width = hi - lo + 1;
  return (width == 64 ? ~uint64_t{0} : ((uint64_t{1} << width) - 1)) << lo;
}
constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }
// Mask of the low `n` bits (n may be 64).
constexpr uint64_t low_mask(unsigned n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }

constexpr uint64_t extract(uint64_t word, unsigned lo, unsigned hi) {
  return (word & mask(lo, hi)) >> lo;
}
constexpr uint64_t insert(uint64_t word, unsigned lo, unsigned hi, uint64_t value) {
  assert((value << lo & ~mask(lo, hi)) == 0 && "value does not fit the field");
  return (word & ~mask(lo, hi)) | (value << lo);
}
constexpr bool fits(uint64_t value, unsigned nbits) { return (value & ~low_mask(nbits)) == 0; }

constexpr uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }
constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
constexpr bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace dpmm::bits
