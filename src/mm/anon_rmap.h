// The anonymous-page half of the reverse map that phase 1 needs: the refcount and mapcount
// bookkeeping of every map and unmap (mm/rmap.c, include/linux/rmap.h), so that the rmap
// walk, fork and migration of later phases can rely on it.
//
// Rules (include/linux/rmap.h, mm/rmap.c __folio_add_rmap / __folio_remove_rmap, with
// CONFIG_PAGE_MAPCOUNT):
//   - a PTE mapping a page holds one folio reference and one mapcount (page->_mapcount + 1);
//     for a page of a large folio it also adds one to the folio's large mapcount, and the
//     page's first mapping adds one to _nr_pages_mapped;
//   - a PMD mapping a whole PMD-sized folio holds one folio reference, one entire mapcount and
//     one large mapcount; the first one adds ENTIRELY_MAPPED to _nr_pages_mapped; subpage
//     _mapcounts are untouched. PageAnonExclusive of a PMD-mapped folio lives on its head
//     page only; a split copies it to every subpage;
//   - folio_mapcount of a large folio is its large mapcount: PTE mappings plus PMD mappings;
//   - a newly faulted anon folio enters with the allocation's reference, which becomes the
//     mapping's reference (folio_add_new_anon_rmap: mapping = anon_vma | FOLIO_MAPPING_ANON,
//     index = linear_page_index, _mapcount 0, PG_anon_exclusive when the mapping is exclusive);
//   - unmapping drops the mapcount (folio_remove_rmap_pte) and, after the TLB flush, the
//     reference (mmu_gather);
//   - the shared zero page is mapped special: no reference, no mapcount (vm_normal_page
//     returns null for it).
// Every function REQUIRES the page-table lock of the PTE being changed.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/decoded_entry.h"
#include "base/result.h"
#include "base/types.h"
#include "mm/kernel.h"
#include "mm/vma.h"
#include "page/folio.h"

namespace dpmm::mm {

enum class RmapExclusive : bool { kNo, kYes };  // RMAP_EXCLUSIVE
// Whether fork must treat the folio as possibly pinned (folio_needs_cow_for_dma, computed by
// the caller: the source mm has MMF_HAS_PINNED and folio_maybe_dma_pinned; never for a
// device-private folio, which cannot be pinned).
enum class MaybePinned : bool { kNo, kYes };
// enum rmap_level: which kind of page-table entry maps the pages.
enum class RmapLevel : uint8_t { kPte, kPmd };

// ENTIRELY_MAPPED (mm/internal.h): _nr_pages_mapped's count of PMD mappings.
inline constexpr int32_t kEntirelyMapped = 0x800000;

// folio_add_new_anon_rmap. REQUIRES: a fresh folio, never mapped, that the caller owns. A
// large folio at RmapLevel::kPmd is mapped by one PMD (REQUIRES: PMD order); at kPte every
// page is mapped by its own PTE.
void folio_add_new_anon_rmap(page::Folio folio, const Vma& vma, VirtAddr address,
                             RmapExclusive exclusive, RmapLevel level = RmapLevel::kPte);
// folio_add_anon_rmap_ptes: `nr` PTEs map the pages from `page` on (split_huge_pmd).
void folio_add_anon_rmap_ptes(page::Folio folio, page::Page* page, uint64_t nr,
                              RmapExclusive exclusive);
// folio_remove_rmap_pmd: a PMD no longer maps the folio (caller owns the reference).
void folio_remove_rmap_pmd(page::Folio folio);
// folio_add_anon_rmap_pmd: a PMD maps an existing anon THP again (remove_migration_pmd).
// REQUIRES: PMD order; the caller holds the reference the PMD will own.
void folio_add_anon_rmap_pmd(page::Folio folio, RmapExclusive exclusive);
// folio_try_dup_anon_rmap_pmd: fork's child PMD maps the folio too. EBUSY (nothing changed)
// when the head is exclusive and the folio may be pinned.
Status folio_try_dup_anon_rmap_pmd(page::Folio folio, MaybePinned maybe_pinned);
// folio_add_file_rmap_pmd / a PMD of the huge zero folio need none: special mappings.

// page_mapcount (include/linux/mm.h): the page's own PTE mappings plus, for a page of a
// large folio, the folio's PMD mappings.
int page_mapcount(const page::Page* page);
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
