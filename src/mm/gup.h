// get_user_pages and pin_user_pages (mm/gup.c): find the pages behind a range of a process's
// addresses, faulting them in as needed, and hold them with a reference (FOLL_GET) or a pin
// (FOLL_PIN).
//
// Per page (__get_user_pages, follow_page_pte, faultin_page):
//   - the VMA must allow the access (check_vma_flags): a VMA covering the address, not
//     VM_IO|VM_PFNMAP, VM_WRITE for FOLL_WRITE, readable otherwise; FOLL_ANON wants an
//     anonymous VMA -- else EFAULT;
//   - a present PTE that allows the access gives its page (the zero page too, for reads);
//   - anything else is faulted (handle_mm_fault with FAULT_FLAG_REMOTE, and FAULT_FLAG_WRITE
//     for FOLL_WRITE) and looked up again: pte_none, a read-only PTE for FOLL_WRITE (this
//     breaks COW), swap entries, migration entries (the fault waits), device-exclusive entries
//     (the fault restores the page) and device-private entries (the fault migrates the page back
//     through its driver's migrate_to_ram) -- so device-private pages are never returned,
//     referenced or pinned;
//   - the page is then grabbed (try_grab_folio): FOLL_GET adds one reference; FOLL_PIN adds
//     GUP_PIN_COUNTING_BIAS references to a small folio (one reference and one pincount to a
//     large one), and none to the zero page; the mm gets MMF_HAS_PINNED.
// FOLL_PIN | FOLL_LONGTERM (check_and_migrate_movable_folios): a page that may not stay pinned
// for long -- a device-coherent ZONE_DEVICE page -- is unpinned and migrated to system memory
// through the device-private seam (DevicePrivateFaultHandler::migrate_longterm_unpinnable), and
// the whole lookup runs again; a failed migration unpins everything and fails with its error.
//
// Results: the pages looked up, in address order. As the kernel's return count, a failure after
// at least one page returns the pages got so far; a failure at the first page is the error.
// References and pins are dropped with put_page / unpin_user_page(s).
//
// Simplifications (docs/hmm.md, GUP): FAULT_FLAG_UNSHARE does not exist in dpmm's fault path, so a
// read pin of a COW-shared anon page does not unshare it first (gup_must_unshare); FOLL_FORCE,
// FOLL_NOWAIT, FOLL_DUMP and FOLL_HWPOISON are refused with EINVAL; there is no gup-fast.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/flags.h"
#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "mm/mm.h"
#include "page/page.h"

namespace dpmm::mm {

// FOLL_* (include/linux/mm_types.h; the internal ones from mm/internal.h).
enum class FollFlags : uint32_t {
  kNone = 0,
  kWrite = 1u << 0,            // FOLL_WRITE: the page must be writable (fault for write)
  kGet = 1u << 1,              // FOLL_GET: take a reference (put_page)
  kDump = 1u << 2,             // FOLL_DUMP (not modelled: EINVAL)
  kForce = 1u << 3,            // FOLL_FORCE (not modelled: EINVAL)
  kNowait = 1u << 4,           // FOLL_NOWAIT (not modelled: EINVAL)
  kNofault = 1u << 5,          // FOLL_NOFAULT: never fault; EFAULT where a fault is needed
  kHwpoison = 1u << 6,         // FOLL_HWPOISON (not modelled: EINVAL)
  kAnon = 1u << 7,             // FOLL_ANON: anonymous VMAs only
  kLongterm = 1u << 8,         // FOLL_LONGTERM: pins held indefinitely (only with FOLL_PIN)
  kSplitPmd = 1u << 9,         // FOLL_SPLIT_PMD: split a THP PMD first
  kPciP2pdma = 1u << 10,       // FOLL_PCI_P2PDMA
  kInterruptible = 1u << 11,   // FOLL_INTERRUPTIBLE
  kHonorNumaFault = 1u << 12,  // FOLL_HONOR_NUMA_FAULT
  // mm/internal.h: set by the entry points below, refused from callers.
  kTouch = 1u << 16,           // FOLL_TOUCH: mark the page accessed
  kTried = 1u << 17,           // FOLL_TRIED
  kRemote = 1u << 18,          // FOLL_REMOTE: not current->mm
  kPin = 1u << 19,             // FOLL_PIN: pin (unpin_user_page)
  kFastOnly = 1u << 20,        // FOLL_FAST_ONLY
  kUnlockable = 1u << 21,      // FOLL_UNLOCKABLE
  kMadvPopulate = 1u << 22,    // FOLL_MADV_POPULATE
};
DPMM_FLAG_OPS(FollFlags)

// INTERNAL_GUP_FLAGS.
inline constexpr FollFlags kInternalGupFlags = FollFlags::kTouch | FollFlags::kTried |
                                               FollFlags::kRemote | FollFlags::kPin |
                                               FollFlags::kFastOnly | FollFlags::kUnlockable |
                                               FollFlags::kMadvPopulate;

// get_user_pages_remote(mm, start, nr_pages, gup_flags, pages, NULL): FOLL_GET | FOLL_TOUCH |
// FOLL_REMOTE added. REQUIRES: mmap_lock held for read; never dropped.
// `start` is taken down to its page; nr_pages 0 gives no pages.
//   EINVAL  internal or unmodelled flags, FOLL_LONGTERM without FOLL_PIN, FOLL_GET together
//           with FOLL_PIN (is_valid_gup_args)
//   EFAULT  no VMA, a VMA that refuses the access, a fault that failed (SIGSEGV/SIGBUS), or a
//           needed fault under FOLL_NOFAULT
//   ENOMEM  a fault could not allocate
Result<std::vector<page::Page*>> get_user_pages_remote(Mm& mm, VirtAddr start,
                                                       uint64_t nr_pages, FollFlags flags)
    REQUIRES_SHARED(mm.mmap_lock());
// pin_user_pages_remote: FOLL_PIN | FOLL_TOUCH | FOLL_REMOTE added (FOLL_GET refused). Errors
// as above, plus FOLL_LONGTERM's migration errors (EBUSY, EOPNOTSUPP without a seam).
Result<std::vector<page::Page*>> pin_user_pages_remote(Mm& mm, VirtAddr start,
                                                       uint64_t nr_pages, FollFlags flags)
    REQUIRES_SHARED(mm.mmap_lock());
// pin_user_pages on `mm` standing for current->mm: FOLL_PIN | FOLL_TOUCH added.
Result<std::vector<page::Page*>> pin_user_pages(Mm& mm, VirtAddr start, uint64_t nr_pages,
                                                FollFlags flags) REQUIRES_SHARED(mm.mmap_lock());
// get_user_pages_unlocked / pin_user_pages_unlocked: the same, taking mmap_lock for read.
Result<std::vector<page::Page*>> get_user_pages_unlocked(Mm& mm, VirtAddr start,
                                                         uint64_t nr_pages, FollFlags flags)
    EXCLUDES(mm.mmap_lock());
Result<std::vector<page::Page*>> pin_user_pages_unlocked(Mm& mm, VirtAddr start,
                                                         uint64_t nr_pages, FollFlags flags)
    EXCLUDES(mm.mmap_lock());

// put_page for a FOLL_GET page.
void put_user_page(page::Page* page);
// unpin_user_page / unpin_user_pages: drop a FOLL_PIN pin (nothing for the zero page).
void unpin_user_page(page::Page* page);
void unpin_user_pages(std::span<page::Page* const> pages);

}  // namespace dpmm::mm
