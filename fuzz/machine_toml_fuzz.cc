// libFuzzer target: machine TOML text. Every input gives a Machine or an Error; a machine that
// loads answers the free-region questions without failing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "phys/machine_toml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // No base folder: an `iomem` key is refused rather than read from disk.
  auto m = dpmm::phys::parse_machine_toml(text, "fuzz.toml", "");
  if (m.is_error()) return 0;
  (void)m->free_region_limit();
  (void)m->free_region_analysis(uint64_t{80} << 30);
  (void)m->request_free_mem_region(uint64_t{80} << 30, "fuzz");
  return 0;
}
