// The bytes a workload writes and later expects: deterministic from (pattern, seed, offset), so
// a run can be repeated and a mismatch names what should have been there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "sim/scenario.h"

namespace dpmm::sim {

// Fills `out` with the pattern's bytes for buffer offsets [offset, offset + out.size()).
//   kIndex   the 32-bit little-endian word at byte offset 4*i holds i (hmm-tests' ptr[i] = i)
//   kRandom  splitmix64 of (seed, 8-byte word index), little-endian
//   kZero    zeros
// REQUIRES: offset and out.size() multiples of 8.
void fill_pattern(Pattern pattern, uint64_t seed, uint64_t offset, std::span<std::byte> out);

// splitmix64: a fast, well-mixed 64-bit generator step (Steele, Lea, Flood 2014).
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The first offset where `a` and `b` differ, or -1.
int64_t first_difference(std::span<const std::byte> a, std::span<const std::byte> b);

}  // namespace dpmm::sim
