// struct folio as a view over a head page (include/linux/mm_types.h, include/linux/mm.h).
//
// A folio is 2^order contiguous pages. Order 0: one ordinary page. Order > 0: a head page with
// PG_head and tail pages whose compound_head points back at it (bit 0 set); the first tail page
// carries the order (low byte of its flags), the large mapcount, the entire mapcount, the
// number of pages mapped and the pin count, as struct folio does on 64-bit kernels.
//
// Reference-count rules (include/linux/mm.h, mm/swap.c):
//   - a folio in use holds refcount >= 1; the allocator returns it with refcount 1;
//   - folio_get requires a reference already held (count > 0);
//   - folio_try_get succeeds unless the count is zero (a free or frozen folio);
//   - the folio_put that takes the count from 1 to 0 calls the page's FolioReleaser exactly
//     once (RAM: the zone frees it to the buddy; ZONE_DEVICE: the devmem layer calls
//     pgmap->ops->folio_free, kernel-baseline §2 step 7). A free device-private folio stays at 0.
// Mapcount rules: each page's _mapcount and the folio's large/entire mapcounts start at -1;
// "mapped n times" is stored as n - 1 (include/linux/rmap.h).
#pragma once

#include <cassert>
#include <cstdint>

#include "base/types.h"
#include "page/page.h"

namespace dpmm::page {

// FOLIO_MAPPING_ANON / FOLIO_MAPPING_KSM: tag bits in folio->mapping (page-flags.h).
inline constexpr uint64_t kFolioMappingAnon = 0x1;
inline constexpr uint64_t kFolioMappingKsm = 0x2;
inline constexpr uint64_t kFolioMappingFlags = kFolioMappingAnon | kFolioMappingKsm;

class Folio {
 public:
  // REQUIRES: `head` is not a tail page.
  explicit Folio(Page* head) : head_(head) {
    assert(head != nullptr && "folio of a null page");
    assert(!head->is_tail() && "a folio starts at a head page");
  }

  Page* head() const { return head_; }  // &folio->page
  bool is_large() const { return head_->is_head(); }  // folio_test_large
  Order order() const { return Order(is_large() ? head_[1].tail1_order() : 0); }
  PageCount nr_pages() const { return order().pages(); }
  // folio_page(folio, n). REQUIRES: n < nr_pages().
  Page* page(uint64_t n) const {
    assert(n < nr_pages().raw() && "folio_page beyond the folio");
    return head_ + n;
  }
  // True if `p` is one of this folio's pages.
  bool contains(const Page* p) const {
    return p >= head_ && p < head_ + nr_pages().raw();
  }

  // ---- flags on the head page ----
  bool test_flag(PageFlag f) const { return head_->test_flag(f); }
  void set_flag(PageFlag f) const { head_->set_flag(f); }
  void clear_flag(PageFlag f) const { head_->clear_flag(f); }
  ZoneType zone_id() const { return head_->zone_id(); }
  unsigned node_id() const { return head_->node_id(); }
  bool is_zone_device() const { return head_->is_zone_device(); }

  // ---- mapping ----
  bool is_anon() const { return (head_->mapping_word() & kFolioMappingAnon) != 0; }  // folio_test_anon
  // folio_test_hugetlb: the head carries PGTY_hugetlb.
  bool is_hugetlb() const { return head_->has_type(PageType::kHugetlb); }
  uint64_t mapping_word() const { return head_->mapping_word(); }
  void set_mapping_word(uint64_t w) const { head_->set_mapping_word(w); }
  uint64_t index() const { return head_->index(); }
  void set_index(uint64_t i) const { head_->set_index(i); }

  // ---- ZONE_DEVICE (folio->pgmap, folio_zone_device_data) ----
  devmem::DevPagemap* pgmap() const { return head_->pgmap(); }

  // ---- counts ----
  int ref_count() const { return head_->ref_count(); }
  // folio_mapcount: number of page-table mappings of any page of the folio.
  int mapcount() const;
  // folio_entire_mapcount: PMD-level mappings of a large folio (0 for a small one).
  int entire_mapcount() const;
  // The raw first-tail-page counters, for the rmap code. REQUIRES: is_large().
  std::atomic_ref<int32_t> large_mapcount_raw() const { return tail1()->tail1_large_mapcount(); }
  std::atomic_ref<int32_t> entire_mapcount_raw() const { return tail1()->tail1_entire_mapcount(); }
  std::atomic_ref<int32_t> nr_pages_mapped_raw() const { return tail1()->tail1_nr_pages_mapped(); }
  std::atomic_ref<int32_t> pincount_raw() const { return tail1()->tail1_pincount(); }

  bool operator==(const Folio& o) const { return head_ == o.head_; }

 private:
  Page* tail1() const {
    assert(is_large() && "first-tail-page fields exist only in large folios");
    return head_ + 1;
  }
  Page* head_;
};

// page_folio(): the folio containing `page` (head or tail). As in the kernel the caller must
// hold a reference or re-check after taking one: a concurrent split changes the answer.
inline Folio page_folio(Page* page) { return Folio(page->compound_head()); }
inline Page* folio_page(Folio folio, uint64_t n) { return folio.page(n); }
inline Order folio_order(Folio folio) { return folio.order(); }
inline PageCount folio_nr_pages(Folio folio) { return folio.nr_pages(); }
inline bool folio_test_large(Folio folio) { return folio.is_large(); }
inline int folio_ref_count(Folio folio) { return folio.ref_count(); }
inline int folio_mapcount(Folio folio) { return folio.mapcount(); }

// folio_get: REQUIRES a reference already held (count > 0).
void folio_get(Folio folio);
// folio_ref_add: as folio_get, n references.
void folio_ref_add(Folio folio, int n);
// folio_try_get: takes a reference unless the folio is free or frozen (count 0).
[[nodiscard]] bool folio_try_get(Folio folio);
// folio_put / folio_put_refs: drops references; the 1 -> 0 transition calls the releaser.
void folio_put(Folio folio);
void folio_put_refs(Folio folio, int refs);
// folio_ref_freeze: count -> 0 iff it is exactly `count` (migration's "no other users").
[[nodiscard]] bool folio_ref_freeze(Folio folio, int count);
// folio_ref_unfreeze: REQUIRES the folio frozen (count 0); sets it to `count`.
void folio_ref_unfreeze(Folio folio, int count);

// prep_compound_page (mm/page_alloc.c): makes the 2^order pages at `head` one large folio.
// Every page must be an initialised, unmapped, untyped descriptor. Order 0 is a no-op.
Folio prep_compound_page(Page* head, Order order);
// Undoes prep_compound_page (free_tail_page_prepare and ClearPageHead on the free path):
// every page becomes an independent order-0 descriptor again.
void clear_compound_page(Folio folio);

}  // namespace dpmm::page
