// A NUMA node (pglist_data, include/linux/mmzone.h): its memmap and its zones.
//
// Zone boundaries as x86_64 sets them (arch/x86/mm/init.c zone_sizes_init, mm/mm_init.c
// free_area_init): DMA32 below 4 GiB, Normal from 4 GiB up, and Movable from `movable_start`
// (kernelcore=/movablecore=) to the end of the node when one is configured. A zone with no RAM
// is absent. The Device zone always exists; DevicePrivate exists only when the node is built
// for the dpas-zone design.
//
// Allocation falls back downward through the RAM zones as the kernel's zonelist does for a
// movable allocation: Movable -> Normal -> DMA32 (an allocation whose highest zone is Normal
// starts at Normal).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "base/result.h"
#include "base/types.h"
#include "page/memmap.h"
#include "page/pfn_range.h"
#include "page/zone.h"

namespace dpmm::page {

enum class DevicePrivateZone : bool { kAbsent, kPresent };

struct NodeConfig {
  unsigned nid = 0;
  arch::ArchParams arch = arch::x86_64_params();
  arch::VmemmapWindow window = arch::vmemmap_window(arch::x86_64_params(), PhysAddr(0));
  // RAM of this node as [start, end) PFN ranges: sorted, disjoint, non-empty.
  std::vector<PfnRange> ram;
  // Start of ZONE_MOVABLE; must be MAX_PAGE_ORDER-aligned. Unset: no Movable zone.
  std::optional<Pfn> movable_start;
  DevicePrivateZone device_private_zone = DevicePrivateZone::kAbsent;
  DeferredInit deferred_init = DeferredInit::kYes;
};

class Node {
 public:
  // Adds the memmap sections covering the RAM and builds the zones.
  //   EINVAL  no RAM, an empty/unaligned/unsorted/overlapping range, a misaligned movable_start,
  //           or a node id that does not fit the flags word
  //   ERANGE  RAM outside the vmemmap window or beyond MAX_PHYSMEM_BITS
  //   ENOMEM  the memmap could not be mapped
  static Result<std::unique_ptr<Node>> create(NodeConfig config);
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  unsigned nid() const { return config_.nid; }
  const NodeConfig& config() const { return config_; }
  Memmap& memmap() { return *memmap_; }
  const Memmap& memmap() const { return *memmap_; }

  bool has_zone(ZoneType t) const { return zones_[static_cast<unsigned>(t)] != nullptr; }
  // REQUIRES: has_zone(t).
  Zone& zone(ZoneType t);
  const Zone& zone(ZoneType t) const;
  // ENOENT if the node has no such zone.
  Result<Zone*> zone_if_present(ZoneType t);
  // The RAM zone whose range holds `pfn` (zone boundaries, not holes). ENOENT outside the
  // node's RAM zones.
  Result<Zone*> zone_for_pfn(Pfn pfn);
  // The zone a descriptor belongs to (page_zone): from the zone id in its flags.
  Zone& page_zone(const Page* page);

  // Allocates from `highest` down through the RAM zones (see the file comment).
  //   EINVAL  order too large or `highest` is a device zone; ENOMEM  every zone is empty.
  Result<Page*> alloc_pages(Order order, ZoneType highest = ZoneType::kMovable);
  void free_pages(Page* page, Order order) { page_zone(page).free_pages(page, order); }
  void deferred_init_all();

  // /proc/zoneinfo-style text for every zone present.
  std::string zoneinfo() const;

 private:
  explicit Node(NodeConfig config);

  NodeConfig config_;
  std::unique_ptr<Memmap> memmap_;
  std::array<std::unique_ptr<Zone>, kNrZoneTypes> zones_;
  // RAM zone boundaries: [zone_range_[t].start, zone_range_[t].end) for each RAM zone.
  std::array<std::optional<PfnRange>, kNrZoneTypes> zone_range_;
};

}  // namespace dpmm::page
