// struct dev_pagemap and struct dev_pagemap_ops (include/linux/memremap.h), the per-page
// helpers around them (mm/memremap.c, mm/mm_init.c) and the free path of a device folio.
//
// A driver fills a DevPagemapConfig (type, ops, owner, nr_pages or a physical range), builds a
// DevPagemap from it and hands it to DeviceMemory::register_pagemap (device_memory.h), which
// places it according to the design: the range is an *output* for device-private pagemaps
// (a physical window in legacy, a device private address space range in dpas / dpas-zone) and
// an *input* for coherent ones (always physical, as in the series).
//
// Page life cycle (kernel-baseline §2):
//   registration   every descriptor: ZONE_DEVICE (or ZONE_DEVICE_PRIVATE), pgmap set,
//                  zone_device_data NULL, PG_reserved, refcount 0 (__init_zone_device_page)
//   allocation     zone_device_page_init: refcount 0 -> 1, folio locked, one pagemap
//                  reference per page (percpu_ref_tryget_many), compound when order > 0
//   free           the folio_put that reaches 0 calls this pagemap's folio_release
//                  (free_zone_device_folio): AnonExclusive cleared, mapping cleared, pgmap
//                  kept, ops->folio_free(folio), then the pagemap references dropped. A free
//                  device page stays at refcount 0.
//   unregister     kill the reference and wait until every page has been freed.
//
// The pagemap implements page::FolioReleaser: every descriptor it owns names it as releaser.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/flags.h"
#include "arch/pfn_or_offset.h"
#include "base/result.h"
#include "base/types.h"
#include "devmem/percpu_ref.h"
#include "page/folio.h"
#include "page/page.h"
#include "phys/phys_range.h"
#include "phys/resource.h"

// struct vm_fault is defined by the mm layer (mm/fault.h), which sits above this one; a
// driver's migrate_to_ram receives it from the fault path.
namespace dpmm::mm {
struct VmFault;
}  // namespace dpmm::mm

namespace dpmm::page {
class Memmap;
class Zone;
}  // namespace dpmm::page

namespace dpmm::devmem {

class DeviceMemory;

// enum memory_type: the two types dpmm models. 0 stays reserved to catch uninitialised types,
// as in the kernel.
enum class MemoryType : uint8_t {
  kDevicePrivate = 1,   // MEMORY_DEVICE_PRIVATE: the CPU cannot reach it; swap entries map it
  kDeviceCoherent = 2,  // MEMORY_DEVICE_COHERENT: CPU-coherent; normal present PTEs
};
std::string_view memory_type_name(MemoryType t);  // "MEMORY_DEVICE_PRIVATE", ...

// The subset of vm_fault_t a migrate_to_ram callback returns (include/linux/mm_types.h).
enum class VmFaultCode : uint8_t {
  kHandled = 0,  // 0: the page was migrated (or someone else did it)
  kOom,          // VM_FAULT_OOM
  kSigBus,       // VM_FAULT_SIGBUS
  kRetry,        // VM_FAULT_RETRY
};

// Which ops a driver implements: the kernel's non-NULL function pointers.
enum class PagemapOps : uint8_t {
  kNone = 0,
  kFolioFree = 1 << 0,
  kMigrateToRam = 1 << 1,
  kFolioSplit = 1 << 2,
};
DPMM_FLAG_OPS(PagemapOps)

// struct dev_pagemap_ops. Only the ops named by provided() are ever called; the defaults of
// the others abort.
class DevPagemapOps {
 public:
  virtual ~DevPagemapOps() = default;
  virtual PagemapOps provided() const = 0;
  // The folio's refcount reached zero: return its pages to the driver's allocator. May run in
  // any context that drops the last reference (take only a spinlock-like lock).
  virtual void folio_free(page::Folio folio);
  // PRIVATE only. Migrate vmf.page (locked, referenced by the caller) back to system memory.
  // Called with mmap_lock held for read and no page-table lock (kernel-baseline §5).
  virtual VmFaultCode migrate_to_ram(mm::VmFault& vmf);
  // PRIVATE only, optional: a large device folio was split; called once per new folio
  // (head, tail) and finally with tail == nullopt.
  virtual void folio_split(page::Folio head, std::optional<page::Folio> tail);
};

// Where a registered pagemap's pages are: struct range (bytes, `end` inclusive) plus which
// address space the bytes belong to.
enum class PagemapSpace : uint8_t {
  kPhysical,       // legacy device-private and every coherent pagemap: PFN = address >> 12
  kDevicePrivate,  // dpas / dpas-zone device-private: offset = address >> 12
};

struct PagemapRange {
  PagemapSpace space = PagemapSpace::kPhysical;
  uint64_t start = 0;
  uint64_t end = 0;  // inclusive

