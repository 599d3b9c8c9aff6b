#include "devmem/device_memory.h"

#include <sys/mman.h>

#include <cassert>
#include <cstdio>
#include <cstdlib>

#include "base/size.h"
#include "page/zone.h"

namespace dpmm::devmem {

namespace {

// MAX_FOLIO_ORDER on the modelled configurations (PUD order with 4 KiB pages).
constexpr unsigned kMaxFolioOrder = 18;

// __init_zone_device_page (mm/mm_init.c) after __init_single_page: PG_reserved, the pgmap
// back pointer, zone_device_data NULL; refcount stays 0 for PRIVATE and COHERENT.
void init_zone_device_fields(page::Page* p, DevPagemap* pgmap) {
  p->set_flag(page::PageFlag::kReserved);
  p->set_pgmap(pgmap);
  p->set_zone_device_data(nullptr);
}

}  // namespace

Result<std::unique_ptr<DeviceMemory>> DeviceMemory::create(phys::Machine& machine,
                                                           page::Node& node, Design design) {
  if (design == Design::kDpasZone && !node.has_zone(page::ZoneType::kDevicePrivate)) {
    return make_error(Errno::kEINVAL,
                      "design dpas-zone needs a node built with ZONE_DEVICE_PRIVATE (node {} "
                      "has none)",
                      node.nid());
  }
  return std::unique_ptr<DeviceMemory>(new DeviceMemory(machine, node, design));
}

DeviceMemory::DeviceMemory(phys::Machine& machine, page::Node& node, Design design)
    : machine_(machine),
      node_(node),
      design_(design),
      space_(node.config().arch.max_physmem_bits) {}

DeviceMemory::~DeviceMemory() {
  if (nr_pagemaps() != 0) {
    std::fprintf(stderr, "dpmm: DeviceMemory destroyed with %zu pagemaps registered\n",
                 nr_pagemaps());
    std::abort();
  }
}

Result<unsigned> DeviceMemory::resolve_nid(int nid) const {
  if (nid == kNumaNoNode) return node_.nid();
  if (nid < 0 || static_cast<unsigned>(nid) != node_.nid()) {
    return make_error(Errno::kEINVAL, "nid {}: this machine models node {} only", nid,
                      node_.nid());
  }
  return static_cast<unsigned>(nid);
}

Status DeviceMemory::validate_ops(const DevPagemap& pgmap, const char* caller) const {
  const DevPagemapConfig& c = pgmap.config();
  const PagemapOps provided = c.ops == nullptr ? PagemapOps::kNone : c.ops->provided();
  if (c.type == MemoryType::kDevicePrivate && !has(provided, PagemapOps::kMigrateToRam)) {
    return make_error(Errno::kEINVAL, "{}: Missing migrate_to_ram method", caller);
  }
  if (!has(provided, PagemapOps::kFolioFree)) {
    return make_error(Errno::kEINVAL, "{}: Missing folio_free method", caller);
  }
  if (c.owner == nullptr) return make_error(Errno::kEINVAL, "{}: Missing owner", caller);
  if (c.vmemmap_shift > kMaxFolioOrder) {
    return make_error(Errno::kEINVAL, "{}: requested folio size unsupported (vmemmap_shift {})",
                      caller, c.vmemmap_shift);
  }
  if (c.vmemmap_shift != 0) {
    return make_error(Errno::kEOPNOTSUPP,
                      "{}: vmemmap_shift {}: dpmm does not model compound memmaps", caller,
                      c.vmemmap_shift);
  }
  if (pgmap.is_registered()) {
    return make_error(Errno::kEINVAL, "{}: pagemap '{}' is already registered", caller, c.name);
  }
  return ok();
}

// ---------------------------------------------------------------------------------------------
// The seam.

Status DeviceMemory::register_pagemap(DevPagemap& pgmap, int nid) {
  const DevPagemapConfig& c = pgmap.config();
  switch (c.type) {
    case MemoryType::kDeviceCoherent:
      return memremap_pages(pgmap, nid);
    case MemoryType::kDevicePrivate:
      break;
  }
  if (uses_device_private_space(design_)) return memremap_device_private_pagemap(pgmap, nid);

  // Legacy: the driver's request_free_mem_region, then memremap_pages on the window.
  TRY(validate_ops(pgmap, "memremap_pages"));
  const unsigned node_id = TRY(resolve_nid(nid));
  if (c.nr_pages.raw() == 0) {
    return make_error(Errno::kEINVAL, "register_pagemap: device-private pagemap '{}' of 0 pages",
                      c.name);
  }
  const phys::ResourceInfo res =
      TRY(machine_.request_free_mem_region(c.nr_pages.to_bytes(), c.name));
  Status st = memremap_range(pgmap, res.range, node_id);
  if (st.is_error()) {
    MUST(machine_.iomem().release_region(machine_.iomem().root(), res.range.start,
                                         res.range.size()),
         "the region was claimed just above");
    return st;
  }
  pgmap.resource_ = res.id;
  return ok();
}

void DeviceMemory::unregister_pagemap(DevPagemap& pgmap) {
  assert(pgmap.is_registered() && "unregister_pagemap of an unregistered pagemap");
  if (pgmap.uses_page_array()) {
    memunmap_device_private_pagemap(pgmap);
    return;
  }
  const PagemapRange range = pgmap.range_;
  const std::optional<phys::ResourceId> res = pgmap.resource_;
  memunmap_pages(pgmap);
  if (res.has_value()) {
    MUST(machine_.iomem().release_region(machine_.iomem().root(), PhysAddr(range.start),
                                         range.end - range.start + 1),
         "register_pagemap claimed exactly this region");
    pgmap.resource_.reset();
  }
}

// ---------------------------------------------------------------------------------------------
// memremap_pages / memunmap_pages (mm/memremap.c pagemap_range, pageunmap_range).

Status DeviceMemory::memremap_pages(DevPagemap& pgmap, int nid) {
  const DevPagemapConfig& c = pgmap.config();
  if (c.type == MemoryType::kDevicePrivate && uses_device_private_space(design_)) {
    // The series: WARN(1, "Use memremap_device_private_pagemap()") and -EINVAL.
    return make_error(Errno::kEINVAL,
                      "memremap_pages: Use memremap_device_private_pagemap() (device-private "
                      "memory has no physical range under the {} design)",
                      design_name(design_));
  }
  TRY(validate_ops(pgmap, "memremap_pages"));
  const unsigned node_id = TRY(resolve_nid(nid));
  if (!c.range.has_value()) {
    return make_error(Errno::kEINVAL, "memremap_pages: nr_range must be specified (pagemap '{}' "
                      "has no physical range)", c.name);
  }
  return memremap_range(pgmap, *c.range, node_id);
}

Status DeviceMemory::mhp_range_allowed(const phys::PhysRange& range, MemoryType type) const {
  // mhp_get_pluggable_range (mm/memory_hotplug.c): [0, DIRECT_MAP_PHYSMEM_END]; a range that
  // needs the linear map (everything but PRIVATE) must also be inside the arch's mappable
  // range, which on the modelled arches is the vmemmap window.
  const phys::PhysLimit limit = machine_.direct_map_physmem_end();
  const page::Memmap& mm = node_.memmap();
  const bool mappable = type == MemoryType::kDevicePrivate ||
                        (mm.in_window(Pfn::from_phys(range.start)) &&
                         mm.in_window(Pfn::from_phys(range.end)));
  if (range.end <= limit.end && mappable) return ok();
  return make_error(Errno::kEINVAL,
                    "Hotplug memory [{:#x}-{:#x}] exceeds maximum addressable range "
                    "[0x0-{:#x}] ({})",
                    range.start.raw(), range.end.raw(), limit.end.raw(), limit.reason);
}

Status DeviceMemory::registry_insert(DevPagemap& pgmap, Pfn first, Pfn last) {
  WriteLocker guard(registry_lock_);
  // get_dev_pagemap on the first and the last pfn.
  for (Pfn p : {first, last}) {
    auto it = pgmap_array_.upper_bound(p.raw());
    if (it != pgmap_array_.begin() && (--it)->second.last >= p.raw()) {
      return make_error(Errno::kENOMEM,
                        "memremap_pages: Conflicting mapping in same section ({} belongs to "
                        "pagemap '{}')",
                        p, it->second.pgmap->config().name);
    }
  }
  pgmap_array_.emplace(first.raw(), PhysEntry{last.raw(), &pgmap});
  return ok();
}

void DeviceMemory::registry_erase(Pfn first) {
  WriteLocker guard(registry_lock_);
  [[maybe_unused]] const size_t n = pgmap_array_.erase(first.raw());
  assert(n == 1 && "erasing a pagemap that is not in pgmap_array");
}

Status DeviceMemory::memremap_range(DevPagemap& pgmap, phys::PhysRange range, unsigned nid) {
  const MemoryType type = pgmap.config().type;
  const page::Memmap& memmap = node_.memmap();
  const uint64_t section = memmap.pages_per_section().to_bytes();
  // dpmm's memmap has whole sections only (no subsections): see docs/devmem.md.
  if (range.end < range.start || range.start.raw() % section != 0 ||
      range.size() % section != 0) {
    return make_error(Errno::kEINVAL,
                      "memremap_pages: range {} is not a whole number of {} sections", range,
                      format_size(section));
  }
  const Pfn first = Pfn::from_phys(range.start);
  const PageCount nr = PageCount(range.size() >> kPageShift);
  const Pfn last = first + nr - PageCount(1);

  const phys::RegionIntersection is_ram = machine_.iomem().region_intersects(
      machine_.iomem().root(), range.start, range.size(), phys::IoresourceFlags::kSystemRam,
      phys::IoresDesc::kNone);
  if (is_ram != phys::RegionIntersection::kDisjoint) {
    return make_error(Errno::kENXIO, "memremap_pages: attempted on {} region {:#x}-{:#x}",
                      is_ram == phys::RegionIntersection::kMixed ? "mixed" : "ram",
                      range.start.raw(), range.end.raw());
  }
  TRY(mhp_range_allowed(range, type));
  TRY(registry_insert(pgmap, first, last));

  // add_pages (PRIVATE) / arch_add_memory (others): the sections' memmap.
  std::optional<Error> vmemmap_fault;
  Status added = node_.memmap().add_sections(first, nr);
  if (added.is_error()) {
    const bool beyond_vmemmap = added.error().code() == Errno::kERANGE &&
                                type == MemoryType::kDevicePrivate && !memmap.in_window(first);
    if (!beyond_vmemmap) {
      registry_erase(first);
      return added.error();
    }
    // The kernel's add_pages maps descriptors at addresses past the vmemmap and goes on; the
    // first pfn_to_page of memmap_init_zone_device is where it goes wrong.
    vmemmap_fault = memmap.pfn_to_page(first).error();
  }

  // move_pfn_range_to_zone(ZONE_DEVICE).
  page::Zone& zone = node_.zone(page::ZoneType::kDevice);
  MUST(zone.add_device_pages(nr, page::PfnRange{first, last + PageCount(1)}),
       "ZONE_DEVICE accepts any non-empty run");

  pgmap.range_ = PagemapRange{PagemapSpace::kPhysical, range.start.raw(), range.end.raw()};
  pgmap.zone_ = &zone;
  pgmap.memmap_ = &memmap;
  pgmap.pages_ = nullptr;
  pgmap.vmemmap_fault_ = vmemmap_fault;
  pgmap.ref_.init();
  if (!vmemmap_fault.has_value()) memmap_init_zone_device(pgmap, first, nr, nid);
  pgmap.registered_.store(true, std::memory_order_release);
  nr_registered_.fetch_add(1, std::memory_order_acq_rel);
  return ok();
}

void DeviceMemory::memmap_init_zone_device(DevPagemap& pgmap, Pfn start, PageCount nr,
                                           unsigned nid) {
  page::Memmap& memmap = node_.memmap();
  const Pfn end = start + nr;
  for (Pfn p = start; p < end; p += PageCount(1)) {
    page::Page* page = memmap.init_page(p, page::ZoneType::kDevice, nid, &pgmap);
    init_zone_device_fields(page, &pgmap);
  }
}

void DeviceMemory::memunmap_pages(DevPagemap& pgmap) {
  assert(pgmap.is_registered() && !pgmap.uses_page_array() &&
         "memunmap_pages of a pagemap memremap_pages did not register");
  pgmap.ref_.kill();
  pgmap.ref_.wait_for_completion();

  const Pfn first = Pfn(pgmap.range_.start >> kPageShift);
  const PageCount nr = pgmap.range_.nr_pages();
  MUST(pgmap.zone_->remove_device_pages(nr), "the pagemap added exactly these pages");
  if (pgmap.descriptors_reachable()) {
    MUST(node_.memmap().remove_sections(first, nr), "the pagemap added exactly these sections");
  }
  registry_erase(first);
  pgmap.ref_.exit();
  pgmap.registered_.store(false, std::memory_order_release);
  pgmap.zone_ = nullptr;
  pgmap.memmap_ = nullptr;
  pgmap.vmemmap_fault_.reset();
  nr_registered_.fetch_sub(1, std::memory_order_acq_rel);
}

// ---------------------------------------------------------------------------------------------
// memremap_device_private_pagemap / memunmap_device_private_pagemap (the series, patch 13).

Status DeviceMemory::memremap_device_private_pagemap(DevPagemap& pgmap, int nid) {
  if (!uses_device_private_space(design_)) {
    return make_error(Errno::kEOPNOTSUPP,
                      "memremap_device_private_pagemap: the legacy kernel has no device private "
                      "address space");
  }
  const DevPagemapConfig& c = pgmap.config();
  if (c.type != MemoryType::kDevicePrivate) {
    return make_error(Errno::kEINVAL, "memremap_device_private_pagemap: Not device private "
                      "memory ({})", memory_type_name(c.type));
  }
  // The series drops the folio_free check from this path; dpmm keeps it, since a pagemap
  // without folio_free could never be unregistered (free_zone_device_folio would skip the
  // reference put).
  TRY(validate_ops(pgmap, "memremap_device_private_pagemap"));
  const unsigned node_id = TRY(resolve_nid(nid));

  // kvzalloc(sizeof(struct page) * nr_pages).
  const uint64_t nr = c.nr_pages.raw();
  if (nr > kKvmallocMaxBytes / sizeof(page::Page)) {
    return make_error(Errno::kENOMEM,
                      "memremap_device_private_pagemap: kvzalloc of {} bytes of struct pages "
                      "for {} pages ({}) exceeds INT_MAX: kvmalloc refuses it",
                      nr * sizeof(page::Page), nr, format_size(c.nr_pages.to_bytes()));
  }
  const uint64_t bytes = nr * sizeof(page::Page);
  page::Page* pages = nullptr;
  if (bytes != 0) {
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      return make_error(Errno::kENOMEM,
                        "memremap_device_private_pagemap: cannot map {} bytes of struct pages",
                        bytes);
    }
    pages = static_cast<page::Page*>(mem);
  }
  // mtree_alloc_range(&device_private_pgmap_tree, &start, pgmap, nr_pages * PAGE_SIZE, 0,
  // 1ull << MAX_PHYSMEM_BITS): 0 pages is its EINVAL.
  Result<uint64_t> start = space_.alloc_range(&pgmap, nr << kPageShift);
  if (start.is_error()) {
    if (pages != nullptr) munmap(pages, bytes);
    return start.error();
  }

