// A zone (struct zone, include/linux/mmzone.h) of one node.
//
// RAM zones (DMA32, Normal, Movable) own a buddy allocator over their present pages. Device
// zones (Device, DevicePrivate) have no allocator: pagemaps add their pages (present) and the
// devmem layer frees them through its own release hook; their counters show device memory
// apart from RAM.
//
// Counters follow /proc/zoneinfo: spanned = zone_end_pfn - zone_start_pfn (holes included),
// present = pages that exist, managed = pages handed to the buddy allocator so far.
//
// Deferred struct page init (CONFIG_DEFERRED_STRUCT_PAGE_INIT; mm/mm_init.c
// deferred_grow_zone, deferred_init_memmap): building a zone initialises only its first
// section's descriptors. When the allocator runs short, deferred_grow_zone initialises the
// next whole section(s) and frees them to the buddy; deferred_init_all finishes the job (the
// kernel's pgdatinit threads). So a 256 GiB node builds in milliseconds and its untouched
// descriptors cost nothing. Pages not yet initialised count as present but not managed.
//
// Locking: the zone lock (LockRank::kZone, a SpinLock like zone->lock) guards the buddy, the
// counters and the deferred-init cursor. Allocation and free never sleep.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "page/buddy.h"
#include "page/folio.h"
#include "page/memmap.h"
#include "page/pfn_range.h"
#include "page/zone_type.h"

namespace dpmm::page {

enum class DeferredInit : bool { kNo, kYes };

// A snapshot of one zone's counters.
struct ZoneStats {
  ZoneType type = ZoneType::kNormal;
  unsigned nid = 0;
  Pfn zone_start_pfn;
  PageCount spanned;
  PageCount present;
  PageCount managed;
  PageCount deferred;  // present, descriptors not initialised yet
  uint64_t nr_free_pages = 0;
  std::array<uint64_t, kNrPageOrders> nr_free_blocks{};  // /proc/buddyinfo's columns
  uint64_t nr_alloc = 0;         // successful alloc_pages calls
  uint64_t nr_alloc_pages = 0;   // pages they returned
  uint64_t nr_alloc_fail = 0;    // alloc_pages calls that returned ENOMEM
  uint64_t nr_free = 0;          // blocks returned to the buddy after allocation
  uint64_t nr_freed_pages = 0;   // pages they held
  uint64_t nr_deferred_grows = 0;
};

// The zone's counters as /proc/zoneinfo prints them (a subset).
std::string format_zoneinfo(const ZoneStats& s);

class Zone final : public FolioReleaser {
 public:
  // A RAM zone over `ram` (sorted, disjoint, non-empty ranges, all in sections that have a
  // memmap). With DeferredInit::kNo every page is initialised and freed to the buddy now.
  Zone(ZoneType type, unsigned nid, Memmap& memmap, std::vector<PfnRange> ram, DeferredInit init);
  // A device zone (kDevice or kDevicePrivate), empty until pagemaps add pages.
  Zone(ZoneType type, unsigned nid, Memmap& memmap);
  Zone(const Zone&) = delete;
  Zone& operator=(const Zone&) = delete;

  ZoneType type() const { return type_; }
  unsigned nid() const { return nid_; }
  bool has_buddy() const { return !zone_is_device(type_); }
  // zone_spans_pfn.
  bool spans(Pfn pfn) const EXCLUDES(lock_);
  ZoneStats stats() const EXCLUDES(lock_);

  // ---- RAM zones ----
  // The head page of a 2^order folio with refcount 1 (compound when order > 0, as with
  // __GFP_COMP), its descriptors reset. Grows the zone from deferred memory when short.
  //   EINVAL  order > MAX_PAGE_ORDER, or a device zone
  //   ENOMEM  no free block of that order, even after initialising every deferred page
  Result<Page*> alloc_pages(Order order) EXCLUDES(lock_);
  // __free_pages: drops the allocation's reference; frees the block when it was the last.
  // REQUIRES: `page` heads a block of `order` that this zone handed out.
  void free_pages(Page* page, Order order) EXCLUDES(lock_);
  // FolioReleaser: the folio's refcount reached zero; return it to the buddy.
  void folio_release(Folio folio) override EXCLUDES(lock_);
  // deferred_grow_zone: initialises the next deferred section; false if none is left.
  bool deferred_grow_zone() EXCLUDES(lock_);
  // Initialises every deferred page (page_alloc_init_late).
  void deferred_init_all() EXCLUDES(lock_);
  // Consistency check of the free lists and counters (tests).
  Status check() const EXCLUDES(lock_);

  // ---- device zones (move_pfn_range_to_zone / remove_pfn_range_from_zone) ----
  // Pages added by a pagemap. `span` is the PFN range for pagemaps in the physical address
  // space (legacy device-private, coherent); std::nullopt for pagemaps addressed by offset
  // (the dpas designs), which have no PFNs and so do not widen the span.
  //   EINVAL  not a device zone, or n == 0
  Status add_device_pages(PageCount n, std::optional<PfnRange> span) EXCLUDES(lock_);
  //   EINVAL  not a device zone, or more pages than present
  Status remove_device_pages(PageCount n) EXCLUDES(lock_);

 private:
  void free_frozen(Page* head, Order order) EXCLUDES(lock_);
  bool deferred_grow_locked() REQUIRES(lock_);
  // Initialises [start, end) and frees it to the buddy in the largest aligned blocks.
  void init_and_free_range_locked(Pfn start, Pfn end) REQUIRES(lock_);

  const ZoneType type_;
  const unsigned nid_;
  Memmap& memmap_;
  const std::vector<PfnRange> ram_;

  mutable SpinLock lock_{LockRank::kZone};
  BuddyAllocator buddy_ GUARDED_BY(lock_);
  ZoneStats stats_ GUARDED_BY(lock_);
  // Deferred-init cursor: the next uninitialised pfn in ram_[deferred_range_].
  size_t deferred_range_ GUARDED_BY(lock_) = 0;
  Pfn deferred_next_ GUARDED_BY(lock_);
};

}  // namespace dpmm::page
