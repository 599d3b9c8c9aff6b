// DeviceMemory: the seam where the three designs differ. One per simulated machine, built
// from its phys::Machine (iomem tree, limits), its page::Node (memmap and zones) and a Design.
//
// Registration (mm/memremap.c; the 2026 series, patch 13):
//
//   type      legacy                                  dpas / dpas-zone
//   PRIVATE   request_free_mem_region(nr_pages pages) memremap_device_private_pagemap: a page
//             + memremap_pages: sections added to the array (MAP_NORESERVE) and the lowest
//             memmap for the window, every descriptor   free range of the device private
//             initialised in ZONE_DEVICE                address space; ZONE_DEVICE (dpas) or
//                                                       ZONE_DEVICE_PRIVATE (dpas-zone)
//   COHERENT  memremap_pages on the driver's physical range, ZONE_DEVICE, in every design
//
// memremap_pages(PRIVATE) under the dpas designs fails with EINVAL ("Use
// memremap_device_private_pagemap()"), as the series makes it. Every failure leaves nothing
// behind (resource released, sections removed, range freed, counters untouched).
//
// arm64 before eeb8fdfcf090 (legacy): request_free_mem_region picks a window above the end of
// the linear map, whose descriptors would lie past the end of the vmemmap. The kernel's
// registration succeeded and memmap_init_zone_device's first pfn_to_page read past the
// vmemmap. dpmm registers the pagemap (resource claimed, zone counted, PFN range in the pgmap
// registry) without descriptors: DevPagemap::vmemmap_fault() holds that first pfn_to_page's
// EFAULT ("... reads beyond the end of vmemmap"), and every later pfn_to_page of the range
// answers the same. The dpas designs never touch the vmemmap for device-private pages.
//
// Unregistration waits (percpu_ref kill + wait_for_completion) until every allocated device
// page has been freed, then undoes the registration; every counter returns to its value from
// before the registration.
//
// PFN and offset: a dpas device-private page has no PFN. The PFN APIs here (page_to_pfn,
// folio_pfn) assert that they are never handed one, as the series' VM_WARN_ON in folio_pfn
// does; device_private_page_to_offset asserts the converse. Design-independent code uses
// page_to_pfn_or_offset / pfn_or_offset_to_page, whose values carry their tag.
//
// Concurrency: registration, unregistration and lookups may run from several threads. The
// device private address space serialises its writers on its own RwLock (kPagemapTree) and
// answers offset lookups without a lock (DevicePrivateSpace::load); the registry of physical
// pagemaps (the kernel's pgmap_array) an RwLock of rank kPagemapRegistry. Lookups hold no lock
// once they return: as in the kernel, looking up a page of a pagemap that is being torn down
// is the caller's bug (it must hold a page or pagemap reference).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>

#include "arch/pfn_or_offset.h"
#include "arch/softleaf.h"
#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "devmem/design.h"
#include "devmem/dev_pagemap.h"
#include "devmem/device_private_space.h"
#include "page/folio.h"
#include "page/node.h"
#include "phys/machine.h"

namespace dpmm::devmem {

// NUMA_NO_NODE: use the node's own id (numa_mem_id()).
inline constexpr int kNumaNoNode = -1;

// kvmalloc refuses sizes above INT_MAX bytes (mm/util.c, "Don't even allow crazy sizes"), and
// the series allocates the page array with kvzalloc: one dpas pagemap holds at most
// INT_MAX / sizeof(struct page) pages (just under 128 GiB of device memory).
inline constexpr uint64_t kKvmallocMaxBytes = 0x7fffffff;

class DeviceMemory {
 public:
  // EINVAL when the design needs ZONE_DEVICE_PRIVATE and the node was built without it.
  static Result<std::unique_ptr<DeviceMemory>> create(phys::Machine& machine, page::Node& node,
                                                      Design design);
  // REQUIRES: every pagemap unregistered.
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  Design design() const { return design_; }
  phys::Machine& machine() { return machine_; }
  page::Node& node() { return node_; }
  const DevicePrivateSpace& device_private_space() const { return space_; }
  size_t nr_pagemaps() const { return nr_registered_.load(std::memory_order_acquire); }

  // ---- the seam ----
  // Places `pgmap` according to its type and the design (table above). nid: the node's id or
  // kNumaNoNode.
  //   EINVAL   bad pagemap: no ops, no migrate_to_ram (PRIVATE), no folio_free, no owner,
  //            nr_pages 0 (PRIVATE), no range or an unaligned one (COHERENT), unknown nid,
  //            already registered; vmemmap_shift > MAX_FOLIO_ORDER; range not hot-pluggable
  //   EOPNOTSUPP  vmemmap_shift > 0 (compound memmaps are not modelled)
  //   ERANGE   legacy: request_free_mem_region found no window (its message names the
  //            largest free gaps)
  //   ENOMEM   a conflicting physical pagemap; (dpas) page array over kvmalloc's limit or
  //            mmap failure
  //   ENXIO    the range intersects System RAM
  //   EEXIST   (COHERENT) a section of the range already has a memmap
  //   EBUSY    (dpas) no free range of the size in the device private address space
  Status register_pagemap(DevPagemap& pgmap, int nid = kNumaNoNode);
  // Waits until every page of `pgmap` is free, then undoes register_pagemap.
  // REQUIRES: registered through this DeviceMemory. Sleeps.
  void unregister_pagemap(DevPagemap& pgmap);

