// The swap-type numbering: which of the 32 values of a swap entry's 5-bit type field name real
// swap files and which name the special entries (hwpoison, migration, device, PTE marker).
//
// Every value is computed from the kernel's formulas (include/linux/swap.h), with
// CONFIG_DEVICE_PRIVATE, CONFIG_MIGRATION and CONFIG_MEMORY_FAILURE on and PTE markers always
// compiled in (since 6.2):
//   MAX_SWAPFILES = 2^MAX_SWAPFILES_SHIFT - DEVICE_NUM - MIGRATION_NUM - HWPOISON_NUM
//                   - PTE_MARKER_NUM
//   HWPOISON            = MAX_SWAPFILES
//   MIGRATION_READ      = MAX_SWAPFILES + HWPOISON_NUM  (+1 READ_EXCLUSIVE, +2 WRITE)
//   DEVICE_WRITE        = MAX_SWAPFILES + HWPOISON_NUM + MIGRATION_NUM  (+1 READ, +2 EXCLUSIVE)
//   MIGRATION_DEVICE_*  = the same base +3 READ, +4 READ_EXCLUSIVE, +5 WRITE  (dpas only)
//   PTE_MARKER          = MAX_SWAPFILES + HWPOISON_NUM + MIGRATION_NUM + DEVICE_NUM
//
//   legacy: today's kernel since the device-exclusive rework (~6.15): DEVICE_NUM 3,
//           MAX_SWAPFILES 24.
//   dpas:   the 2026 series, patch 7 "mm: Add a new swap type for migration entries of device
//           private pages": DEVICE_NUM 6, MAX_SWAPFILES 21.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace dpmm::arch {

enum class SwapNumberingKind : uint8_t { kLegacy, kDpas };

std::string_view numbering_name(SwapNumberingKind k);  // "legacy", "dpas"
// Accepts "legacy", "dpas" and "dpas-zone" (which numbers swap types as dpas does).
Result<SwapNumberingKind> parse_numbering(std::string_view text);

inline constexpr unsigned kMaxSwapfilesShift = 5;          // MAX_SWAPFILES_SHIFT
inline constexpr unsigned kSwapTypeCount = 1u << kMaxSwapfilesShift;

struct SwapNumbering {
  SwapNumberingKind kind;
  unsigned device_num;      // SWP_DEVICE_NUM
  unsigned migration_num;   // SWP_MIGRATION_NUM
  unsigned hwpoison_num;    // SWP_HWPOISON_NUM
  unsigned pte_marker_num;  // SWP_PTE_MARKER_NUM
  unsigned max_swapfiles;   // MAX_SWAPFILES
  unsigned hwpoison;
  unsigned migration_read;
  unsigned migration_read_exclusive;
  unsigned migration_write;
  unsigned device_write;
  unsigned device_read;
  unsigned device_exclusive;
  // Present only in the dpas numbering.
  std::optional<unsigned> migration_device_read;
  std::optional<unsigned> migration_device_read_exclusive;
  std::optional<unsigned> migration_device_write;
  unsigned pte_marker;

  static constexpr SwapNumbering compute(SwapNumberingKind kind) {
    const unsigned device_num = kind == SwapNumberingKind::kDpas ? 6 : 3;
    const unsigned migration_num = 3, hwpoison_num = 1, pte_marker_num = 1;
    const unsigned max = kSwapTypeCount - device_num - migration_num - hwpoison_num -
                         pte_marker_num;
    const unsigned dev_base = max + hwpoison_num + migration_num;
    SwapNumbering n{
        .kind = kind,
        .device_num = device_num,
        .migration_num = migration_num,
        .hwpoison_num = hwpoison_num,
        .pte_marker_num = pte_marker_num,
        .max_swapfiles = max,
        .hwpoison = max,
        .migration_read = max + hwpoison_num,
        .migration_read_exclusive = max + hwpoison_num + 1,
        .migration_write = max + hwpoison_num + 2,
        .device_write = dev_base,
        .device_read = dev_base + 1,
        .device_exclusive = dev_base + 2,
        .migration_device_read = std::nullopt,
        .migration_device_read_exclusive = std::nullopt,
        .migration_device_write = std::nullopt,
        .pte_marker = dev_base + device_num,
    };
    if (kind == SwapNumberingKind::kDpas) {
      n.migration_device_read = dev_base + 3;
      n.migration_device_read_exclusive = dev_base + 4;
      n.migration_device_write = dev_base + 5;
    }
    return n;
  }
};

inline constexpr SwapNumbering kLegacyNumbering =
    SwapNumbering::compute(SwapNumberingKind::kLegacy);
inline constexpr SwapNumbering kDpasNumbering = SwapNumbering::compute(SwapNumberingKind::kDpas);

// Both numberings spend all 32 type values; the last is always the PTE marker.
static_assert(kLegacyNumbering.pte_marker == kSwapTypeCount - 1);
static_assert(kDpasNumbering.pte_marker == kSwapTypeCount - 1);

constexpr const SwapNumbering& swap_numbering(SwapNumberingKind k) {
  return k == SwapNumberingKind::kDpas ? kDpasNumbering : kLegacyNumbering;
}

// The kernel's name for a type value: "SWP_DEVICE_WRITE", "SWP_MIGRATION_DEVICE_READ", ...;
// a real swap file is "swapfile:N". REQUIRES: type < 32.
std::string type_name(const SwapNumbering& n, unsigned type);

// Inverse of type_name, also accepting a bare decimal number. EINVAL names the text when it is
// no type name, when the name does not exist in this numbering (SWP_MIGRATION_DEVICE_* in
// legacy), or when the number is >= 32.
Result<unsigned> parse_type_name(const SwapNumbering& n, std::string_view text);

}  // namespace dpmm::arch