  PageCount nr_pages() const { return PageCount((end - start + 1) >> kPageShift); }
  // The tagged index of page `n` of the range.
  arch::PfnOrOffset index(uint64_t n) const {
    const uint64_t i = (start >> kPageShift) + n;
    return space == PagemapSpace::kPhysical ? arch::PfnOrOffset::of_pfn(Pfn(i))
                                            : arch::PfnOrOffset::of_offset(DevPrivOffset(i));
  }
  bool contains_index(uint64_t page_index) const {
    return page_index >= (start >> kPageShift) && page_index <= (end >> kPageShift);
  }
  bool operator==(const PagemapRange&) const = default;
};

struct DevPagemapConfig {
  MemoryType type = MemoryType::kDevicePrivate;
  DevPagemapOps* ops = nullptr;
  const void* owner = nullptr;  // mandatory for both types (hmm, migrate_vma, notifiers)
  // PRIVATE: how many pages (the series' nr_pages; legacy asks request_free_mem_region for
  // nr_pages * PAGE_SIZE bytes, rounded up to a section by the search).
  PageCount nr_pages{0};
  // COHERENT: the physical range of the device memory (section-aligned, see docs/devmem.md).
  std::optional<phys::PhysRange> range;
  // Compound order of the memmap. dpmm supports 0 only (EOPNOTSUPP otherwise; the kernel
  // accepts up to MAX_FOLIO_ORDER, mostly for fsdax).
  unsigned vmemmap_shift = 0;
  // The name of the iomem resource legacy registration claims.
  std::string name = "dpmm-device-private";
};

class DevPagemap final : public page::FolioReleaser {
 public:
  explicit DevPagemap(DevPagemapConfig config);
  // REQUIRES: unregistered.
  ~DevPagemap() override;
  DevPagemap(const DevPagemap&) = delete;
  DevPagemap& operator=(const DevPagemap&) = delete;

  MemoryType type() const { return config_.type; }
  DevPagemapOps* ops() const { return config_.ops; }
  const void* owner() const { return config_.owner; }
  const DevPagemapConfig& config() const { return config_; }
  bool is_registered() const { return registered_.load(std::memory_order_acquire); }

  // REQUIRES: registered.
  const PagemapRange& range() const;
  PageCount nr_pages() const { return range().nr_pages(); }
  // Bytes of descriptors this pagemap owns (its page array, or its vmemmap share).
  uint64_t descriptor_bytes() const { return nr_pages().raw() * sizeof(page::Page); }

  // dpas designs: the page array (pgmap->pages); null otherwise.
  page::Page* pages() const { return pages_; }
  bool uses_page_array() const { return pages_ != nullptr; }
  // dpas: descriptor of page `n` and the index of a descriptor of this array.
  // REQUIRES: uses_page_array(), n < nr_pages() / `p` inside the array.
  page::Page* page_at(uint64_t n) const;
  bool owns_array_page(const page::Page* p) const {
    return pages_ != nullptr && p >= pages_ && p < pages_ + nr_pages().raw();
  }
  // The index of `p` in this pagemap's range (0 for its first page), in every design.
  //   EINVAL  `p` is not a descriptor of this pagemap; EFAULT  its descriptors are unreachable
  Result<uint64_t> page_index(const page::Page* p) const;

