#include "arch/swap_numbering.h"

#include <array>
#include <charconv>
#include <utility>

#include <fmt/format.h>

namespace dpmm::arch {
namespace {

// Every special type of a numbering with its kernel name.
std::array<std::pair<std::optional<unsigned>, std::string_view>, 11> special_types(
    const SwapNumbering& n) {
  return {{
      {n.hwpoison, "SWP_HWPOISON"},
      {n.migration_read, "SWP_MIGRATION_READ"},
      {n.migration_read_exclusive, "SWP_MIGRATION_READ_EXCLUSIVE"},
      {n.migration_write, "SWP_MIGRATION_WRITE"},
      {n.device_write, "SWP_DEVICE_WRITE"},
      {n.device_read, "SWP_DEVICE_READ"},
      {n.device_exclusive, "SWP_DEVICE_EXCLUSIVE"},
      {n.migration_device_read, "SWP_MIGRATION_DEVICE_READ"},
      {n.migration_device_read_exclusive, "SWP_MIGRATION_DEVICE_READ_EXCLUSIVE"},
      {n.migration_device_write, "SWP_MIGRATION_DEVICE_WRITE"},
      {n.pte_marker, "SWP_PTE_MARKER"},
  }};
}

constexpr std::string_view kSwapfilePrefix = "swapfile:";

Result<unsigned> parse_number(std::string_view digits, std::string_view whole) {
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
    return make_error(Errno::kEINVAL, "'{}' is not a swap type name or number", whole);
  if (v >= kSwapTypeCount)
    return make_error(Errno::kEINVAL, "swap type {} does not fit the {}-bit type field", v,
                      kMaxSwapfilesShift);
  return v;
}

}  // namespace

std::string_view numbering_name(SwapNumberingKind k) {
  switch (k) {
    case SwapNumberingKind::kLegacy: return "legacy";
    case SwapNumberingKind::kDpas: return "dpas";
  }
  return "?";
}

Result<SwapNumberingKind> parse_numbering(std::string_view text) {
  if (text == "legacy") return SwapNumberingKind::kLegacy;
  if (text == "dpas" || text == "dpas-zone") return SwapNumberingKind::kDpas;
  return make_error(Errno::kEINVAL, "unknown design '{}' (expected legacy, dpas or dpas-zone)",
                    text);
}

std::string type_name(const SwapNumbering& n, unsigned type) {
  assert(type < kSwapTypeCount && "swap type wider than its 5-bit field");
  if (type < n.max_swapfiles) return fmt::format("{}{}", kSwapfilePrefix, type);
  for (const auto& [value, name] : special_types(n)) {
    if (value == type) return std::string(name);
  }
  // Unreachable: both numberings assign all 32 values (swap_numbering_test checks it).
  return fmt::format("SWP_TYPE_{}", type);
}

Result<unsigned> parse_type_name(const SwapNumbering& n, std::string_view text) {
  if (text.starts_with(kSwapfilePrefix)) {
    const unsigned v = TRY(parse_number(text.substr(kSwapfilePrefix.size()), text));
    if (v >= n.max_swapfiles)
      return make_error(Errno::kEINVAL, "'{}': the {} numbering has swap files 0..{} only",
                        text, numbering_name(n.kind), n.max_swapfiles - 1);
    return v;
  }
  if (!text.empty() && text.front() >= '0' && text.front() <= '9')
    return parse_number(text, text);
  for (const auto& [value, name] : special_types(n)) {
    if (name != text) continue;
    if (!value)
      return make_error(Errno::kEINVAL, "{} exists only in the dpas numbering, not in {}", text,
                        numbering_name(n.kind));
    return *value;
  }
  return make_error(Errno::kEINVAL, "'{}' is not a swap type name (e.g. SWP_DEVICE_WRITE)",
                    text);
}

}  // namespace dpmm::arch
