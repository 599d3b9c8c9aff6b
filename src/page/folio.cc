#include "page/folio.h"

#include <cstdio>
#include <cstdlib>

namespace dpmm::page {

int Folio::mapcount() const {
  if (!is_large()) return head_->mapcount();
  return large_mapcount_raw().load(std::memory_order_acquire) + 1;
}

int Folio::entire_mapcount() const {
  if (!is_large()) return 0;
  return entire_mapcount_raw().load(std::memory_order_acquire) + 1;
}

void folio_get(Folio folio) { folio_ref_add(folio, 1); }

void folio_ref_add(Folio folio, int n) {
  [[maybe_unused]] const int now = folio.head()->ref_add_return(n);
  assert(now > n && "folio_get on a folio nobody holds (refcount was 0)");
}

bool folio_try_get(Folio folio) { return folio.head()->ref_add_unless_zero(1); }

void folio_put(Folio folio) { folio_put_refs(folio, 1); }

void folio_put_refs(Folio folio, int refs) {
  assert(refs > 0 && "folio_put_refs of a non-positive count");
  const int now = folio.head()->ref_sub_return(refs);
  if (now > 0) return;
  if (now < 0) {
    std::fprintf(stderr, "dpmm: folio refcount underflow (%d) on page %p\n", now,
                 static_cast<void*>(folio.head()));
    std::abort();
  }
  FolioReleaser* r = folio.head()->releaser();
  assert(r != nullptr && "folio reached refcount 0 with no release hook");
  r->folio_release(folio);
}

bool folio_ref_freeze(Folio folio, int count) { return folio.head()->ref_freeze(count); }

void folio_ref_unfreeze(Folio folio, int count) {
  assert(folio.ref_count() == 0 && "folio_ref_unfreeze of a folio that is not frozen");
  folio.head()->set_ref_count(count);
}

Folio prep_compound_page(Page* head, Order order) {
  if (order.raw() == 0) return Folio(head);
  const uint64_t n = order.pages().raw();
  for (uint64_t i = 1; i < n; ++i) {
    Page* tail = head + i;
    assert(!tail->is_compound() && "prep_compound_page over a page already in a folio");
    tail->set_compound_head(head);
  }
  Page* tail1 = head + 1;
  tail1->set_tail1_order(order.raw());
  tail1->tail1_large_mapcount().store(-1, std::memory_order_relaxed);
  tail1->tail1_entire_mapcount().store(-1, std::memory_order_relaxed);
  tail1->tail1_nr_pages_mapped().store(0, std::memory_order_relaxed);
  tail1->tail1_pincount().store(0, std::memory_order_relaxed);
  head->set_flag(PageFlag::kHead);
  return Folio(head);
}

void clear_compound_page(Folio folio) {
  if (!folio.is_large()) return;
  Page* head = folio.head();
  const uint64_t n = folio.nr_pages().raw();
  Page* tail1 = head + 1;
  tail1->set_tail1_order(0);
  // The first tail page's counters overlaid its lru.prev and mapping words.
  tail1->set_lru_prev(nullptr);
  tail1->set_mapping_word(0);
  for (uint64_t i = 1; i < n; ++i) head[i].clear_compound_head();
  head->clear_flag(PageFlag::kHead);
}

}  // namespace dpmm::page
