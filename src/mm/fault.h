// The CPU page-fault handler (mm/memory.c: handle_mm_fault, __handle_mm_fault,
// handle_pte_fault, do_anonymous_page, do_wp_page, wp_page_copy, do_swap_page).
//
// Dispatch:
//   no VMA, or an access the VMA does not allow (arch access_error)      -> kSigSegv
//   none PMD in a THP-eligible VMA          -> do_huge_pmd_anonymous_page (huge_memory.h);
//                                              falls back to PTEs when it cannot
//   PMD leaf                                -> do_huge_pmd_wp_page / huge_pmd_set_accessed
//   PMD swap entry (device THP, not modelled)                             -> kSigBus
//   pte_none (or a uffd-wp marker)          -> anonymous VMA: do_anonymous_page: a read maps
//                                              the shared zero page read-only and special; a
//                                              write maps a new zeroed page, writable, dirty
//                                              file VMA: do_fault (file_fault.cc)
//   present, write, not writable            -> do_wp_page: a shared mapping makes the entry
//                                              writable (wp_page_shared: folio dirty); else
//                                              reuse an exclusive anon folio, else copy
//                                              (wp_page_copy, real bytes; file pages too)
//   present otherwise                       -> mark young (and dirty on write)
//   swap entry, by softleaf_type            -> swap_fault.cc (do_swap_page)
//
// Refcount and mapcount rules kept on every map and unmap (anon_rmap.h): a page mapped by a
// PTE holds one reference and one mapcount for that PTE; the zero page holds neither
// (pte_special). Locks: mmap_lock held for read by the caller -> folio lock -> page-table lock.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/flags.h"
#include "base/lock.h"
#include "base/types.h"
#include "mm/mm.h"

namespace dpmm::mm {

// FAULT_FLAG_* (include/linux/mm_types.h) modelled here.
enum class FaultFlags : uint16_t {
  kNone = 0,
  kWrite = 0x1,          // FAULT_FLAG_WRITE
  kUser = 0x40,          // FAULT_FLAG_USER
  kRemote = 0x80,        // FAULT_FLAG_REMOTE
  kInstruction = 0x100,  // FAULT_FLAG_INSTRUCTION
};
DPMM_FLAG_OPS(FaultFlags)

// The outcome of one fault (vm_fault_t, reduced to what callers act on).
enum class FaultOutcome : uint8_t {
  kHandled,  // 0 / VM_FAULT_NOPAGE: the entry may now allow the access; retry it
  kRetry,    // VM_FAULT_RETRY: nothing changed; retry the fault (locks were dropped or a
             // wait finished). The caller's access loop owns the retry.
  kOom,      // VM_FAULT_OOM: no page could be allocated
  kSigSegv,  // VM_FAULT_SIGSEGV, or no VMA / access not permitted (bad_area)
  kSigBus,   // VM_FAULT_SIGBUS and VM_FAULT_HWPOISON
};
std::string_view fault_outcome_name(FaultOutcome o);  // "handled", "SIGSEGV", ...

struct FaultResult {
  FaultOutcome outcome = FaultOutcome::kHandled;
  std::string_view reason;  // static text saying why, for kOom/kSigSegv/kSigBus
  static FaultResult handled() { return {FaultOutcome::kHandled, {}}; }
  bool is_error() const {
    return outcome == FaultOutcome::kOom || outcome == FaultOutcome::kSigSegv ||
           outcome == FaultOutcome::kSigBus;
  }
};

// struct vm_fault: what the handlers below and a device's migrate_to_ram see.
struct VmFault {
  Mm* mm = nullptr;
  const Vma* vma = nullptr;  // valid while mmap_lock is held
  VirtAddr address;          // page-aligned
  VirtAddr real_address;     // the faulting address itself
  FaultFlags flags = FaultFlags::kNone;
  std::optional<EntrySlot> pte;  // the PTE slot; nullopt for a PMD-level fault
  uint64_t orig_pte = 0;         // the entry as read before taking the page-table lock
  page::Page* page = nullptr;    // the page the handler works on (device-private: locked, ref)
};

// handle_mm_fault. REQUIRES: mmap_lock held for read (or write). Never drops it.
FaultResult handle_mm_fault(Mm& mm, VirtAddr address, FaultFlags flags)
    REQUIRES_SHARED(mm.mmap_lock());

// do_swap_page (swap_fault.cc). REQUIRES: mmap_lock held for read; vmf.pte and vmf.orig_pte
// set, orig_pte a swap entry.
FaultResult do_swap_page(VmFault& vmf);
// do_anonymous_page. REQUIRES as do_swap_page, an anonymous VMA.
FaultResult do_anonymous_page(VmFault& vmf);
// do_fault (file_fault.cc): a none PTE of a file VMA. REQUIRES as do_swap_page.
FaultResult do_fault(VmFault& vmf);
// do_pte_missing: do_anonymous_page or do_fault by vma_is_anonymous (also the uffd-wp marker
// path of the swap code).
FaultResult do_pte_missing(VmFault& vmf);

}  // namespace dpmm::mm
