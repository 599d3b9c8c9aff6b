#include "page/buddy.h"

#include <cassert>

namespace dpmm::page {

BuddyAllocator::BuddyAllocator(const Memmap& memmap, ZoneType zone, unsigned nid)
    : memmap_(memmap), zone_(zone), nid_(nid) {
  assert(memmap.pages_per_section().raw() >= (uint64_t{1} << kMaxPageOrder) &&
         "a max-order block must fit in one section");
}

std::array<uint64_t, kNrPageOrders> BuddyAllocator::free_blocks_per_order() const {
  std::array<uint64_t, kNrPageOrders> out{};
  for (unsigned o = 0; o < kNrPageOrders; ++o) out[o] = free_area_[o].nr_free;
  return out;
}

bool BuddyAllocator::page_is_buddy(const Page* buddy, unsigned order) const {
  return buddy->is_buddy() && buddy->buddy_order() == order && buddy->zone_id() == zone_ &&
         buddy->node_id() == nid_;
}

void BuddyAllocator::add_to_free_list(Page* page, unsigned order) {
  FreeArea& area = free_area_[order];
  page->set_type(PageType::kBuddy);
  page->set_private_data(order);  // set_buddy_order
  page->set_lru_prev(nullptr);
  page->set_lru_next(area.head);
  if (area.head != nullptr) area.head->set_lru_prev(page);
  area.head = page;
  ++area.nr_free;
  nr_free_pages_ += uint64_t{1} << order;
}

void BuddyAllocator::del_from_free_list(Page* page, unsigned order) {
  FreeArea& area = free_area_[order];
  Page* next = page->lru_next();
  Page* prev = page->lru_prev();
  if (prev != nullptr) {
    prev->set_lru_next(next);
  } else {
    assert(area.head == page && "free block not on its free list");
    area.head = next;
  }
  if (next != nullptr) next->set_lru_prev(prev);
  page->set_lru_next(nullptr);
  page->set_lru_prev(nullptr);
  page->clear_type(PageType::kBuddy);
  page->set_private_data(0);
  --area.nr_free;
  nr_free_pages_ -= uint64_t{1} << order;
}

Page* BuddyAllocator::take_block(Order order) {
  const unsigned want = order.raw();
  assert(want <= kMaxPageOrder && "order above MAX_PAGE_ORDER");
  for (unsigned high = want; high <= kMaxPageOrder; ++high) {
    Page* page = free_area_[high].head;
    if (page == nullptr) continue;
    del_from_free_list(page, high);
    // expand(): hand the upper half back at each step down.
    while (high > want) {
      --high;
      add_to_free_list(page + (uint64_t{1} << high), high);
    }
    return page;
  }
  return nullptr;
}

void BuddyAllocator::free_block(Page* page, Order order) {
  unsigned o = order.raw();
  assert(o <= kMaxPageOrder && "order above MAX_PAGE_ORDER");
  assert(page->zone_id() == zone_ && "freeing a page into the wrong zone");
  assert(page->ref_count() == 0 && "freeing a page that is still referenced");
  assert(!page->is_buddy() && "double free of a buddy block");
  assert(!page->is_compound() && "freeing a compound page without clearing it");
  uint64_t pfn = memmap_.page_to_pfn_unchecked(page).raw();
  assert((pfn & ((uint64_t{1} << o) - 1)) == 0 && "free block not naturally aligned");
  while (o < kMaxPageOrder) {
    const uint64_t buddy_pfn = pfn ^ (uint64_t{1} << o);  // __find_buddy_pfn
    Page* buddy = page + (static_cast<int64_t>(buddy_pfn) - static_cast<int64_t>(pfn));
    if (!page_is_buddy(buddy, o)) break;
    del_from_free_list(buddy, o);
    const uint64_t combined = buddy_pfn & pfn;
    page = page + (static_cast<int64_t>(combined) - static_cast<int64_t>(pfn));
    pfn = combined;
    ++o;
  }
  add_to_free_list(page, o);
}

Status BuddyAllocator::check() const {
  uint64_t pages = 0;
  for (unsigned o = 0; o < kNrPageOrders; ++o) {
    uint64_t n = 0;
    const Page* prev = nullptr;
    for (const Page* p = free_area_[o].head; p != nullptr; p = p->lru_next()) {
      if (!p->is_buddy() || p->buddy_order() != o) {
        return make_error(Errno::kEIO, "buddy: block on free_area[{}] lacks PageBuddy/order", o);
      }
      if (p->lru_prev() != prev) {
        return make_error(Errno::kEIO, "buddy: broken prev link on free_area[{}]", o);
      }
      const uint64_t pfn = memmap_.page_to_pfn_unchecked(p).raw();
      if ((pfn & ((uint64_t{1} << o) - 1)) != 0) {
        return make_error(Errno::kEIO, "buddy: order-{} block at pfn {:#x} is misaligned", o, pfn);
      }
      prev = p;
      ++n;
    }
    if (n != free_area_[o].nr_free) {
      return make_error(Errno::kEIO, "buddy: free_area[{}] holds {} blocks, counter says {}", o, n,
                        free_area_[o].nr_free);
    }
    pages += n << o;
  }
  if (pages != nr_free_pages_) {
    return make_error(Errno::kEIO, "buddy: free lists hold {} pages, counter says {}", pages,
                      nr_free_pages_);
  }
  return ok();
}

}  // namespace dpmm::page
