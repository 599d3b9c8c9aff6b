#include "phys/builtin_machines.h"

#include <fmt/format.h>

#include "phys/machine_toml.h"

namespace dpmm::phys {

std::vector<std::string> builtin_machine_names() {
  std::vector<std::string> out;
  for (const auto& m : detail::builtin_machine_texts()) out.emplace_back(m.name);
  return out;
}

Result<std::string_view> builtin_machine_text(std::string_view name) {
  for (const auto& m : detail::builtin_machine_texts()) {
    if (name == m.name) return std::string_view(m.toml);
  }
  return make_error(Errno::kENOENT, "no built-in machine '{}' (built in: {})", name,
                    fmt::join(builtin_machine_names(), ", "));
}

Result<Machine> builtin_machine(std::string_view name) {
  const std::string_view text = TRY(builtin_machine_text(name));
  return parse_machine_toml(text, fmt::format("builtin:{}", name), /*base_dir=*/"");
}

}  // namespace dpmm::phys
