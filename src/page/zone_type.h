// The zones of a node (enum zone_type in include/linux/mmzone.h).
//
// x86_64 boundaries (arch/x86/mm/init.c, zone_sizes_init): DMA32 below 4 GiB, NORMAL above,
// MOVABLE only when configured (kernelcore=/movablecore=, mm/mm_init.c). dpmm folds ZONE_DMA
// (below 16 MiB) into DMA32. ZONE_DEVICE holds pagemap pages (mm/memremap.c);
// ZONE_DEVICE_PRIVATE exists only in the dpas-zone design (Huang Ying's proposal: device-private
// pages in a zone of their own, so per-zone counters show them apart).
#pragma once

#include <cstdint>
#include <string_view>

#include "page/page_flags.h"

namespace dpmm::page {

enum class ZoneType : uint8_t {
  kDma32 = 0,
  kNormal,
  kMovable,
  kDevice,
  kDevicePrivate,
  kCount,
};
static_assert(static_cast<unsigned>(ZoneType::kCount) <= (1u << kZonesWidth),
              "zone ids must fit the flags word's zone field");

inline constexpr unsigned kNrZoneTypes = static_cast<unsigned>(ZoneType::kCount);

// "DMA32", "Normal", "Movable", "Device", "DevicePrivate" (the /proc/zoneinfo spelling).
std::string_view zone_type_name(ZoneType t);

// RAM zones have a buddy allocator; device zones only count pages handed to pagemaps.
constexpr bool zone_is_device(ZoneType t) {
  return t == ZoneType::kDevice || t == ZoneType::kDevicePrivate;
}

}  // namespace dpmm::page