  // Legacy on arm64 before eeb8fdfcf090: registration succeeded, but the window lies above
  // the vmemmap, so the first pfn_to_page of a device page (memmap_init_zone_device's) read
  // past its end. This is that report (EFAULT); the descriptors do not exist in dpmm.
  const std::optional<Error>& vmemmap_fault() const { return vmemmap_fault_; }
  bool descriptors_reachable() const { return !vmemmap_fault_.has_value(); }

  // ---- references ----
  PercpuRef& ref() { return ref_; }
  // References held right now beyond the initial one: allocated pages plus lookups.
  int64_t nr_references() const;
  // put_dev_pagemap.
  void put() { ref_.put(); }

  // page::FolioReleaser: free_zone_device_folio (mm/memremap.c).
  void folio_release(page::Folio folio) override;

  // How many folios reached refcount 0 through folio_release (statistics).
  uint64_t nr_folio_frees() const { return nr_folio_frees_.load(std::memory_order_relaxed); }

 private:
  friend class DeviceMemory;

  const DevPagemapConfig config_;
  PercpuRef ref_;
  std::atomic<bool> registered_{false};
  // Written by DeviceMemory before registered_ is published and after the pagemap is dead.
  PagemapRange range_;
  page::Page* pages_ = nullptr;
  uint64_t pages_bytes_ = 0;  // the page array's mapping length
  std::optional<Error> vmemmap_fault_;
  std::optional<phys::ResourceId> resource_;  // legacy: claimed by register_pagemap
  page::Zone* zone_ = nullptr;
  const page::Memmap* memmap_ = nullptr;  // physical pagemaps: where their descriptors are
  std::atomic<uint64_t> nr_folio_frees_{0};
};

// page_pgmap / folio->pgmap: the pagemap of a ZONE_DEVICE page (through its head page, where
// a large folio keeps it). REQUIRES: page->is_zone_device().
DevPagemap* page_pgmap(const page::Page* page);

// is_device_private_page, folio_is_device_private, and the coherent pair
// (include/linux/memremap.h): ZONE_DEVICE (or ZONE_DEVICE_PRIVATE) and the pagemap's type.
bool is_device_private_page(const page::Page* page);
bool is_device_coherent_page(const page::Page* page);
bool folio_is_device_private(page::Folio folio);
bool folio_is_device_coherent(page::Folio folio);
// A device-private page that lives in the device private address space (dpas designs): it has
// an offset and no PFN.
bool page_has_device_private_offset(const page::Page* page);

// zone_device_page_init(page, pgmap, order) (mm/memremap.c): a driver allocates a free device
// page (or 2^order of them) it owns. Every page is reset (low flag byte with any old order and
// PG_head, mapping, pgmap = `pgmap`, which also clears a stale compound head); the pagemap
// takes 2^order references; the head gets refcount 1 and is locked; order > 0 makes a large
// folio (prep_compound_page).
//   EINVAL  a page is not a free (refcount 0) page of `pgmap`, or order > MAX_PAGE_ORDER, or
//           the pages run past the pagemap
//   ENODEV  the pagemap is dead (allocation after memunmap_pages: the kernel WARNs)
Result<page::Folio> zone_device_page_init(page::Page* page, DevPagemap& pgmap, Order order);
// zone_device_folio_init: the same, and a large folio is marked large-rmappable.
Result<page::Folio> zone_device_folio_init(page::Page* page, DevPagemap& pgmap, Order order);

// zone_device_private_split_cb (mm/huge_memory.c): after a device-private folio split, calls
// ops->folio_split(orig, new) when the driver has it, and otherwise copies pgmap and mapping
// into the new folio. `tail` nullopt marks the end of the split.
void zone_device_private_split_cb(page::Folio orig, std::optional<page::Folio> tail);

}  // namespace dpmm::devmem
