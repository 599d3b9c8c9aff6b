// vm_insert_page (mm/memory.c vm_insert_page, insert_page, validate_page_before_insert,
// insert_page_into_pte_locked): a driver maps one of its own kernel pages into a user VMA,
// typically from its f_op->mmap (lib/test_hmm.c dmirror_fops_mmap does it for every page).
//
// The VMA gets VM_MIXEDMAP (the kernel's vm_flags_set; mmap_lock held for write), the page a
// reference and a mapcount for the new PTE (folio_add_file_rmap_pte: the page is not anon and
// never becomes so), the mm its MM_FILEPAGES count. The PTE is mk_pte(page, vm_page_prot): not
// special, so vm_normal_page finds the page, fork copies the PTE (VM_MIXEDMAP) and a write to
// a private mapping copies the page (do_wp_page). The caller keeps its own reference and may
// drop it at once (the PTE holds one).
#pragma once

#include "base/result.h"
#include "base/types.h"
#include "mm/mm.h"
#include "page/page.h"

namespace dpmm::mm {

// REQUIRES: mm's mmap_lock held for write (the VMA may be one f_op->mmap is setting up and
// not yet linked, or a linked VMA of `mm`).
//   EFAULT  addr outside the VMA
//   EINVAL  the VMA is VM_PFNMAP; the page is anon or typed (validate_page_before_insert)
//   EBUSY   the PTE is not none
//   ENOMEM  no page for a page table
Status vm_insert_page(Mm& mm, const Vma& vma, VirtAddr addr, page::Page* page);

}  // namespace dpmm::mm
