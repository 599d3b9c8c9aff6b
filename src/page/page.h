// struct page: the 64-byte descriptor of one base page (include/linux/mm_types.h).
//
// Layout (offsets in bytes; pinned by static_asserts in PageLayout below):
//
//    0  flags          atomic word: PG_* bits low, SECTION|NODE|ZONE high (page_flags.h).
//                      First tail page of a large folio: folio order in the low byte.
//    8  w1             lru.next / buddy_list.next   (small, head and free pages)
//                      compound_head | 1            (tail pages; bit 0 tags a tail)
//                      pgmap                        (ZONE_DEVICE pages)
//   16  w2             lru.prev / buddy_list.prev
//                      zone_device_data             (ZONE_DEVICE pages)
//                      _large_mapcount (16), _nr_pages_mapped (20)   (first tail page)
//   24  mapping        address_space or anon_vma, low bits tagged (FOLIO_MAPPING_*)
//                      _entire_mapcount (24), _pincount (28)         (first tail page)
//   32  index          page offset in the mapping (pgoff_t)
//   40  private        owner data; swap entry (swapcache); buddy order (free pages)
//   48  _mapcount      atomic int, -1 when unmapped; shares storage with page_type
//   52  _refcount      atomic int
//   56  releaser       dpmm: who frees the folio when its refcount drops to zero (the kernel
//                      keeps memcg_data here and finds the free path from the zone / pgmap;
//                      dpmm injects it so that tests and the devmem layer can plug in)
//
// The first-tail-page fields follow the 64-bit layout of struct folio (mm_types.h:
// _flags_1, _head_1, _large_mapcount, _nr_pages_mapped, _entire_mapcount, _pincount).
// The folio's page count is derived from its order rather than cached in _nr_pages.
//
// Concurrency: flags, _mapcount and _refcount are atomics; compound_head is read with a relaxed
// atomic load (READ_ONCE) because page_folio() may race with a split. The other words are
// written only by whoever owns the page (the allocator while it is free, the folio lock or the
// page-table lock holder while it is in use).
#pragma once

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "base/bits.h"
#include "page/page_flags.h"
#include "page/zone_type.h"

namespace dpmm::devmem {
// A device pagemap (struct dev_pagemap), defined by the devmem layer; opaque here.
class DevPagemap;
}  // namespace dpmm::devmem

namespace dpmm::page {

class Folio;

// Frees a folio whose reference count has dropped to zero (the kernel's __folio_put ->
// free_frozen_pages for RAM, free_zone_device_folio -> pgmap->ops->folio_free for ZONE_DEVICE,
// mm/swap.c and mm/memremap.c). Called exactly once per 1 -> 0 transition, from whatever
// context dropped the last reference: implementations must not sleep on locks ranked below
// the caller's (the free path takes only the zone lock or a driver spinlock).
class FolioReleaser {
 public:
  virtual ~FolioReleaser() = default;
  virtual void folio_release(Folio folio) = 0;
};

// The zone, node and section a descriptor belongs to, written once at init (set_page_links in
// include/linux/mm.h).
struct PageLinks {
  ZoneType zone = ZoneType::kNormal;
  unsigned nid = 0;
  uint64_t section = 0;
  FolioReleaser* releaser = nullptr;
};

class Page {
 public:
  // An initialised, unowned descriptor: no flags, refcount 0, _mapcount -1, no links.
  Page() = default;
  Page(const Page&) = delete;
  Page& operator=(const Page&) = delete;

  // ---- flags (PageFoo / SetPageFoo / ClearPageFoo / TestSetPageFoo) ----
  bool test_flag(PageFlag f) const {
    return (flags_.load(std::memory_order_acquire) & page_flag_mask(f)) != 0;
  }
  void set_flag(PageFlag f) { flags_.fetch_or(page_flag_mask(f), std::memory_order_release); }
  void clear_flag(PageFlag f) {
    flags_.fetch_and(~page_flag_mask(f), std::memory_order_release);
  }
  // Returns the old value of the bit.
  bool test_and_set_flag(PageFlag f) {
    return (flags_.fetch_or(page_flag_mask(f), std::memory_order_acq_rel) & page_flag_mask(f)) != 0;
  }
  bool test_and_clear_flag(PageFlag f) {
    return (flags_.fetch_and(~page_flag_mask(f), std::memory_order_acq_rel) &
            page_flag_mask(f)) != 0;
  }
  uint64_t flags_word() const { return flags_.load(std::memory_order_acquire); }
  // Clears every PG_* bit, keeping the zone/node/section links (the free path's reset).
  void clear_page_flags() { flags_.fetch_and(~kPageFlagsMask, std::memory_order_release); }
  // The raw atomic, for the folio lock's combined clear-and-test (folio_lock.cc).
  std::atomic<uint64_t>& flags_atomic() { return flags_; }