  const page::ZoneType zone_type = device_private_zone_type(design_);
  page::Zone& zone = node_.zone(zone_type);
  pgmap.range_ = PagemapRange{PagemapSpace::kDevicePrivate, *start, *start + (nr << kPageShift) - 1};
  pgmap.pages_ = pages;
  pgmap.pages_bytes_ = bytes;
  pgmap.zone_ = &zone;
  pgmap.memmap_ = nullptr;
  pgmap.vmemmap_fault_.reset();
  pgmap.ref_.init();
  // __init_zone_device_page(page, dpfn, zone, nid, pgmap) for every offset: the links carry
  // the offset's section bits, as set_page_links(page, zone, nid, dpfn) does.
  const uint64_t first_offset = *start >> kPageShift;
  const unsigned section_shift = node_.config().arch.section_size_bits - kPageShift;
  for (uint64_t i = 0; i < nr; ++i) {
    page::Page* p = page::init_single_page(
        pages + i, page::PageLinks{.zone = zone_type,
                                   .nid = node_id,
                                   .section = (first_offset + i) >> section_shift,
                                   .releaser = &pgmap});
    init_zone_device_fields(p, &pgmap);
  }
  // dpmm counts the pages as present in their zone (the series leaves zone counters alone).
  MUST(zone.add_device_pages(c.nr_pages, std::nullopt), "a device zone accepts any non-empty run");
  pgmap.registered_.store(true, std::memory_order_release);
  nr_registered_.fetch_add(1, std::memory_order_acq_rel);
  return ok();
}

