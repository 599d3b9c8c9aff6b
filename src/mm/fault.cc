#include "mm/fault.h"


#include <cassert>
#include <cstring>

#include "arch/decoded_entry.h"
#include "base/trace.h"
#include "mm/anon_rmap.h"
#include "mm/file_rmap.h"
#include "mm/huge_memory.h"
#include "mm/hugetlb.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

FaultResult segv(std::string_view why) { return {FaultOutcome::kSigSegv, why}; }
FaultResult sigbus(std::string_view why) { return {FaultOutcome::kSigBus, why}; }
FaultResult oom(std::string_view why) { return {FaultOutcome::kOom, why}; }

// The arch's access_error (arch/x86/mm/fault.c, arch/arm64/mm/fault.c): may this VMA take
// this kind of access at all?
bool access_error(const Vma& vma, FaultFlags flags) {
  if (has(flags, FaultFlags::kWrite)) return !has(vma.flags, VmFlags::kWrite);
  if (has(flags, FaultFlags::kInstruction)) return !has(vma.flags, VmFlags::kExec);
  return !vma_flags_accessible(vma.flags);
}

uint64_t encode_pte(const Kernel& k, Pfn pfn, Prot prot) {
  return MUST(k.codec().make_present(EntryLevel::kPte, pfn, prot),
              "a RAM pfn with a user protection encodes");
}

// wp_page_reuse: the faulting PTE becomes writable, dirty and young in place.
FaultResult wp_page_reuse(VmFault& vmf, const DecodedEntry& d) {
  Mm& mm = *vmf.mm;
  const uint64_t entry = encode_pte(mm.kernel(), d.pfn,
                                    d.prot | Prot::kWrite | Prot::kDirty | Prot::kAccessed);
  SpinLocker guard(mm.page_table().lock());
  uint64_t expected = vmf.orig_pte;
  // A concurrent hardware walk may only set accessed/dirty, which the new word carries too;
  // any other change means someone else handled the fault.
  vmf.pte->compare_exchange(expected, entry);
  return FaultResult::handled();
}

// wp_page_copy: a private copy of the page (or a new zeroed page for the zero page) replaces
// the read-only mapping.
FaultResult wp_page_copy(VmFault& vmf, const DecodedEntry& d, page::Page* old_page) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Vma& vma = *vmf.vma;
  mm.mmap_assert_locked();
  mm.anon_vma_prepare(vma);
  std::optional<page::Folio> old_folio;
  if (old_page != nullptr) {
    old_folio = page::page_folio(old_page);
    // Our own reference keeps the page while we copy without the lock (wp_page_copy's
    // folio_get in do_wp_page).
    if (!page::folio_try_get(*old_folio)) return {FaultOutcome::kRetry, "page being freed"};
  }
  Result<page::Folio> fresh = k.alloc_folio(Order(0));
  if (fresh.is_error()) {
    if (old_folio) page::folio_put(*old_folio);
    return oom("no page for a copy-on-write copy");
  }
  page::Folio new_folio = *fresh;
  const Pfn new_pfn = k.page_to_pfn(new_folio.head());
  if (old_page != nullptr) {
    // __wp_page_copy_user: the old page is mapped read-only, so its bytes are stable.
    std::memcpy(k.page_bytes(new_pfn).data(), k.page_bytes(d.pfn).data(), kPageSize);
  }
  new_folio.set_flag(page::PageFlag::kUptodate);
  const uint64_t entry =
      encode_pte(k, new_pfn, vma.page_prot | Prot::kWrite | Prot::kDirty | Prot::kAccessed);

  const MmuNotifierRange range =
      mm.notifier_range(MmuNotifyEvent::kClear, vmf.address, vmf.address + kPageSize);
  mm.invalidate_range_start(range);
  bool replaced = false;
  {
    SpinLocker guard(mm.page_table().lock());
    uint64_t cur = vmf.pte->load();
    const DecodedEntry now = k.codec().decode(EntryLevel::kPte, cur);
    // pte_same, allowing for accessed/dirty set by a hardware walk since we read it.
    if (now.kind == DecodedEntry::Kind::kPresent && now.pfn == d.pfn &&
        !arch::has(now.prot, Prot::kWrite)) {
      // ptep_clear_flush then set_pte_at: clear first, so no walk pairs the old page with the
      // new entry's permissions.
      vmf.pte->exchange(0);
      folio_add_new_anon_rmap(new_folio, vma, vmf.address, RmapExclusive::kYes);
      vmf.pte->store(entry);
      if (old_folio) {
        // A file page replaced by an anon copy moves between the counters.
        if (!old_folio->is_anon()) {
          mm.add_rss(mm_counter_file(*old_folio), -1);
          mm.add_rss(RssMember::kAnonPages, 1);
        }
        folio_remove_rmap_pte(*old_folio, old_page);
      } else {
        mm.add_rss(RssMember::kAnonPages, 1);
      }
      replaced = true;
    }
  }
  mm.invalidate_range_end(range);
  if (!replaced) {
    page::folio_put(new_folio);
    if (old_folio) page::folio_put(*old_folio);
    return FaultResult::handled();
  }
  if (old_folio) {
    // The old PTE's reference goes only after no CPU can still use the old translation.
    mm.flush_tlb_range(vmf.address, vmf.address + kPageSize);
    page::folio_put(*old_folio);  // the mapping's reference
    page::folio_put(*old_folio);  // ours
  }
  return FaultResult::handled();
}

