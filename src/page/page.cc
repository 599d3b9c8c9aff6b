#include "page/page.h"

#include <new>

namespace dpmm::page {

void Page::set_links(const PageLinks& links) {
  assert(bits::fits(links.section, kSectionsWidth) && "section number does not fit the flags");
  assert(bits::fits(links.nid, kNodesWidth) && "node id does not fit the flags");
  uint64_t w = flags_.load(std::memory_order_relaxed);
  w = bits::insert(w, kZonesPgShift, kNodesPgShift - 1, static_cast<uint64_t>(links.zone));
  w = bits::insert(w, kNodesPgShift, kSectionsPgShift - 1, links.nid);
  w = bits::insert(w, kSectionsPgShift, 63, links.section);
  flags_.store(w, std::memory_order_release);
  releaser_ = links.releaser;
}

bool Page::ref_add_unless_zero(int n) {
  int cur = refcount_.load(std::memory_order_relaxed);
  while (cur != 0) {
    if (refcount_.compare_exchange_weak(cur, cur + n, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

int Page::mapcount() const {
  const int32_t raw = mapcount_raw();
  // A typed page (buddy, ...) stores its type here, not a count: any value below
  // PGTY_mapcount_underflow << 24 is a type (page_mapcount_is_type, page-flags.h).
  constexpr int32_t kTypeLimit = static_cast<int32_t>(0xffu << kPageTypeShift);
  if (raw < kTypeLimit) return 0;
  return raw + 1;
}

void Page::set_type(PageType t) {
  assert(page_type() == kNoPageType && "page already has a type or is mapped");
  mapcount_.store(static_cast<int32_t>(static_cast<uint32_t>(t) << kPageTypeShift),
                  std::memory_order_release);
}

void Page::clear_type(PageType t) {
  assert(has_type(t) && "clearing a page type the page does not have");
  (void)t;
  mapcount_.store(-1, std::memory_order_release);
}

void Page::set_tail1_order(unsigned order) {
  assert(order <= kFolioOrderMask && "folio order does not fit the low byte");
  uint64_t w = flags_.load(std::memory_order_relaxed);
  flags_.store((w & ~kFolioOrderMask) | order, std::memory_order_release);
}

Page* init_single_page(Page* slot, const PageLinks& links) {
  Page* p = new (slot) Page();
  p->set_links(links);
  return p;
}

}  // namespace dpmm::page
