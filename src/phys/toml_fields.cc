#include "phys/toml_fields.h"

#include <fmt/format.h>

#include "base/size.h"

namespace dpmm::phys {

std::string TomlCtx::where(const toml::node& n) const {
  const auto& src = n.source();
  if (src.begin.line == 0) return std::string(source);
  return fmt::format("{}:{}", source, src.begin.line);
}

std::string_view toml_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "something";
}

Error toml_wrong_type(const TomlCtx& c, const std::string& key, const toml::node& n,
                      std::string_view want) {
  return make_error(Errno::kEINVAL, "{}: key '{}': expected {}, got {}", c.where(n), key, want,
                    toml_type_name(n));
}

Result<std::string> get_string(const TomlCtx& c, const std::string& key, const toml::node& n) {
  if (const auto* s = n.as_string()) return s->get();
  return toml_wrong_type(c, key, n, "a string");
}

Result<int64_t> get_int(const TomlCtx& c, const std::string& key, const toml::node& n) {
  if (const auto* i = n.as_integer()) return i->get();
  return toml_wrong_type(c, key, n, "an integer");
}

Result<bool> get_bool(const TomlCtx& c, const std::string& key, const toml::node& n) {
  if (const auto* b = n.as_boolean()) return b->get();
  return toml_wrong_type(c, key, n, "a boolean (true or false)");
}

Result<double> get_double(const TomlCtx& c, const std::string& key, const toml::node& n) {
  if (const auto* f = n.as_floating_point()) return f->get();
  if (const auto* i = n.as_integer()) return static_cast<double>(i->get());
  return toml_wrong_type(c, key, n, "a number");
}

Result<uint64_t> get_size(const TomlCtx& c, const std::string& key, const toml::node& n) {
  if (const auto* i = n.as_integer()) {
    if (i->get() < 0) {
      return make_error(Errno::kEINVAL, "{}: key '{}': {} is negative", c.where(n), key, i->get());
    }
    return static_cast<uint64_t>(i->get());
  }
  if (const auto* s = n.as_string()) {
    auto v = parse_size(s->get());
    if (v.is_error()) {
      return make_error(Errno::kEINVAL, "{}: key '{}': {}", c.where(n), key, v.error().message());
    }
    return *v;
  }
  return toml_wrong_type(c, key, n, "an integer or a size string such as \"64GiB\" or \"0x1000\"");
}

}  // namespace dpmm::phys
