// The file-page half of the reverse-map bookkeeping (include/linux/rmap.h
// folio_add_file_rmap_pte, folio_dup_file_rmap_pte; include/linux/mm.h mm_counter_file,
// mm_counter).
//
// Rules (small folios), the same as for anon pages minus the anon-only state: a PTE mapping a
// page-cache or driver page holds one folio reference and one mapcount; no PG_anon_exclusive,
// no mapping or index change (a page-cache folio keeps its AddressSpace and offset, a driver
// page has no mapping at all). Unmapping is folio_remove_rmap_pte (anon_rmap.h), for both.
// REQUIRES: the page-table lock of the PTE being changed.
#pragma once

#include "mm/mm.h"
#include "page/folio.h"

namespace dpmm::mm {

// folio_add_file_rmap_pte. REQUIRES: the caller holds the reference the PTE will own.
void folio_add_file_rmap_pte(page::Folio folio, page::Page* page);
// folio_dup_file_rmap_pte (fork). REQUIRES as above.
inline void folio_dup_file_rmap_pte(page::Folio folio, page::Page* page) {
  folio_add_file_rmap_pte(folio, page);
}

// mm_counter_file: shmem pages (PG_swapbacked) count as MM_SHMEMPAGES, other file and driver
// pages as MM_FILEPAGES.
inline RssMember mm_counter_file(page::Folio folio) {
  return folio.test_flag(page::PageFlag::kSwapBacked) ? RssMember::kShmemPages
                                                      : RssMember::kFilePages;
}
// mm_counter: MM_ANONPAGES for anon folios (device-private ones included), else as above.
inline RssMember mm_counter(page::Folio folio) {
  return folio.is_anon() ? RssMember::kAnonPages : mm_counter_file(folio);
}

}  // namespace dpmm::mm
