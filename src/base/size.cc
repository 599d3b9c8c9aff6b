#include "base/size.h"

#include <cctype>
#include <charconv>

namespace dpmm {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<unsigned> suffix_shift(std::string_view original, std::string_view suffix) {
  const std::string s = lower(suffix);
  if (s.empty() || s == "b") return 0u;
  static constexpr struct {
    char letter;
    unsigned shift;
  } kUnits[] = {{'k', 10}, {'m', 20}, {'g', 30}, {'t', 40}, {'p', 50}, {'e', 60}};
  for (const auto& u : kUnits) {
    if (s[0] != u.letter) continue;
    const std::string_view rest = std::string_view(s).substr(1);
    if (rest.empty() || rest == "b" || rest == "ib") return u.shift;
  }
  return make_error(Errno::kEINVAL, "size '{}': unknown unit '{}' (use K, M, G, T, P, KiB, MiB, ...)",
                    original, suffix);
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  std::string_view t = text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  if (t.empty()) return make_error(Errno::kEINVAL, "size is empty");

  int base = 10;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    t.remove_prefix(2);
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value, base);
  if (ec == std::errc::result_out_of_range) {
    return make_error(Errno::kEINVAL, "size '{}' does not fit in 64 bits", text);
  }
  if (ec != std::errc() || end == t.data()) {
    return make_error(Errno::kEINVAL, "size '{}' is not a number", text);
  }
  std::string_view suffix(end, static_cast<size_t>(t.data() + t.size() - end));
  while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  if (base == 16 && !suffix.empty()) {
    return make_error(Errno::kEINVAL, "size '{}': a hex size takes no unit", text);
  }
  if (!suffix.empty() && suffix.front() == '.') {
    return make_error(Errno::kEINVAL, "size '{}': fractions are not accepted", text);
  }
  const unsigned shift = TRY(suffix_shift(text, suffix));
  if (shift > 0 && value > (~uint64_t{0} >> shift)) {
    return make_error(Errno::kEINVAL, "size '{}' does not fit in 64 bits", text);
  }
  return value << shift;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  unsigned i = 0;
  while (i + 1 < std::size(kNames) && bytes >= (uint64_t{1} << (10 * (i + 1)))) ++i;
  if (i == 0) return fmt::format("{} B", bytes);
  const uint64_t unit = uint64_t{1} << (10 * i);
  if (bytes % unit == 0) return fmt::format("{} {}", bytes / unit, kNames[i]);
  return fmt::format("{:.1f} {}", static_cast<double>(bytes) / static_cast<double>(unit), kNames[i]);
}

}  // namespace dpmm
