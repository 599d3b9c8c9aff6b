#include "cli/output.h"

#include <cstdio>

#include <fmt/format.h>

#include "cli/command.h"

namespace dpmm::cli {

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

nlohmann::json error_json(const Error& e) {
  return {{"name", std::string(errno_name(e.code()))}, {"number", errno_neg(e.code())}};
}

void print_output(bool as_json, const nlohmann::json& json, const std::string& text) {
  if (as_json) {
    std::fputs(json.dump(2).c_str(), stdout);
    std::fputc('\n', stdout);
    return;
  }
  std::fputs(text.c_str(), stdout);
}

int fail_input(std::string_view where, const Error& e) {
  std::string msg = e.message();
  for (char& c : msg)
    if (c == '\n') c = ' ';  // the contract is one line
  if (where.empty()) {
    fmt::print(stderr, "dpmm: {}\n", msg);
  } else {
    fmt::print(stderr, "dpmm: {}: {}\n", where, msg);
  }
  return kExitBadInput;
}

}  // namespace dpmm::cli
