// mm/gup.c: __get_user_pages, check_vma_flags, follow_page_pte, faultin_page,
// try_grab_folio, gup_put_folio, is_valid_gup_args, __gup_longterm_locked and
// check_and_migrate_movable_folios / migrate_longterm_unpinnable_folios.
#include "mm/gup.h"

#include <cassert>

#include "arch/decoded_entry.h"
#include "mm/anon_rmap.h"
#include "mm/huge_memory.h"
#include "mm/device_private.h"
#include "mm/fault.h"
#include "page/folio.h"

namespace dpmm::mm {
namespace {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

constexpr FollFlags kUnmodelledFlags =
    FollFlags::kDump | FollFlags::kForce | FollFlags::kNowait | FollFlags::kHwpoison;

// is_valid_gup_args: the caller's flags, then the entry point's own added.
Result<FollFlags> valid_gup_args(FollFlags flags, FollFlags to_set) {
  if (has_any(flags, kInternalGupFlags))
    return make_error(Errno::kEINVAL, "gup: internal FOLL_ flags {:#x} from a caller",
                      static_cast<uint32_t>(flags & kInternalGupFlags));
  if (has_any(flags, kUnmodelledFlags))
    return make_error(Errno::kEINVAL, "gup: FOLL_DUMP/FORCE/NOWAIT/HWPOISON are not modelled");
  flags |= to_set;
  if (has(flags, FollFlags::kGet | FollFlags::kPin))
    return make_error(Errno::kEINVAL, "gup: FOLL_GET and FOLL_PIN together");
  if (has(flags, FollFlags::kLongterm) && !has(flags, FollFlags::kPin))
    return make_error(Errno::kEINVAL, "gup: FOLL_LONGTERM without FOLL_PIN");
  return flags;
}

// The shared zero page: the one reserved page a user PTE maps (kernel.cc keeps it
// PG_reserved for the kernel's lifetime), or the huge zero folio (PG_reserved on its head
// while it lives). is_zero_folio.
bool is_zero_folio(page::Folio folio) {
  return !folio.is_zone_device() && folio.test_flag(page::PageFlag::kReserved);
}

// check_vma_flags.
Status check_vma_flags(const Vma& vma, VirtAddr addr, FollFlags flags) {
  if (has(flags, FollFlags::kAnon) && !vma.is_anonymous())
    return make_error(Errno::kEFAULT, "gup: FOLL_ANON at {:#x}, a file VMA", addr.raw());
  if (has_any(vma.flags, VmFlags::kIo | VmFlags::kPfnMap))
    return make_error(Errno::kEFAULT, "gup: {:#x} is in a VM_IO/VM_PFNMAP VMA", addr.raw());
  if (has(flags, FollFlags::kWrite)) {
    if (!has(vma.flags, VmFlags::kWrite))
      return make_error(Errno::kEFAULT, "gup: FOLL_WRITE at {:#x}, a VMA without VM_WRITE",
                        addr.raw());
  } else if (!has(vma.flags, VmFlags::kRead)) {
    return make_error(Errno::kEFAULT, "gup: read at {:#x}, a VMA without VM_READ", addr.raw());
  }
  return ok();
}

// try_grab_folio. REQUIRES: the page-table lock, under which the PTE's own reference keeps
// the folio alive.
void try_grab_folio(page::Folio folio, FollFlags flags) {
  if (has(flags, FollFlags::kGet)) {
    page::folio_get(folio);
    return;
  }
  assert(has(flags, FollFlags::kPin) && "grab without FOLL_GET or FOLL_PIN");
  // No pin on the zero page: it is never freed and far too widely mapped.
  if (is_zero_folio(folio)) return;
  if (folio.is_large()) {
    page::folio_get(folio);
    folio.pincount_raw().fetch_add(1, std::memory_order_relaxed);
  } else {
    page::folio_ref_add(folio, kGupPinCountingBias);
  }
}

// gup_put_folio.
void gup_put_folio(page::Folio folio, FollFlags flags) {
  if (has(flags, FollFlags::kPin)) {
    if (is_zero_folio(folio)) return;
    if (folio.is_large()) {
      const int32_t before = folio.pincount_raw().fetch_sub(1, std::memory_order_relaxed);
      assert(before > 0 && "unpin of a large folio without a pin");
      (void)before;
      page::folio_put(folio);
    } else {
      assert(folio.ref_count() >= kGupPinCountingBias && "unpin of a small folio without a pin");
      page::folio_put_refs(folio, kGupPinCountingBias);
    }
    return;
  }
  page::folio_put(folio);
}

// follow_page_pte: the page at addr if its PTE allows the access now, grabbed; null when a
// fault is needed. EFAULT for a special PTE that is not the zero page.
Result<page::Page*> follow_page_pte(Mm& mm, VirtAddr addr, FollFlags flags)
    REQUIRES_SHARED(mm.mmap_lock()) {
  const Kernel& k = mm.kernel();
  if (const std::optional<EntrySlot> pmd = mm.page_table().walk_pmd(addr);
      pmd && pmd_trans_huge(k, pmd->load())) {
    // follow_huge_pmd never splits a hugetlb leaf (FOLL_SPLIT_PMD is for THPs).
    const Vma* leaf_vma = mm.vma_lookup(addr);
    if (has(flags, FollFlags::kSplitPmd) &&
        !(leaf_vma != nullptr && has(leaf_vma->flags, VmFlags::kHugetlb))) {
      // follow_pmd_mask with FOLL_SPLIT_PMD: the caller wants PTEs.
      const Vma* vma = mm.vma_lookup(addr);
      assert(vma != nullptr && "gup checked the VMA");
      split_huge_pmd(mm, *vma, *pmd, addr);
    } else {
      // follow_huge_pmd: the subpage of the leaf, grabbed under the lock.
      SpinLocker guard(mm.page_table().lock());
      const std::optional<DecodedEntry> d = pmd_trans_huge(k, pmd->load());
      if (d) {
        if (arch::has(d->prot, Prot::kProtNone)) return nullptr;
        if (has(flags, FollFlags::kWrite) && !arch::has(d->prot, Prot::kWrite)) return nullptr;
        page::Page* head = MUST(k.pfn_to_page(d->pfn), "a PMD leaf maps RAM");
        page::Page* page = head + pt_index(PtLevel::kPte, addr);
        page::Folio folio = page::page_folio(head);
        try_grab_folio(folio, flags);
        if (has(flags, FollFlags::kTouch) && has(flags, FollFlags::kWrite) && !is_zero_folio(folio))
          folio.set_flag(page::PageFlag::kDirty);
        return page;
      }
    }
  }
  const std::optional<EntrySlot> pte = mm.page_table().walk_pte(addr);
  if (!pte) return nullptr;  // no_page_table
  SpinLocker guard(mm.page_table().lock());  // pte_offset_map_lock
  const DecodedEntry d = k.codec().decode(EntryLevel::kPte, pte->load());
  if (d.kind != DecodedEntry::Kind::kPresent) return nullptr;  // none or a swap entry: fault
  if (arch::has(d.prot, Prot::kProtNone)) return nullptr;
  if (has(flags, FollFlags::kWrite) && !arch::has(d.prot, Prot::kWrite)) return nullptr;
  page::Page* page = vm_normal_page(k, d);
  if (page == nullptr) {
    if (!k.is_zero_pfn(d.pfn))
      return make_error(Errno::kEFAULT, "gup: special PTE at {:#x}", addr.raw());
    page = MUST(k.pfn_to_page(d.pfn), "the zero page has a descriptor");
  }
  page::Folio folio = page::page_folio(page);
  try_grab_folio(folio, flags);
  // FOLL_TOUCH: a write makes the folio dirty (mark_page_accessed has no LRU to act on here).
  if (has(flags, FollFlags::kTouch) && has(flags, FollFlags::kWrite) && !is_zero_folio(folio))
    folio.set_flag(page::PageFlag::kDirty);
  return page;
}

// faultin_page: handle_mm_fault for the access GUP wants; its vm_fault_t as an errno
// (vm_fault_to_errno).
Status faultin_page(Mm& mm, VirtAddr addr, FollFlags flags) REQUIRES_SHARED(mm.mmap_lock()) {
  FaultFlags ff = FaultFlags::kNone;
  if (has(flags, FollFlags::kRemote)) ff |= FaultFlags::kRemote;
  if (has(flags, FollFlags::kWrite)) ff |= FaultFlags::kWrite;
  const FaultResult r = handle_mm_fault(mm, addr, ff);
  switch (r.outcome) {
    case FaultOutcome::kHandled:
    case FaultOutcome::kRetry:
      return ok();
    case FaultOutcome::kOom:
      return make_error(Errno::kENOMEM, "gup: fault at {:#x}: {}", addr.raw(), r.reason);
    case FaultOutcome::kSigSegv:
    case FaultOutcome::kSigBus:
      return make_error(Errno::kEFAULT, "gup: fault at {:#x}: {} ({})", addr.raw(),
                        fault_outcome_name(r.outcome), r.reason);
  }
  return make_error(Errno::kEFAULT, "gup: fault at {:#x}: unknown outcome", addr.raw());
}

// __get_user_pages: one page at a time, faulting until the PTE allows the access.
Result<std::vector<page::Page*>> get_user_pages_locked(Mm& mm, VirtAddr start,
                                                       uint64_t nr_pages, FollFlags flags)
    REQUIRES_SHARED(mm.mmap_lock()) {
  std::vector<page::Page*> pages;
  pages.reserve(nr_pages);
  VirtAddr addr = start.page_base();
  for (uint64_t i = 0; i < nr_pages; ++i, addr += kPageSize) {
    auto fail = [&](Error e) -> Result<std::vector<page::Page*>> {
      if (pages.empty()) return e;
      return std::move(pages);  // the count got so far, as the kernel returns it
    };
    const Vma* vma = mm.vma_lookup(addr);
    if (vma == nullptr) return fail(make_error(Errno::kEFAULT, "gup: no VMA at {:#x}", addr.raw()));
    if (Status s = check_vma_flags(*vma, addr, flags); s.is_error()) return fail(s.error());
    for (;;) {
      Result<page::Page*> page = follow_page_pte(mm, addr, flags);
      if (page.is_error()) return fail(page.error());
      if (*page != nullptr) {
        pages.push_back(*page);
        break;
      }
      if (has(flags, FollFlags::kNofault))
        return fail(make_error(Errno::kEFAULT, "gup: FOLL_NOFAULT and {:#x} needs a fault", addr.raw()));
      if (Status s = faultin_page(mm, addr, flags); s.is_error()) return fail(s.error());
    }
  }
  return pages;
}

// folio_is_longterm_pinnable, for what dpmm maps with present PTEs: RAM pages are; a
// ZONE_DEVICE page behind a present PTE is device-coherent (device-private pages are never
// present), which is not.
bool folio_is_longterm_pinnable(page::Folio folio) { return !folio.is_zone_device(); }

// __gup_longterm_locked: pin, then move out and retry whatever may not stay pinned long.
Result<std::vector<page::Page*>> gup_longterm_locked(Mm& mm, VirtAddr start, uint64_t nr_pages,
                                                     FollFlags flags)
    REQUIRES_SHARED(mm.mmap_lock()) {
  if (has(flags, FollFlags::kPin)) mm.set_has_pinned();  // mm_set_has_pinned_flag
  if (!has(flags, FollFlags::kLongterm)) return get_user_pages_locked(mm, start, nr_pages, flags);
  for (;;) {
    std::vector<page::Page*> pages = TRY(get_user_pages_locked(mm, start, nr_pages, flags));
    bool all_pinnable = true;
    for (page::Page* p : pages) all_pinnable &= folio_is_longterm_pinnable(page::page_folio(p));
    if (all_pinnable) return pages;
    // migrate_longterm_unpinnable_folios: each device-coherent folio's pin becomes a plain
    // reference handed to the migration; every other pin is dropped; then all over again.
    DevicePrivateFaultHandler* h = mm.kernel().device_private_handler();
    for (size_t i = 0; i < pages.size(); ++i) {
      page::Folio folio = page::page_folio(pages[i]);
      if (folio_is_longterm_pinnable(folio)) {
        gup_put_folio(folio, flags);
        continue;
      }
      page::folio_get(folio);
      gup_put_folio(folio, flags);
      Status s = ok();
      if (h != nullptr) {
        s = h->migrate_longterm_unpinnable(folio);
      } else {
        page::folio_put(folio);
        s = make_error(Errno::kEOPNOTSUPP,
                       "gup: FOLL_LONGTERM on a device-coherent page and no device layer");
      }
      if (s.is_error()) {
        for (size_t j = i + 1; j < pages.size(); ++j)
          gup_put_folio(page::page_folio(pages[j]), flags);
        return s.error();
      }
    }
  }
}

}  // namespace

Result<std::vector<page::Page*>> get_user_pages_remote(Mm& mm, VirtAddr start,
                                                       uint64_t nr_pages, FollFlags flags) {
  mm.mmap_assert_locked();
  const FollFlags f =
      TRY(valid_gup_args(flags, FollFlags::kGet | FollFlags::kTouch | FollFlags::kRemote));
  return gup_longterm_locked(mm, start, nr_pages, f);
}

Result<std::vector<page::Page*>> pin_user_pages_remote(Mm& mm, VirtAddr start,
                                                       uint64_t nr_pages, FollFlags flags) {
  mm.mmap_assert_locked();
  const FollFlags f =
      TRY(valid_gup_args(flags, FollFlags::kPin | FollFlags::kTouch | FollFlags::kRemote));
  return gup_longterm_locked(mm, start, nr_pages, f);
}

Result<std::vector<page::Page*>> pin_user_pages(Mm& mm, VirtAddr start, uint64_t nr_pages,
                                                FollFlags flags) {
  mm.mmap_assert_locked();
  const FollFlags f = TRY(valid_gup_args(flags, FollFlags::kPin | FollFlags::kTouch));
  return gup_longterm_locked(mm, start, nr_pages, f);
}

Result<std::vector<page::Page*>> get_user_pages_unlocked(Mm& mm, VirtAddr start,
                                                         uint64_t nr_pages, FollFlags flags) {
  ReadLocker guard(mm.mmap_lock());
  const FollFlags f = TRY(valid_gup_args(flags, FollFlags::kGet | FollFlags::kTouch));
  return gup_longterm_locked(mm, start, nr_pages, f);
}

Result<std::vector<page::Page*>> pin_user_pages_unlocked(Mm& mm, VirtAddr start,
                                                         uint64_t nr_pages, FollFlags flags) {
  ReadLocker guard(mm.mmap_lock());
  const FollFlags f = TRY(valid_gup_args(flags, FollFlags::kPin | FollFlags::kTouch));
  return gup_longterm_locked(mm, start, nr_pages, f);
}

void put_user_page(page::Page* page) { gup_put_folio(page::page_folio(page), FollFlags::kGet); }

void unpin_user_page(page::Page* page) { gup_put_folio(page::page_folio(page), FollFlags::kPin); }

void unpin_user_pages(std::span<page::Page* const> pages) {
  for (page::Page* p : pages) unpin_user_page(p);
}

}  // namespace dpmm::mm
