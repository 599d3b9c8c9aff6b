#include "page/zone.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include <fmt/format.h>

namespace dpmm::page {

std::string format_zoneinfo(const ZoneStats& s) {
  std::string out = fmt::format("Node {}, zone {:>8}\n", s.nid, zone_type_name(s.type));
  out += fmt::format("  pages free     {}\n", s.nr_free_pages);
  out += fmt::format("        spanned  {}\n", s.spanned.raw());
  out += fmt::format("        present  {}\n", s.present.raw());
  out += fmt::format("        managed  {}\n", s.managed.raw());
  out += fmt::format("        deferred {}\n", s.deferred.raw());
  out += fmt::format("  start_pfn:     {}\n", s.zone_start_pfn.raw());
  out += fmt::format("  nr_alloc {} ({} pages), nr_alloc_fail {}, nr_free {} ({} pages), "
                     "deferred_grows {}\n",
                     s.nr_alloc, s.nr_alloc_pages, s.nr_alloc_fail, s.nr_free, s.nr_freed_pages,
                     s.nr_deferred_grows);
  out += "  free_area";
  for (uint64_t n : s.nr_free_blocks) out += fmt::format(" {}", n);
  out += "\n";
  return out;
}

Zone::Zone(ZoneType type, unsigned nid, Memmap& memmap, std::vector<PfnRange> ram,
           DeferredInit init)
    : type_(type), nid_(nid), memmap_(memmap), ram_(std::move(ram)), buddy_(memmap, type, nid) {
  assert(!zone_is_device(type) && "a device zone has no RAM ranges");
  assert(!ram_.empty() && "a RAM zone needs memory");
  SpinLocker guard(lock_);
  stats_.type = type;
  stats_.nid = nid;
  stats_.zone_start_pfn = ram_.front().start;
  stats_.spanned = ram_.back().end - ram_.front().start;
  for (size_t i = 0; i < ram_.size(); ++i) {
    const PfnRange& r = ram_[i];
    assert(!r.empty() && "empty RAM range");
    assert((i == 0 || ram_[i - 1].end <= r.start) && "RAM ranges unsorted or overlapping");
    assert(memmap.pfn_valid(r.start) && memmap.pfn_valid(r.end - PageCount(1)) &&
           "RAM range without a memmap");
    stats_.present += r.pages();
  }
  stats_.deferred = stats_.present;
  deferred_range_ = 0;
  deferred_next_ = ram_.front().start;
  // The first section is initialised now, the rest when needed (or all now).
  if (init == DeferredInit::kNo) {
    while (deferred_grow_locked()) {
    }
  } else {
    deferred_grow_locked();
  }
  stats_.nr_deferred_grows = 0;
}

Zone::Zone(ZoneType type, unsigned nid, Memmap& memmap)
    : type_(type), nid_(nid), memmap_(memmap), buddy_(memmap, type, nid) {
  assert(zone_is_device(type) && "a RAM zone needs RAM ranges");
  SpinLocker guard(lock_);
  stats_.type = type;
  stats_.nid = nid;
  deferred_range_ = 0;
}

bool Zone::spans(Pfn pfn) const {
  SpinLocker guard(lock_);
  return pfn >= stats_.zone_start_pfn && pfn < stats_.zone_start_pfn + stats_.spanned;
}

ZoneStats Zone::stats() const {
  SpinLocker guard(lock_);
  ZoneStats s = stats_;
  s.nr_free_pages = buddy_.nr_free_pages();
  s.nr_free_blocks = buddy_.free_blocks_per_order();
  return s;
}

void Zone::init_and_free_range_locked(Pfn start, Pfn end) {
  for (Pfn p = start; p < end; p += PageCount(1)) memmap_.init_page(p, type_, nid_, this);
  // __free_pages_memory: the largest naturally aligned block that fits, repeatedly.
  uint64_t pfn = start.raw();
  while (pfn < end.raw()) {
    unsigned order = std::min<unsigned>(kMaxPageOrder, pfn == 0 ? 64 : std::countr_zero(pfn));
    while (pfn + (uint64_t{1} << order) > end.raw()) --order;
    buddy_.free_block(memmap_.pfn_to_page_unchecked(Pfn(pfn)), Order(order));
    pfn += uint64_t{1} << order;
  }
  const PageCount n = end - start;
  stats_.managed += n;
  stats_.deferred -= n;
}

bool Zone::deferred_grow_locked() {
  if (deferred_range_ >= ram_.size()) return false;
  const PfnRange& r = ram_[deferred_range_];
  // Up to the next section boundary (whole sections, as deferred_grow_zone does).
  const uint64_t per = memmap_.pages_per_section().raw();
  const Pfn boundary = Pfn((deferred_next_.raw() / per + 1) * per);
  const Pfn end = std::min(boundary, r.end);
  init_and_free_range_locked(deferred_next_, end);
  ++stats_.nr_deferred_grows;
  if (end == r.end) {
    ++deferred_range_;
    if (deferred_range_ < ram_.size()) deferred_next_ = ram_[deferred_range_].start;
  } else {
    deferred_next_ = end;
  }
  return true;
}

bool Zone::deferred_grow_zone() {
  if (!has_buddy()) return false;
  SpinLocker guard(lock_);
  return deferred_grow_locked();
}

void Zone::deferred_init_all() {
  if (!has_buddy()) return;
  SpinLocker guard(lock_);
  while (deferred_grow_locked()) {
  }
}

Result<Page*> Zone::alloc_pages(Order order) {
  if (!has_buddy()) {
    return make_error(Errno::kEINVAL, "alloc_pages: zone {} of node {} has no buddy allocator",
                      zone_type_name(type_), nid_);
  }
  if (order.raw() > kMaxPageOrder) {
    return make_error(Errno::kEINVAL, "alloc_pages: order {} above MAX_PAGE_ORDER {}",
                      order.raw(), kMaxPageOrder);
  }
  Page* page = nullptr;
  {
    SpinLocker guard(lock_);
    while ((page = buddy_.take_block(order)) == nullptr) {
      if (!deferred_grow_locked()) break;
    }
    if (page == nullptr) {
      ++stats_.nr_alloc_fail;
      return make_error(Errno::kENOMEM, "alloc_pages: zone {} of node {} has no free {} block "
                        "({} pages free)",
                        zone_type_name(type_), nid_, order, buddy_.nr_free_pages());
    }
    ++stats_.nr_alloc;
    stats_.nr_alloc_pages += order.pages().raw();
  }
  // post_alloc_hook / prep_new_page: the caller owns the block from here on.
  page->set_ref_count(1);
  prep_compound_page(page, order);
  return page;
}

void Zone::free_pages(Page* page, Order order) {
  assert(!page->is_tail() && "free_pages of a tail page");
  assert(Folio(page).order() == order && "free_pages with an order other than the folio's");
  if (page->ref_sub_return(1) != 0) return;
  free_frozen(page, order);
}

void Zone::folio_release(Folio folio) {
  if (!has_buddy()) {
    std::fprintf(stderr,
                 "dpmm: a %s-zone folio reached refcount 0 without a pagemap release hook\n",
                 std::string(zone_type_name(type_)).c_str());
    std::abort();
  }
  free_frozen(folio.head(), folio.order());
}

void Zone::free_frozen(Page* head, Order order) {
  assert(head->ref_count() == 0 && "freeing a referenced folio");
  assert(!head->test_flag(PageFlag::kLocked) && "freeing a locked folio");
  assert(!head->test_flag(PageFlag::kLru) && "freeing a folio still on an LRU list");
  // free_pages_prepare: undo the folio and reset every descriptor.
  clear_compound_page(Folio(head));
  const uint64_t n = order.pages().raw();
  for (uint64_t i = 0; i < n; ++i) {
    Page* p = head + i;
    assert(p->mapcount_raw() == -1 && "freeing a mapped page");
    p->clear_page_flags();
    p->set_mapping_word(0);
    p->set_index(0);
    p->set_private_data(0);
    p->set_lru_next(nullptr);
    p->set_lru_prev(nullptr);
    p->set_releaser(this);
  }
  SpinLocker guard(lock_);
  buddy_.free_block(head, order);
  ++stats_.nr_free;
  stats_.nr_freed_pages += n;
}

Status Zone::check() const {
  SpinLocker guard(lock_);
  TRY(buddy_.check());
  return ok();
}

Status Zone::add_device_pages(PageCount n, std::optional<PfnRange> span) {
  if (!zone_is_device(type_) || n.raw() == 0) {
    return make_error(Errno::kEINVAL, "add_device_pages: {} pages to zone {}", n.raw(),
                      zone_type_name(type_));
  }
  SpinLocker guard(lock_);
  stats_.present += n;
  if (span.has_value() && !span->empty()) {
    const Pfn old_end = stats_.zone_start_pfn + stats_.spanned;
    const bool empty = stats_.spanned.raw() == 0;
    const Pfn start = empty ? span->start : std::min(stats_.zone_start_pfn, span->start);
    const Pfn end = empty ? span->end : std::max(old_end, span->end);
    stats_.zone_start_pfn = start;
    stats_.spanned = end - start;
  }
  return ok();
}

Status Zone::remove_device_pages(PageCount n) {
  SpinLocker guard(lock_);
  if (!zone_is_device(type_) || n > stats_.present) {
    return make_error(Errno::kEINVAL, "remove_device_pages: {} pages from zone {} holding {}",
                      n.raw(), zone_type_name(type_), stats_.present.raw());
  }
  stats_.present -= n;
  // The kernel shrinks the span only at its edges (shrink_zone_span); dpmm resets it once the
  // zone is empty and otherwise keeps the widest span seen.
  if (stats_.present.raw() == 0) {
    stats_.zone_start_pfn = Pfn(0);
    stats_.spanned = PageCount(0);
  }
  return ok();
}

}  // namespace dpmm::page
