#include "mm/anon_rmap.h"

#include <cassert>
#include <cstdint>

#include "mm/page_table.h"

namespace dpmm::mm {

void folio_add_new_anon_rmap(page::Folio folio, const Vma& vma, VirtAddr address,
                             RmapExclusive exclusive, RmapLevel level) {
  assert(folio.head()->mapcount_raw() == -1 && "a new anon folio is unmapped");
  AnonVma* anon_vma = vma.anon_vma();
  assert(anon_vma != nullptr && "anon_vma_prepare must run before mapping anon memory");
  folio.set_mapping_word(reinterpret_cast<uintptr_t>(anon_vma) | page::kFolioMappingAnon);
  // The index of the folio's first page (address is that page's for a large folio).
  folio.set_index(vma.linear_page_index(address));
  folio.set_flag(page::PageFlag::kSwapBacked);  // __folio_set_swapbacked
  if (!folio.is_large()) {
    assert(level == RmapLevel::kPte && "a small folio is mapped by a PTE");
    folio.head()->mapcount_add_return(1);  // -1 -> 0: mapped once
    if (exclusive == RmapExclusive::kYes) folio.set_flag(page::PageFlag::kAnonExclusive);
    return;
  }
  const uint64_t nr = folio.nr_pages().raw();
  switch (level) {
    case RmapLevel::kPmd:
      assert(folio.order().raw() == kHpagePmdOrder && "a PMD maps a PMD-order folio");
      folio.entire_mapcount_raw().store(0, std::memory_order_release);
      folio.nr_pages_mapped_raw().store(kEntirelyMapped, std::memory_order_release);
      folio.large_mapcount_raw().store(0, std::memory_order_release);  // mapped once
      if (exclusive == RmapExclusive::kYes) folio.set_flag(page::PageFlag::kAnonExclusive);
      return;
    case RmapLevel::kPte:
      for (uint64_t i = 0; i < nr; ++i) {
        folio.page(i)->mapcount_add_return(1);
        if (exclusive == RmapExclusive::kYes) folio.page(i)->set_flag(page::PageFlag::kAnonExclusive);
      }
      folio.nr_pages_mapped_raw().store(static_cast<int32_t>(nr), std::memory_order_release);
      folio.large_mapcount_raw().store(static_cast<int32_t>(nr) - 1, std::memory_order_release);
      return;
  }
}

void folio_add_anon_rmap_ptes(page::Folio folio, page::Page* page, uint64_t nr,
                              RmapExclusive exclusive) {
  assert(folio.contains(page) && folio.contains(page + (nr - 1)) && "pages outside the folio");
  assert(folio.is_anon() && "folio_add_anon_rmap_ptes of a non-anon folio");
  int32_t first = 0;
  for (uint64_t i = 0; i < nr; ++i) {
    if (page[i].mapcount_add_return(1) == 0) ++first;
    if (exclusive == RmapExclusive::kYes) page[i].set_flag(page::PageFlag::kAnonExclusive);
  }
  if (!folio.is_large()) return;
  folio.nr_pages_mapped_raw().fetch_add(first, std::memory_order_acq_rel);
  folio.large_mapcount_raw().fetch_add(static_cast<int32_t>(nr), std::memory_order_acq_rel);
}

void folio_add_anon_rmap_pte(page::Folio folio, page::Page* page, RmapExclusive exclusive) {
  folio_add_anon_rmap_ptes(folio, page, 1, exclusive);
}

void folio_remove_rmap_pte(page::Folio folio, page::Page* page) {
  assert(folio.contains(page) && "page outside its folio");
  const int left = page->mapcount_add_return(-1);
  assert(left >= -1 && "mapcount underflow");
  if (!folio.is_large()) return;
  if (left == -1) folio.nr_pages_mapped_raw().fetch_sub(1, std::memory_order_acq_rel);
  [[maybe_unused]] const int32_t large =
      folio.large_mapcount_raw().fetch_sub(1, std::memory_order_acq_rel) - 1;
  assert(large >= -1 && "large mapcount underflow");
  // A partially mapped anon THP would go on the deferred split queue here
  // (folio_test_partially_mapped); dpmm runs no deferred-split shrinker (docs/mm.md).
}

void folio_remove_rmap_pmd(page::Folio folio) {
  assert(folio.is_large() && "a PMD maps a large folio");
  const int32_t left = folio.entire_mapcount_raw().fetch_sub(1, std::memory_order_acq_rel) - 1;
  assert(left >= -1 && "entire mapcount underflow");
  if (left == -1) folio.nr_pages_mapped_raw().fetch_sub(kEntirelyMapped, std::memory_order_acq_rel);
  [[maybe_unused]] const int32_t large =
      folio.large_mapcount_raw().fetch_sub(1, std::memory_order_acq_rel) - 1;
  assert(large >= -1 && "large mapcount underflow");
}

void folio_add_anon_rmap_pmd(page::Folio folio, RmapExclusive exclusive) {
  assert(folio.is_large() && folio.order().raw() == kHpagePmdOrder && "a PMD maps a THP");
  const int32_t now = folio.entire_mapcount_raw().fetch_add(1, std::memory_order_acq_rel) + 1;
  if (now == 0) folio.nr_pages_mapped_raw().fetch_add(kEntirelyMapped, std::memory_order_acq_rel);
  folio.large_mapcount_raw().fetch_add(1, std::memory_order_acq_rel);
  // PageAnonExclusive of a PMD mapping lives on the head page.
  if (exclusive == RmapExclusive::kYes) folio.set_flag(page::PageFlag::kAnonExclusive);
}

Status folio_try_dup_anon_rmap_pmd(page::Folio folio, MaybePinned maybe_pinned) {
  assert(folio.is_large() && folio.is_anon() && "fork dups the PMD of an anon THP");
  if (folio.test_flag(page::PageFlag::kAnonExclusive)) {
    if (maybe_pinned == MaybePinned::kYes)
      return make_error(Errno::kEBUSY, "the exclusive anon THP may be pinned: copy it");
    folio.clear_flag(page::PageFlag::kAnonExclusive);
  }
  folio.entire_mapcount_raw().fetch_add(1, std::memory_order_acq_rel);
  folio.large_mapcount_raw().fetch_add(1, std::memory_order_acq_rel);
  return ok();
}

int page_mapcount(const page::Page* page) {
  const int own = page->mapcount();
  if (!page->is_compound()) return own;
  return own + page::page_folio(const_cast<page::Page*>(page)).entire_mapcount();
}

bool folio_maybe_dma_pinned(page::Folio folio) {
  if (folio.is_large()) return folio.pincount_raw().load() > 0;
  return folio.ref_count() >= kGupPinCountingBias;
}

Status folio_try_dup_anon_rmap_pte(page::Folio folio, page::Page* page, MaybePinned maybe_pinned) {
  assert(folio.contains(page) && "page outside its folio");
  assert(folio.is_anon() && "folio_try_dup_anon_rmap_pte of a non-anon folio");
  if (page_anon_exclusive(page)) {
    if (maybe_pinned == MaybePinned::kYes)
      return make_error(Errno::kEBUSY, "the exclusive anon page may be pinned: copy it");
    page->clear_flag(page::PageFlag::kAnonExclusive);
  }
  folio_add_anon_rmap_ptes(folio, page, 1, RmapExclusive::kNo);
  return ok();
}

page::Page* vm_normal_page(const Kernel& kernel, const arch::DecodedEntry& d) {
  assert(d.kind == arch::DecodedEntry::Kind::kPresent && "vm_normal_page of a non-present PTE");
  if (arch::has(d.prot, arch::Prot::kSpecial) || kernel.is_zero_pfn(d.pfn)) return nullptr;
  return MUST(kernel.pfn_to_page(d.pfn), "a present normal PTE maps RAM");
}

}  // namespace dpmm::mm
