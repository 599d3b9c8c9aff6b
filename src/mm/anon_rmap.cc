#include "mm/anon_rmap.h"

#include <cassert>
#include <cstdint>

namespace dpmm::mm {

void folio_add_new_anon_rmap(page::Folio folio, const Vma& vma, VirtAddr address,
                             RmapExclusive exclusive) {
  assert(!folio.is_large() && "large anon folios arrive with THP");
  assert(folio.head()->mapcount_raw() == -1 && "a new anon folio is unmapped");
  AnonVma* anon_vma = vma.anon_vma();
  assert(anon_vma != nullptr && "anon_vma_prepare must run before mapping anon memory");
  folio.set_mapping_word(reinterpret_cast<uintptr_t>(anon_vma) | page::kFolioMappingAnon);
  folio.set_index(vma.linear_page_index(address));
  folio.set_flag(page::PageFlag::kSwapBacked);  // __folio_set_swapbacked
  folio.head()->mapcount_add_return(1);         // -1 -> 0: mapped once
  if (exclusive == RmapExclusive::kYes) folio.set_flag(page::PageFlag::kAnonExclusive);
}

void folio_add_anon_rmap_pte(page::Folio folio, page::Page* page, RmapExclusive exclusive) {
  assert(folio.contains(page) && "page outside its folio");
  assert(folio.is_anon() && "folio_add_anon_rmap_pte of a non-anon folio");
  assert(!folio.is_large() && "large anon folios arrive with THP");
  page->mapcount_add_return(1);
  if (exclusive == RmapExclusive::kYes) page->set_flag(page::PageFlag::kAnonExclusive);
}

void folio_remove_rmap_pte(page::Folio folio, page::Page* page) {
  assert(folio.contains(page) && "page outside its folio");
  assert(!folio.is_large() && "large anon folios arrive with THP");
  const int left = page->mapcount_add_return(-1);
  assert(left >= -1 && "mapcount underflow");
  (void)left;
}

bool folio_maybe_dma_pinned(page::Folio folio) {
  if (folio.is_large()) return folio.pincount_raw().load() > 0;
  return folio.ref_count() >= kGupPinCountingBias;
}

Status folio_try_dup_anon_rmap_pte(page::Folio folio, page::Page* page, MaybePinned maybe_pinned) {
  assert(folio.contains(page) && "page outside its folio");
  assert(folio.is_anon() && "folio_try_dup_anon_rmap_pte of a non-anon folio");
  assert(!folio.is_large() && "large anon folios arrive with THP");
  if (page_anon_exclusive(page)) {
    if (maybe_pinned == MaybePinned::kYes)
      return make_error(Errno::kEBUSY, "the exclusive anon page may be pinned: copy it");
    page->clear_flag(page::PageFlag::kAnonExclusive);
  }
  page->mapcount_add_return(1);
  return ok();
}

page::Page* vm_normal_page(const Kernel& kernel, const arch::DecodedEntry& d) {
  assert(d.kind == arch::DecodedEntry::Kind::kPresent && "vm_normal_page of a non-present PTE");
  if (arch::has(d.prot, arch::Prot::kSpecial) || kernel.is_zero_pfn(d.pfn)) return nullptr;
  return MUST(kernel.pfn_to_page(d.pfn), "a present normal PTE maps RAM");
}

}  // namespace dpmm::mm