  // ---- links (page_zonenum, page_to_nid, page_to_section) ----
  ZoneType zone_id() const {
    return static_cast<ZoneType>(bits::extract(flags_word(), kZonesPgShift, kNodesPgShift - 1));
  }
  unsigned node_id() const {
    return static_cast<unsigned>(bits::extract(flags_word(), kNodesPgShift, kSectionsPgShift - 1));
  }
  uint64_t section_nr() const { return bits::extract(flags_word(), kSectionsPgShift, 63); }
  // REQUIRES: the descriptor is not yet visible to other threads (init time).
  void set_links(const PageLinks& links);

  // ---- compound pages ----
  bool is_head() const { return test_flag(PageFlag::kHead); }
  bool is_tail() const { return (compound_head_word() & 1) != 0; }
  // PageCompound: head or tail of a large folio.
  bool is_compound() const { return is_head() || is_tail(); }
  // compound_head(): the head page of the folio this page belongs to (itself if not a tail).
  Page* compound_head() {
    const uint64_t w = compound_head_word();
    return (w & 1) ? reinterpret_cast<Page*>(w - 1) : this;
  }
  const Page* compound_head() const { return const_cast<Page*>(this)->compound_head(); }
  // Makes this page a tail of `head` (prep_compound_tail) / an ordinary page again.
  void set_compound_head(Page* head) {
    std::atomic_ref<uint64_t>(w1_.u64).store(reinterpret_cast<uint64_t>(head) | 1,
                                             std::memory_order_release);
  }
  void clear_compound_head() { std::atomic_ref<uint64_t>(w1_.u64).store(0, std::memory_order_release); }

  // ---- lru / buddy free-list links (list_head lru, buddy_list) ----
  Page* lru_next() const { return static_cast<Page*>(w1_.ptr); }
  Page* lru_prev() const { return static_cast<Page*>(w2_.ptr); }
  void set_lru_next(Page* p) { w1_.ptr = p; }
  void set_lru_prev(Page* p) { w2_.ptr = p; }

  // ---- ZONE_DEVICE (page_pgmap, folio_zone_device_data) ----
  devmem::DevPagemap* pgmap() const { return static_cast<devmem::DevPagemap*>(w1_.ptr); }
  void set_pgmap(devmem::DevPagemap* pgmap) { w1_.ptr = pgmap; }
  void* zone_device_data() const { return w2_.ptr; }
  void set_zone_device_data(void* data) { w2_.ptr = data; }
  bool is_zone_device() const { return zone_is_device(zone_id()); }

  // ---- mapping, index, private ----
  uint64_t mapping_word() const { return mapping_.u64; }
  void set_mapping_word(uint64_t w) { mapping_.u64 = w; }
  uint64_t index() const { return index_; }
  void set_index(uint64_t i) { index_ = i; }
  uint64_t private_data() const { return private_; }  // page_private()
  void set_private_data(uint64_t v) { private_ = v; }  // set_page_private()

  // ---- reference count (include/linux/page_ref.h) ----
  int ref_count() const { return refcount_.load(std::memory_order_acquire); }
  void set_ref_count(int v) { refcount_.store(v, std::memory_order_release); }
  int ref_add_return(int n) { return refcount_.fetch_add(n, std::memory_order_acq_rel) + n; }
  int ref_sub_return(int n) { return refcount_.fetch_sub(n, std::memory_order_acq_rel) - n; }
  // page_ref_add_unless(page, n, 0): adds unless the count is zero; false if it was.
  bool ref_add_unless_zero(int n);
  // page_ref_freeze: count -> 0 iff it equals `expected`.
  bool ref_freeze(int expected) {
    return refcount_.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
  }

