// The buddy allocator of one zone (mm/page_alloc.c: __free_one_page, __rmqueue_smallest,
// expand, page_is_buddy; include/linux/mmzone.h: struct free_area).
//
// Free memory is kept as naturally aligned blocks of 2^order pages, order 0..MAX_PAGE_ORDER
// (10: 4 MiB). A free block's head page carries PageBuddy (page type) and its order in
// `private`, and is linked into free_area[order] through its lru words. Freeing a block merges
// it with its buddy -- the block at pfn ^ (1 << order) -- while that buddy is a free block of
// the same order in the same zone, then merges the result again one order up. Allocating takes
// the smallest free block of at least the wanted order and splits off the upper halves back
// into the free lists (expand).
//
// A buddy always lies in the same memory section (a section is 2^15 pages, a max-order block
// 2^10), so the buddy's descriptor is found by pointer arithmetic within the section's array,
// as the kernel does; a descriptor never initialised reads as zeros and so is never a buddy.
//
// Not thread-safe: the owning Zone serialises every call under its zone lock.
#pragma once

#include <array>
#include <cstdint>

#include "base/result.h"
#include "base/types.h"
#include "page/memmap.h"
#include "page/page.h"
#include "page/zone_type.h"

namespace dpmm::page {

inline constexpr unsigned kMaxPageOrder = 10;                // MAX_PAGE_ORDER
inline constexpr unsigned kNrPageOrders = kMaxPageOrder + 1;  // NR_PAGE_ORDERS

class BuddyAllocator {
 public:
  BuddyAllocator(const Memmap& memmap, ZoneType zone, unsigned nid);
  BuddyAllocator(const BuddyAllocator&) = delete;
  BuddyAllocator& operator=(const BuddyAllocator&) = delete;

  // __rmqueue_smallest + expand: the head page of a 2^order block, no longer PageBuddy, or
  // null if no free block of that order or larger exists. The block's pages are left as the
  // allocator keeps them (refcount 0, not compound); the zone prepares them for use.
  Page* take_block(Order order);
  // __free_one_page: returns a block to the free lists, merging with its buddies.
  // REQUIRES: `page` heads a naturally aligned 2^order block of this zone whose pages are
  // all refcount 0, unmapped, untyped and not compound.
  void free_block(Page* page, Order order);

  uint64_t nr_free_pages() const { return nr_free_pages_; }
  uint64_t nr_free_blocks(unsigned order) const { return free_area_[order].nr_free; }
  std::array<uint64_t, kNrPageOrders> free_blocks_per_order() const;

  // Walks every free list and checks it against the counters and the PageBuddy markers.
  // EIO names the first inconsistency.
  Status check() const;

 private:
  struct FreeArea {
    Page* head = nullptr;  // doubly linked through lru_next/lru_prev, null-terminated
    uint64_t nr_free = 0;
  };

  bool page_is_buddy(const Page* buddy, unsigned order) const;
  void add_to_free_list(Page* page, unsigned order);
  void del_from_free_list(Page* page, unsigned order);

  const Memmap& memmap_;
  const ZoneType zone_;
  const unsigned nid_;
  std::array<FreeArea, kNrPageOrders> free_area_;
  uint64_t nr_free_pages_ = 0;
};

}  // namespace dpmm::page
