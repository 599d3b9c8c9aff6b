#include "devmem/dev_pagemap.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

#include "page/buddy.h"
#include "page/folio_lock.h"
#include "page/memmap.h"

namespace dpmm::devmem {

std::string_view memory_type_name(MemoryType t) {
  switch (t) {
    case MemoryType::kDevicePrivate:
      return "MEMORY_DEVICE_PRIVATE";
    case MemoryType::kDeviceCoherent:
      return "MEMORY_DEVICE_COHERENT";
  }
  return "MEMORY_DEVICE_?";
}

namespace {
[[noreturn]] void missing_op(const char* op) {
  std::fprintf(stderr, "dpmm: dev_pagemap_ops->%s called but the driver does not provide it\n",
               op);
  std::abort();
}
}  // namespace

void DevPagemapOps::folio_free(page::Folio) { missing_op("folio_free"); }
VmFaultCode DevPagemapOps::migrate_to_ram(mm::VmFault&) { missing_op("migrate_to_ram"); }
void DevPagemapOps::folio_split(page::Folio, std::optional<page::Folio>) {
  missing_op("folio_split");
}

DevPagemap::DevPagemap(DevPagemapConfig config) : config_(std::move(config)) {}

DevPagemap::~DevPagemap() {
  if (is_registered()) {
    std::fprintf(stderr, "dpmm: pagemap '%s' destroyed while still registered\n",
                 config_.name.c_str());
    std::abort();
  }
}

const PagemapRange& DevPagemap::range() const {
  assert(is_registered() && "range of an unregistered pagemap");
  return range_;
}

page::Page* DevPagemap::page_at(uint64_t n) const {
  assert(uses_page_array() && "page_at of a pagemap without a page array");
  assert(n < nr_pages().raw() && "page_at beyond the pagemap");
  return pages_ + n;
}

Result<uint64_t> DevPagemap::page_index(const page::Page* p) const {
  if (!is_registered()) {
    return make_error(Errno::kEINVAL, "pagemap '{}' is not registered", config_.name);
  }
  if (uses_page_array()) {
    if (!owns_array_page(p)) {
      return make_error(Errno::kEINVAL, "page {} is not in the page array of pagemap '{}'",
                        static_cast<const void*>(p), config_.name);
    }
    return static_cast<uint64_t>(p - pages_);
  }
  if (vmemmap_fault_.has_value()) return *vmemmap_fault_;
  assert(memmap_ != nullptr && "a physical pagemap without its memmap");
  const Pfn pfn = TRY(memmap_->page_to_pfn(p));
  const Pfn first = Pfn(range_.start >> kPageShift);
  if (pfn < first || pfn >= first + nr_pages()) {
    return make_error(Errno::kEINVAL, "{} is outside pagemap '{}' [{}, +{})", pfn, config_.name,
                      first, nr_pages().raw());
  }
  return (pfn - first).raw();
}

int64_t DevPagemap::nr_references() const {
  const int64_t c = ref_.count();
  return ref_.is_dying() ? c : c - 1;
}

void DevPagemap::folio_release(page::Folio folio) {
  // free_zone_device_folio (mm/memremap.c). mem_cgroup_uncharge and the mTHP counters are not
  // modelled.
  assert(page_pgmap(folio.head()) == this && "folio freed through another pagemap");
  const uint64_t nr = folio.nr_pages().raw();
  if (folio.is_anon()) {
    for (uint64_t i = 0; i < nr; ++i) folio.page(i)->clear_flag(page::PageFlag::kAnonExclusive);
  }
  // PRIVATE and COHERENT: the stale mapping (anon tag bits included) must not survive.
  folio.set_mapping_word(0);
  assert(has(config_.ops->provided(), PagemapOps::kFolioFree) &&
         "a registered pagemap without folio_free");
  config_.ops->folio_free(folio);
  nr_folio_frees_.fetch_add(1, std::memory_order_relaxed);
  ref_.put_many(nr);
}

DevPagemap* page_pgmap(const page::Page* page) {
  assert(page->is_zone_device() && "page_pgmap of a page outside ZONE_DEVICE");
  return page->compound_head()->pgmap();
}

bool is_device_private_page(const page::Page* page) {
  return page->is_zone_device() && page_pgmap(page)->type() == MemoryType::kDevicePrivate;
}

bool is_device_coherent_page(const page::Page* page) {
  return page->is_zone_device() && page_pgmap(page)->type() == MemoryType::kDeviceCoherent;
}

bool folio_is_device_private(page::Folio folio) { return is_device_private_page(folio.head()); }
bool folio_is_device_coherent(page::Folio folio) { return is_device_coherent_page(folio.head()); }

bool page_has_device_private_offset(const page::Page* page) {
  return is_device_private_page(page) && page_pgmap(page)->uses_page_array();
}

Result<page::Folio> zone_device_page_init(page::Page* page, DevPagemap& pgmap, Order order) {
  if (order.raw() > page::kMaxPageOrder) {
    return make_error(Errno::kEINVAL, "zone_device_page_init: order {} above MAX_PAGE_ORDER {}",
                      order.raw(), page::kMaxPageOrder);
  }
  if (!pgmap.is_registered()) {
    return make_error(Errno::kENODEV, "zone_device_page_init: pagemap '{}' is not registered",
                      pgmap.config().name);
  }
  const uint64_t first = TRY(pgmap.page_index(page));
  const uint64_t n = order.pages().raw();
  if (first % n != 0 || first + n > pgmap.nr_pages().raw()) {
    return make_error(Errno::kEINVAL,
                      "zone_device_page_init: pages [{}, +{}) of pagemap '{}' ({} pages) are "
                      "not a naturally aligned run inside it",
                      first, n, pgmap.config().name, pgmap.nr_pages().raw());
  }
  for (uint64_t i = 0; i < n; ++i) {
    const page::Page* p = page + i;
    if (!p->is_zone_device() || page_pgmap(p) != &pgmap || p->ref_count() != 0) {
      return make_error(Errno::kEINVAL,
                        "zone_device_page_init: page {} of the run is not a free page of "
                        "pagemap '{}' (refcount {})",
                        i, pgmap.config().name, p->ref_count());
    }
  }
  // Drivers must not allocate after memunmap_pages (the kernel WARNs and goes on).
  if (pgmap.ref().is_dying() || !pgmap.ref().tryget_many(n)) {
    return make_error(Errno::kENODEV, "zone_device_page_init: pagemap '{}' is being torn down",
                      pgmap.config().name);
  }
  for (uint64_t i = 0; i < n; ++i) {
    page::Page* p = page + i;
    // The page may have been part of a larger folio: drop any order and PG_head bits, and
    // overwrite the compound head with the pgmap.
    p->flags_atomic().fetch_and(~page::kFolioOrderMask, std::memory_order_acq_rel);
    p->set_mapping_word(0);
    p->set_pgmap(&pgmap);
  }
  page->set_ref_count(1);
  page::folio_lock(page::Folio(page));
  return page::prep_compound_page(page, order);
}

Result<page::Folio> zone_device_folio_init(page::Page* page, DevPagemap& pgmap, Order order) {
  page::Folio folio = TRY(zone_device_page_init(page, pgmap, order));
  if (order.raw() > 0) folio.page(1)->set_flag(page::PageFlag::kLargeRmappable);
  return folio;
}

void zone_device_private_split_cb(page::Folio orig, std::optional<page::Folio> tail) {
  DevPagemap* pgmap = orig.pgmap();
  assert(pgmap != nullptr && pgmap->type() == MemoryType::kDevicePrivate &&
         "split callback of a folio that is not device-private");
  if (has(pgmap->ops()->provided(), PagemapOps::kFolioSplit)) {
    pgmap->ops()->folio_split(orig, tail);
    return;
  }
  if (!tail.has_value()) return;
  tail->head()->set_pgmap(pgmap);
  tail->set_mapping_word(orig.mapping_word());
}

}  // namespace dpmm::devmem
