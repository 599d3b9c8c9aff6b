#include "page/zone_type.h"

namespace dpmm::page {

std::string_view zone_type_name(ZoneType t) {
  switch (t) {
    case ZoneType::kDma32: return "DMA32";
    case ZoneType::kNormal: return "Normal";
    case ZoneType::kMovable: return "Movable";
    case ZoneType::kDevice: return "Device";
    case ZoneType::kDevicePrivate: return "DevicePrivate";
    case ZoneType::kCount: break;
  }
  return "?";
}

}  // namespace dpmm::page