// wp_can_reuse_anon_folio (mm/memory.c): no other mapping or reference can see the page.
bool wp_can_reuse_anon_folio(page::Folio folio) {
  if (folio.is_large()) return false;
  if (folio.ref_count() > 3) return false;
  if (!page::folio_trylock(folio)) return false;
  const int expected = 1 + (folio.test_flag(page::PageFlag::kSwapCache) ? 1 : 0);
  const bool ok = folio.ref_count() == expected;
  if (ok) folio.head()->set_flag(page::PageFlag::kAnonExclusive);
  page::folio_unlock(folio);
  return ok;
}

// do_wp_page.
FaultResult do_wp_page(VmFault& vmf, const DecodedEntry& d) {
  Mm& mm = *vmf.mm;
  page::Page* page = vm_normal_page(mm.kernel(), d);
  if (has_any(vmf.vma->flags, VmFlags::kShared | VmFlags::kMayShare)) {
    // wp_page_shared / wp_pfn_shared: a shared page is written in place (no ->page_mkwrite
    // in dpmm's files); the page cache learns the folio is dirty.
    if (page != nullptr) page::page_folio(page).set_flag(page::PageFlag::kDirty);
    return wp_page_reuse(vmf, d);
  }
  if (page != nullptr) {
    page::Folio folio = page::page_folio(page);
    if (folio.is_anon() && (page_anon_exclusive(page) || wp_can_reuse_anon_folio(folio)))
      return wp_page_reuse(vmf, d);
  }
  return wp_page_copy(vmf, d, page);
}

// The present-PTE tail of handle_pte_fault: mark young (and dirty for a write), as
// ptep_set_access_flags does.
FaultResult touch_present(VmFault& vmf, const DecodedEntry& d) {
  Prot want = d.prot | Prot::kAccessed;
  if (has(vmf.flags, FaultFlags::kWrite)) want = want | Prot::kDirty;
  if (want == d.prot) return FaultResult::handled();
  const uint64_t entry = encode_pte(vmf.mm->kernel(), d.pfn, want);
  SpinLocker guard(vmf.mm->page_table().lock());
  uint64_t expected = vmf.orig_pte;
  vmf.pte->compare_exchange(expected, entry);
  return FaultResult::handled();
}

FaultResult handle_pte_fault(VmFault& vmf) {
  Mm& mm = *vmf.mm;
  vmf.orig_pte = vmf.pte->load();
  if (vmf.orig_pte == 0) return do_pte_missing(vmf);
  const DecodedEntry d = mm.kernel().codec().decode(EntryLevel::kPte, vmf.orig_pte);
  switch (d.kind) {
    case DecodedEntry::Kind::kNone:
      // A word with only hardware A/D noise in it reads as none too (pte_none).
      return do_pte_missing(vmf);
    case DecodedEntry::Kind::kSwap:
      return do_swap_page(vmf);
    case DecodedEntry::Kind::kTable:
      return sigbus("a PTE decodes as a table pointer");
    case DecodedEntry::Kind::kPresent:
      break;
  }
  // A PROT_NONE entry in an accessible VMA is a NUMA hint in the kernel (do_numa_page); phase
  // 1 makes PROT_NONE entries only in PROT_NONE VMAs, which access_error refused already.
  if (arch::has(d.prot, Prot::kProtNone)) return segv("PROT_NONE entry in an accessible VMA");
  if (has(vmf.flags, FaultFlags::kWrite) && !arch::has(d.prot, Prot::kWrite))
    return do_wp_page(vmf, d);
  return touch_present(vmf, d);
}

}  // namespace

std::string_view fault_outcome_name(FaultOutcome o) {
  switch (o) {
    case FaultOutcome::kHandled: return "handled";
    case FaultOutcome::kRetry: return "retry";
    case FaultOutcome::kOom: return "OOM";
    case FaultOutcome::kSigSegv: return "SIGSEGV";
    case FaultOutcome::kSigBus: return "SIGBUS";
  }
  return "?";
}

