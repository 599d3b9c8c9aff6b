// What every dpmm subcommand prints the same way: hex strings, errors, the text-or-JSON choice
// and the one-line bad-input message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace dpmm::cli {

// "0x1f"
std::string hex(uint64_t v);

// {"name": "ERANGE", "number": -34}
nlohmann::json error_json(const Error& e);

// Prints `json` (pretty, one object) when `as_json`, else `text` as it is.
void print_output(bool as_json, const nlohmann::json& json, const std::string& text);

// Prints "dpmm: WHERE: MESSAGE" (or "dpmm: MESSAGE" when `where` is empty) on one line to
// stderr and returns kExitBadInput.
int fail_input(std::string_view where, const Error& e);

}  // namespace dpmm::cli
