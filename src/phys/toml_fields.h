// Typed reads of TOML values with messages that name the file, the line and the key, shared
// by every TOML schema dpmm reads (machines, scenarios).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "base/result.h"

namespace dpmm::phys {

// Where a key sits, for messages: "vm.toml:12" (just the source when the node has no line).
struct TomlCtx {
  std::string_view source;
  std::string where(const toml::node& n) const;
};

// "a string", "an integer", ... for messages.
std::string_view toml_type_name(const toml::node& n);
// EINVAL "<where>: key '<key>': expected <want>, got <type>".
Error toml_wrong_type(const TomlCtx& c, const std::string& key, const toml::node& n,
                      std::string_view want);

Result<std::string> get_string(const TomlCtx& c, const std::string& key, const toml::node& n);
Result<int64_t> get_int(const TomlCtx& c, const std::string& key, const toml::node& n);
Result<bool> get_bool(const TomlCtx& c, const std::string& key, const toml::node& n);
// A float, or an integer read as one.
Result<double> get_double(const TomlCtx& c, const std::string& key, const toml::node& n);
// An address or size: a non-negative integer, or parse_size() text ("64GiB", "0x1000").
Result<uint64_t> get_size(const TomlCtx& c, const std::string& key, const toml::node& n);

}  // namespace dpmm::phys
