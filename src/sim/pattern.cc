#include "sim/pattern.h"

#include <cassert>
#include <cstring>

namespace dpmm::sim {

void fill_pattern(Pattern pattern, uint64_t seed, uint64_t offset, std::span<std::byte> out) {
  assert(offset % 8 == 0 && out.size() % 8 == 0 && "patterns are written in 8-byte words");
  switch (pattern) {
    case Pattern::kZero:
      std::memset(out.data(), 0, out.size());
      return;
    case Pattern::kIndex:
      for (size_t i = 0; i < out.size(); i += 4) {
        const uint32_t v = static_cast<uint32_t>((offset + i) / 4);
        std::memcpy(out.data() + i, &v, 4);
      }
      return;
    case Pattern::kRandom:
      for (size_t i = 0; i < out.size(); i += 8) {
        const uint64_t v = splitmix64(seed * 0x100000001b3ull + (offset + i) / 8);
        std::memcpy(out.data() + i, &v, 8);
      }
      return;
  }
}

int64_t first_difference(std::span<const std::byte> a, std::span<const std::byte> b) {
  const size_t n = std::min(a.size(), b.size());
  if (std::memcmp(a.data(), b.data(), n) == 0) {
    return a.size() == b.size() ? -1 : static_cast<int64_t>(n);
  }
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace dpmm::sim