FaultResult do_anonymous_page(VmFault& vmf) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Vma& vma = *vmf.vma;
  if (!has(vmf.flags, FaultFlags::kWrite)) {
    // The shared zero page, read-only and special (pte_mkspecial(pfn_pte(my_zero_pfn))).
    const uint64_t entry = encode_pte(k, k.zero_pfn(), vma.page_prot | Prot::kSpecial);
    SpinLocker guard(mm.page_table().lock());
    uint64_t expected = vmf.orig_pte;
    vmf.pte->compare_exchange(expected, entry);
    return FaultResult::handled();
  }
  mm.mmap_assert_locked();
  mm.anon_vma_prepare(vma);
  Result<page::Folio> fresh = k.alloc_folio(Order(0));
  if (fresh.is_error()) return oom("no page for an anonymous write fault");
  page::Folio folio = *fresh;
  folio.set_flag(page::PageFlag::kUptodate);  // __folio_mark_uptodate
  const Pfn pfn = k.page_to_pfn(folio.head());
  // VM_WRITE is set (access_error), so the entry is writable and dirty at once.
  const uint64_t entry =
      encode_pte(k, pfn, vma.page_prot | Prot::kWrite | Prot::kDirty | Prot::kAccessed);
  {
    SpinLocker guard(mm.page_table().lock());
    if (vmf.pte->load() == vmf.orig_pte) {
      mm.add_rss(RssMember::kAnonPages, 1);
      folio_add_new_anon_rmap(folio, vma, vmf.address, RmapExclusive::kYes);
      vmf.pte->store(entry);
      return FaultResult::handled();
    }
  }
  page::folio_put(folio);  // someone else populated the entry first
  return FaultResult::handled();
}

FaultResult handle_mm_fault(Mm& mm, VirtAddr address, FaultFlags flags) {
  TraceScope trace("handle_mm_fault", TraceCategory::kFault, address.raw());
  mm.count_fault();
  const Vma* vma = mm.vma_lookup(address);
  // A VM_GROWSDOWN stack would expand here (expand_stack); not modelled.
  if (vma == nullptr) return segv("no VMA at the address");
  if (access_error(*vma, flags)) return segv("the VMA does not allow this access");
  if (is_vm_hugetlb_page(*vma)) return hugetlb_fault(mm, *vma, address, flags);
  VmFault vmf;
  vmf.mm = &mm;
  vmf.vma = vma;
  vmf.address = address.page_base();
  vmf.real_address = address;
  vmf.flags = flags;
  // __handle_mm_fault: populate the upper levels, then the PTE table.
  Result<EntrySlot> pmd = mm.page_table().walk_pmd_alloc(vmf.address);
  if (pmd.is_error()) {
    return pmd.error().code() == Errno::kENOMEM ? oom("no page for a page table")
                                                : sigbus("a PUD entry is not a table");
  }
  const uint64_t orig_pmd = pmd->load();
  if (orig_pmd == 0) {
    // create_huge_pmd: a none PMD where a THP may go.
    if (vma->is_anonymous() && thp_vma_allowable_pmd(mm.kernel(), *vma, ThpAsker::kPageFault)) {
      if (std::optional<FaultResult> r = do_huge_pmd_anonymous_page(vmf, *pmd)) return *r;
    }
  } else if (!mm.kernel().codec().table_pfn(orig_pmd)) {
    // A PMD that maps its 2 MiB itself (tables, the common case, skip these decodes).
    if (pmd_trans_huge(mm.kernel(), orig_pmd)) {
      // A present leaf: wp_huge_pmd or huge_pmd_set_accessed; fallback means it was split.
      if (std::optional<FaultResult> r = huge_pmd_fault(vmf, *pmd, orig_pmd)) return *r;
    } else if (pmd_is_device_private_entry(mm.kernel(), orig_pmd)) {
      // A device-private THP (__handle_mm_fault's non-present PMD branch).
      return do_huge_pmd_device_private(vmf, *pmd, orig_pmd);
    } else if (pmd_is_migration_entry(mm.kernel(), orig_pmd)) {
      // A THP under migration: wait for it, then retry.
      return pmd_migration_entry_wait(vmf, *pmd, orig_pmd);
    }
  }
  Result<EntrySlot> pte = mm.page_table().pte_alloc(*pmd, vmf.address);
  if (pte.is_error()) {
    if (pte.error().code() == Errno::kENOMEM) return oom("no page for a PTE table");
    // A PMD leaf or swap entry that appeared meanwhile: retry at the PMD level.
    if (pmd_is_huge(mm.kernel(), pmd->load())) return {FaultOutcome::kRetry, "PMD leaf raced"};
    return sigbus("a PMD entry that is neither a table nor a leaf");
  }
  vmf.pte = *pte;
  return handle_pte_fault(vmf);
}

}  // namespace dpmm::mm
