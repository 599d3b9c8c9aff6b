// Byte sizes as users write them: "8GiB", "80G", "512MiB", "4k", "0x200000000", "4096".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace dpmm {

// Parses a size. Suffixes are binary (K/KiB/KB = 1024, M, G, T, P; case-insensitive; an
// optional trailing "B"); a 0x prefix reads hex. Refuses empty text, unknown suffixes,
// fractional values and anything that overflows 64 bits, with EINVAL naming the text.
Result<uint64_t> parse_size(std::string_view text);

// "80 GiB", "128 MiB", "1.5 GiB", "4097 B": exact binary units when the size divides, one
// decimal otherwise.
std::string format_size(uint64_t bytes);

}  // namespace dpmm
