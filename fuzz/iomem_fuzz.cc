// libFuzzer target: /proc/iomem text. The parser must answer every input with a tree or an
// Error, and a tree it accepts must print and re-parse to the same text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "phys/iomem_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = dpmm::phys::parse_iomem(text);
  if (parsed.is_error()) return 0;
  const std::string printed = dpmm::phys::format_iomem(*parsed->tree);
  auto again = dpmm::phys::parse_iomem(printed);
  if (again.is_error() || dpmm::phys::format_iomem(*again->tree) != printed) std::abort();
  return 0;
}
