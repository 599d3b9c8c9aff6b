// The anonymous-page half of the reverse map that phase 1 needs: the refcount and mapcount
// bookkeeping of every map and unmap (mm/rmap.c, include/linux/rmap.h), so that the rmap
// walk, fork and migration of later phases can rely on it.
//
// Rules (small folios; large folios arrive with THP):
//   - a PTE mapping a page holds one folio reference and one mapcount (page->_mapcount + 1);
//   - a newly faulted anon folio enters with the allocation's reference, which becomes the
//     mapping's reference (folio_add_new_anon_rmap: mapping = anon_vma | FOLIO_MAPPING_ANON,
//     index = linear_page_index, _mapcount 0, PG_anon_exclusive when the mapping is exclusive);
//   - unmapping drops the mapcount (folio_remove_rmap_pte) and, after the TLB flush, the
//     reference (mmu_gather);
//   - the shared zero page is mapped special: no reference, no mapcount (vm_normal_page
//     returns null for it).
// Every function REQUIRES the page-table lock of the PTE being changed.
#pragma once

#include <optional>

#include "arch/decoded_entry.h"
#include "base/result.h"
#include "base/types.h"
#include "mm/kernel.h"
#include "mm/vma.h"
#include "page/folio.h"

namespace dpmm::mm {

enum class RmapExclusive : bool { kNo, kYes };  // RMAP_EXCLUSIVE

// folio_add_new_anon_rmap. REQUIRES: a fresh small folio, never mapped, that the caller owns.
void folio_add_new_anon_rmap(page::Folio folio, const Vma& vma, VirtAddr address,
                             RmapExclusive exclusive);
// folio_add_anon_rmap_pte: another PTE maps an existing anon page (fork, restoring a
// migration or device-exclusive entry). REQUIRES: the caller holds the reference the PTE
// will own.
void folio_add_anon_rmap_pte(page::Folio folio, page::Page* page, RmapExclusive exclusive);
// folio_remove_rmap_pte: a PTE no longer maps `page`. The caller still owns the PTE's
// reference and puts it after the TLB flush.
void folio_remove_rmap_pte(page::Folio folio, page::Page* page);

// GUP_PIN_COUNTING_BIAS (include/linux/mm.h): a FOLL_PIN pin of a small folio adds this
// many references.
inline constexpr int kGupPinCountingBias = 1024;
// folio_maybe_dma_pinned (include/linux/mm.h): a large folio's pincount, or a small folio's
// refcount reaching the bias (false positives allowed, as in the kernel).
bool folio_maybe_dma_pinned(page::Folio folio);

// Whether fork must treat the folio as possibly pinned (folio_needs_cow_for_dma, computed by
// the caller: the source mm has MMF_HAS_PINNED and folio_maybe_dma_pinned; never for a
// device-private folio, which cannot be pinned).
enum class MaybePinned : bool { kNo, kYes };
// folio_try_dup_anon_rmap_pte (include/linux/rmap.h): fork's new PTE maps `page` too. An
// exclusive page stops being exclusive, unless it may be pinned: then EBUSY and nothing
// changes (the caller copies the page for the child instead). REQUIRES: the caller holds the
// reference the new PTE will own, and the source page-table lock.
Status folio_try_dup_anon_rmap_pte(page::Folio folio, page::Page* page, MaybePinned maybe_pinned);

// vm_normal_page (mm/memory.c): the page a present PTE maps, or null for a special entry
// (the zero page). REQUIRES: d.kind == kPresent.
page::Page* vm_normal_page(const Kernel& kernel, const arch::DecodedEntry& d);

// PageAnonExclusive.
inline bool page_anon_exclusive(const page::Page* page) {
  return page->test_flag(page::PageFlag::kAnonExclusive);
}

}  // namespace dpmm::mm