  // ---- _mapcount (starts at -1: "mapped zero times") ----
  int mapcount_raw() const { return mapcount_.load(std::memory_order_acquire); }
  int mapcount_add_return(int n) { return mapcount_.fetch_add(n, std::memory_order_acq_rel) + n; }
  void reset_mapcount() { mapcount_.store(-1, std::memory_order_release); }  // page_mapcount_reset
  // page_mapcount(): how many page tables map this page (0 if it carries a page type).
  int mapcount() const;

  // ---- page type (shares storage with _mapcount) ----
  uint32_t page_type() const { return static_cast<uint32_t>(mapcount_raw()); }
  bool has_type(PageType t) const {
    return (page_type() >> kPageTypeShift) == static_cast<uint32_t>(t);
  }
  // REQUIRES: the page has no type and is unmapped.
  void set_type(PageType t);
  // REQUIRES: the page has type `t`.
  void clear_type(PageType t);

  // ---- buddy (PageBuddy, buddy_order) ----
  bool is_buddy() const { return has_type(PageType::kBuddy); }
  unsigned buddy_order() const { return static_cast<unsigned>(private_); }

  // ---- first tail page of a large folio ----
  unsigned tail1_order() const { return static_cast<unsigned>(flags_word() & kFolioOrderMask); }
  void set_tail1_order(unsigned order);
  std::atomic_ref<int32_t> tail1_large_mapcount() { return std::atomic_ref<int32_t>(w2_.s32[0]); }
  std::atomic_ref<int32_t> tail1_nr_pages_mapped() { return std::atomic_ref<int32_t>(w2_.s32[1]); }
  std::atomic_ref<int32_t> tail1_entire_mapcount() { return std::atomic_ref<int32_t>(mapping_.s32[0]); }
  std::atomic_ref<int32_t> tail1_pincount() { return std::atomic_ref<int32_t>(mapping_.s32[1]); }

  // ---- dpmm release hook ----
  FolioReleaser* releaser() const { return releaser_; }
  void set_releaser(FolioReleaser* r) { releaser_ = r; }

 private:
  friend struct PageLayout;

  // One 8-byte slot read as a word, a pointer or two ints, as struct page's unions do.
  union Word {
    uint64_t u64;
    void* ptr;
    int32_t s32[2];
  };

  uint64_t compound_head_word() const {
    return std::atomic_ref<uint64_t>(const_cast<Word&>(w1_).u64).load(std::memory_order_relaxed);
  }

  std::atomic<uint64_t> flags_{0};
  Word w1_{.u64 = 0};
  Word w2_{.u64 = 0};
  Word mapping_{.u64 = 0};
  uint64_t index_ = 0;
  uint64_t private_ = 0;
  std::atomic<int32_t> mapcount_{-1};
  std::atomic<int32_t> refcount_{0};
  FolioReleaser* releaser_ = nullptr;
};

// Pins the descriptor layout described at the top of this file.
struct PageLayout {
  static_assert(sizeof(Page) == 64, "struct page is 64 bytes");
  static_assert(alignof(Page) == 8);
  static_assert(std::is_standard_layout_v<Page>);
  static_assert(offsetof(Page, flags_) == 0);
  static_assert(offsetof(Page, w1_) == 8);
  static_assert(offsetof(Page, w2_) == 16);
  static_assert(offsetof(Page, mapping_) == 24);
  static_assert(offsetof(Page, index_) == 32);
  static_assert(offsetof(Page, private_) == 40);
  static_assert(offsetof(Page, mapcount_) == 48);
  static_assert(offsetof(Page, refcount_) == 52);
  static_assert(offsetof(Page, releaser_) == 56);
  static_assert(std::atomic<uint64_t>::is_always_lock_free);
  static_assert(std::atomic<int32_t>::is_always_lock_free);
};

// __init_single_page (mm/mm_init.c): constructs a fresh descriptor in `slot` (refcount 0,
// _mapcount -1, no flags) carrying `links`. REQUIRES: nobody else uses the slot.
Page* init_single_page(Page* slot, const PageLinks& links);

}  // namespace dpmm::page