  // ---- the kernel's entry points that register/unregister are made of ----
  // memremap_pages(pgmap, nid) on the config's physical range (COHERENT; PRIVATE in legacy,
  // where the driver got the range from request_free_mem_region). Errors as register_pagemap;
  // PRIVATE under the dpas designs is EINVAL.
  Status memremap_pages(DevPagemap& pgmap, int nid = kNumaNoNode);
  // memunmap_pages. REQUIRES: registered by memremap_pages. Sleeps.
  void memunmap_pages(DevPagemap& pgmap);
  // memremap_device_private_pagemap (dpas designs; EOPNOTSUPP under legacy).
  Status memremap_device_private_pagemap(DevPagemap& pgmap, int nid = kNumaNoNode);
  // memunmap_device_private_pagemap. REQUIRES: registered by the above. Sleeps.
  void memunmap_device_private_pagemap(DevPagemap& pgmap);

  // get_dev_pagemap(pfn): the physical pagemap holding `pfn` with a live reference taken
  // (drop it with DevPagemap::put), or null. Never finds a dpas device-private pagemap.
  DevPagemap* get_dev_pagemap(Pfn pfn);

  // ---- device-private offsets (dpas designs) ----
  // device_private_offset_to_page: EINVAL under legacy; ENOENT when no pagemap holds the
  // offset (the kernel's WARN_ON_ONCE and NULL).
  Result<page::Page*> device_private_offset_to_page(DevPrivOffset offset) const;
  // REQUIRES: page_has_device_private_offset(page) (asserted).
  DevPrivOffset device_private_page_to_offset(const page::Page* page) const;
  DevPrivOffset device_private_folio_to_offset(page::Folio folio) const;
  // device_private_entry_to_page: the page behind a device-private or migration
  // device-private entry, in every design (legacy entries hold a PFN). EINVAL for any other
  // entry or an entry of another numbering than the design's.
  Result<page::Page*> device_private_entry_to_page(arch::Softleaf entry) const;

  // ---- design-independent page index ----
  // The offset of a dpas device-private page, the PFN of every other page.
  // REQUIRES: `page` is a descriptor of this machine (memmap or a registered page array).
  arch::PfnOrOffset page_to_pfn_or_offset(const page::Page* page) const;
  // The inverse: offsets through the device private address space, PFNs through the memmap
  // (EFAULT outside the vmemmap window, ENOENT in a hole).
  Result<page::Page*> pfn_or_offset_to_page(arch::PfnOrOffset where) const;

  // ---- PFN APIs with the decode-site check ----
  // page_to_pfn / folio_pfn. REQUIRES (asserted): not a dpas device-private page.
  Pfn page_to_pfn(const page::Page* page) const;
  Pfn folio_pfn(page::Folio folio) const;
  // pfn_to_page through the memmap's window check.
  Result<page::Page*> pfn_to_page(Pfn pfn) const;

 private:
  DeviceMemory(phys::Machine& machine, page::Node& node, Design design);

  // A physical pagemap in the registry (pgmap_array): PFNs [first, last].
  struct PhysEntry {
    uint64_t last;
    DevPagemap* pgmap;
  };

  Result<unsigned> resolve_nid(int nid) const;
  Status validate_ops(const DevPagemap& pgmap, const char* caller) const;
  Status memremap_range(DevPagemap& pgmap, phys::PhysRange range, unsigned nid);
  void memmap_init_zone_device(DevPagemap& pgmap, Pfn start, PageCount nr, unsigned nid);
  Status registry_insert(DevPagemap& pgmap, Pfn first, Pfn last) EXCLUDES(registry_lock_);
  void registry_erase(Pfn first) EXCLUDES(registry_lock_);
  Status mhp_range_allowed(const phys::PhysRange& range, MemoryType type) const;

  phys::Machine& machine_;
  page::Node& node_;
  const Design design_;
  DevicePrivateSpace space_;
  mutable RwLock registry_lock_{LockRank::kPagemapRegistry};
  std::map<uint64_t, PhysEntry> pgmap_array_ GUARDED_BY(registry_lock_);  // keyed by first pfn
  std::atomic<size_t> nr_registered_{0};
};

}  // namespace dpmm::devmem