void DeviceMemory::memunmap_device_private_pagemap(DevPagemap& pgmap) {
  assert(pgmap.is_registered() && pgmap.uses_page_array() &&
         "memunmap_device_private_pagemap of a pagemap it did not register");
  pgmap.ref_.kill();
  pgmap.ref_.wait_for_completion();
  pgmap.ref_.exit();
  MUST(pgmap.zone_->remove_device_pages(pgmap.range_.nr_pages()),
       "the pagemap added exactly these pages");
  // The series frees the page array before mtree_erase; dpmm erases first so that no lookup
  // can reach the freed array.
  MUST(space_.erase(pgmap.range_.start), "the pagemap's range is in the tree");
  pgmap.registered_.store(false, std::memory_order_release);
  munmap(pgmap.pages_, pgmap.pages_bytes_);
  pgmap.pages_ = nullptr;
  pgmap.pages_bytes_ = 0;
  pgmap.zone_ = nullptr;
  nr_registered_.fetch_sub(1, std::memory_order_acq_rel);
}

// ---------------------------------------------------------------------------------------------
// Lookups.

DevPagemap* DeviceMemory::get_dev_pagemap(Pfn pfn) {
  ReadLocker guard(registry_lock_);
  auto it = pgmap_array_.upper_bound(pfn.raw());
  if (it == pgmap_array_.begin()) return nullptr;
  --it;
  if (it->second.last < pfn.raw()) return nullptr;
  DevPagemap* pgmap = it->second.pgmap;
  return pgmap->ref().tryget_live() ? pgmap : nullptr;
}

