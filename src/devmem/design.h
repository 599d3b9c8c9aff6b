// The three designs of device-private addressing that dpmm runs side by side
// (ARCHITECTURE.md):
//
//   legacy     device-private pages take a window of *physical* address space from
//              request_free_mem_region (kernel/resource.c) and their descriptors sit in the
//              vmemmap of memory sections (memremap_pages, mm/memremap.c); entries hold PFNs.
//   dpas       the 2026 series "Remove device private pages from physical address space":
//              memremap_device_private_pagemap takes a range of the device private address
//              space (a maple tree over [0, 2^MAX_PHYSMEM_BITS)) and a page array of its own;
//              entries hold device-private offsets (swap numbering with SWP_DEVICE_NUM 6).
//   dpas-zone  as dpas, and the pages sit in ZONE_DEVICE_PRIVATE (Huang Ying's proposal on
//              the v3 cover letter) so per-zone counters show them apart.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "arch/swap_numbering.h"
#include "base/result.h"
#include "page/node.h"
#include "page/zone_type.h"

namespace dpmm::devmem {

enum class Design : uint8_t { kLegacy, kDpas, kDpasZone };

inline constexpr std::array<Design, 3> kAllDesigns = {Design::kLegacy, Design::kDpas,
                                                      Design::kDpasZone};

// "legacy", "dpas", "dpas-zone".
std::string_view design_name(Design d);
// The inverse of design_name. EINVAL naming the text and the accepted names.
Result<Design> parse_design(std::string_view text);

// True for the designs that address device-private pages by offset in the device private
// address space (no PFN, no vmemmap).
constexpr bool uses_device_private_space(Design d) { return d != Design::kLegacy; }

// The swap-type numbering each design's kernel uses (arch/swap_numbering.h).
constexpr arch::SwapNumberingKind swap_numbering_kind(Design d) {
  return uses_device_private_space(d) ? arch::SwapNumberingKind::kDpas
                                      : arch::SwapNumberingKind::kLegacy;
}

// Whether the node has a ZONE_DEVICE_PRIVATE zone (only in dpas-zone).
constexpr page::DevicePrivateZone device_private_zone(Design d) {
  return d == Design::kDpasZone ? page::DevicePrivateZone::kPresent
                                : page::DevicePrivateZone::kAbsent;
}

// The zone that device-private pages go to. Coherent pages always go to ZONE_DEVICE.
constexpr page::ZoneType device_private_zone_type(Design d) {
  return d == Design::kDpasZone ? page::ZoneType::kDevicePrivate : page::ZoneType::kDevice;
}

}  // namespace dpmm::devmem
