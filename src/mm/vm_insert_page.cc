#include "mm/vm_insert_page.h"

#include <cassert>

#include "mm/file_rmap.h"

namespace dpmm::mm {

Status vm_insert_page(Mm& mm, const Vma& vma, VirtAddr addr, page::Page* page) {
  if (addr < vma.start || addr >= vma.end)
    return make_error(Errno::kEFAULT, "vm_insert_page at {} outside the VMA [{}, {})", addr,
                      vma.start, vma.end);
  if (!has(vma.flags, VmFlags::kMixedMap)) {
    if (has(vma.flags, VmFlags::kPfnMap))
      return make_error(Errno::kEINVAL, "vm_insert_page into a VM_PFNMAP VMA at {}", addr);
    // vm_flags_set under the write-held mmap_lock: the VMA is the caller's to change (the
    // kernel's vm_insert_page takes a const-looking vma and sets the flag the same way).
    const_cast<Vma&>(vma).flags |= VmFlags::kMixedMap;
  }
  page::Folio folio = page::page_folio(page);
  // validate_page_before_insert.
  // page_has_type: a typed page (buddy, ...) keeps its type where _mapcount would be.
  const bool typed = page->mapcount_raw() < -1 && page->page_type() != page::kNoPageType;
  if (folio.is_anon() || typed)
    return make_error(Errno::kEINVAL, "vm_insert_page of an anon or typed page at {}", addr);
  Kernel& k = mm.kernel();
  const VirtAddr at = addr.page_base();
  const EntrySlot pmd = TRY(mm.page_table().walk_pmd_alloc(at));
  const EntrySlot pte = TRY(mm.page_table().pte_alloc(pmd, at));
  const uint64_t entry =
      MUST(k.codec().make_present(arch::EntryLevel::kPte, k.page_to_pfn(page), vma.page_prot),
           "a RAM page with a VMA protection encodes");
  SpinLocker guard(mm.page_table().lock());
  if (pte.load() != 0)
    return make_error(Errno::kEBUSY, "vm_insert_page at {}: the PTE is in use", addr);
  page::folio_get(folio);
  mm.add_rss(mm_counter_file(folio), 1);
  folio_add_file_rmap_pte(folio, page);
  pte.store(entry);
  return ok();
}

}  // namespace dpmm::mm