Result<page::Page*> DeviceMemory::device_private_offset_to_page(DevPrivOffset offset) const {
  if (!uses_device_private_space(design_)) {
    return make_error(Errno::kEINVAL,
                      "device_private_offset_to_page({}): the legacy design has no device "
                      "private address space",
                      offset);
  }
  // The lock-free lookup (DevicePrivateSpace::load_pgmap). The pagemap's range and page
  // array are stable while the caller holds a reference to the page or pagemap (the kernel's
  // rule too).
  const uint64_t limit = space_.max() >> kPageShift;
  DevPagemap* const pgmap =
      offset.raw() <= limit ? space_.load_pgmap(offset.raw() << kPageShift) : nullptr;
  if (pgmap == nullptr) {
    return make_error(Errno::kENOENT,
                      "device_private_offset_to_page({}): no pagemap holds this offset "
                      "(WARN_ON_ONCE)",
                      offset);
  }
  return pgmap->pages_ + (offset.raw() - (pgmap->range_.start >> kPageShift));
}

DevPrivOffset DeviceMemory::device_private_page_to_offset(const page::Page* page) const {
  assert(page_has_device_private_offset(page) &&
         "device_private_page_to_offset of a page without a device-private offset");
  const DevPagemap* pgmap = page_pgmap(page);
  assert(pgmap->owns_array_page(page) && "page outside its pagemap's page array");
  return DevPrivOffset((pgmap->range_.start >> kPageShift) +
                       static_cast<uint64_t>(page - pgmap->pages_));
}

DevPrivOffset DeviceMemory::device_private_folio_to_offset(page::Folio folio) const {
  return device_private_page_to_offset(folio.head());
}

Result<page::Page*> DeviceMemory::device_private_entry_to_page(arch::Softleaf entry) const {
  if (!arch::softleaf_is_device_private(entry) &&
      !arch::softleaf_is_migration_device_private(entry)) {
    return make_error(Errno::kEINVAL,
                      "device_private_entry_to_page: {} is not a device-private entry",
                      arch::softleaf_describe(entry));
  }
  if (entry.format().numbering != swap_numbering_kind(design_)) {
    return make_error(Errno::kEINVAL,
                      "device_private_entry_to_page: {} uses the {} numbering, the {} design "
                      "the {} one",
                      arch::softleaf_describe(entry),
                      arch::numbering_name(entry.format().numbering), design_name(design_),
                      arch::numbering_name(swap_numbering_kind(design_)));
  }
  const arch::PfnOrOffset where = TRY(arch::softleaf_to_pfn_or_offset(entry));
  return pfn_or_offset_to_page(where);
}

arch::PfnOrOffset DeviceMemory::page_to_pfn_or_offset(const page::Page* page) const {
  if (page_has_device_private_offset(page)) {
    return arch::PfnOrOffset::of_offset(device_private_page_to_offset(page));
  }
  return arch::PfnOrOffset::of_pfn(page_to_pfn(page));
}

Result<page::Page*> DeviceMemory::pfn_or_offset_to_page(arch::PfnOrOffset where) const {
  if (where.is_offset()) return device_private_offset_to_page(MUST(where.to_offset(), "tagged"));
  return pfn_to_page(MUST(where.to_pfn(), "tagged"));
}

Pfn DeviceMemory::page_to_pfn(const page::Page* page) const {
  // The series' VM_WARN_ON(folio_is_device_private(folio)) in folio_pfn, as an assertion.
  assert(!page_has_device_private_offset(page) &&
         "page_to_pfn of a dpas device-private page: it has an offset, not a PFN");
  return node_.memmap().page_to_pfn_unchecked(page);
}

Pfn DeviceMemory::folio_pfn(page::Folio folio) const { return page_to_pfn(folio.head()); }

Result<page::Page*> DeviceMemory::pfn_to_page(Pfn pfn) const {
  return node_.memmap().pfn_to_page(pfn);
}

}  // namespace dpmm::devmem
