// make_device_exclusive (mm/rmap.c, single-page form since 6.15): give a device exclusive
// access to one anonymous page, e.g. for atomics the bus cannot do on shared memory. The CPU
// PTE becomes a device-exclusive swap entry (SWP_DEVICE_EXCLUSIVE holding the PFN); any CPU
// access takes the page back (mm/swap_fault.cc remove_device_exclusive_entry: MMU_NOTIFY_CLEAR
// with no owner, PTE restored with the VMA's protection, writable only for an exclusive anon
// page of a VM_WRITE VMA) and fork restores it in the parent first (fork.cc
// try_restore_exclusive_pte).
//
// Steps (kernel-baseline §8):
//   1. get_user_page_vma_remote(FOLL_GET | FOLL_WRITE | FOLL_SPLIT_PMD): fault the page in
//      writable (breaks COW; revokes another device's exclusive entry); a reference is taken;
//   2. the folio must be anonymous and not hugetlb: else put, EOPNOTSUPP;
//   3. folio_trylock: else put, EBUSY;
//   4. MMU_NOTIFY_EXCLUSIVE over [addr, addr + PAGE_SIZE) with `owner` (a driver filters its
//      own events with it);
//   5. walk again: the PTE must still be present, writable and map this page: else end the
//      notifier, unlock, put, EBUSY;
//   6. clear the PTE and flush (dirty moves to the folio), install the device-exclusive entry
//      (soft-dirty and uffd-wp kept); the entry keeps the mapping's reference and mapcount;
//   7. end the notifier and return the page with its folio locked and referenced. The caller
//      maps it on the device, then folio_unlock(folio) and folio_put(folio).
#pragma once

#include "base/result.h"
#include "base/types.h"
#include "mm/mm.h"
#include "page/folio.h"
#include "page/page.h"

namespace dpmm::hmm {

struct DeviceExclusive {
  page::Page* page;    // the page at addr
  page::Folio folio;   // its folio: locked, one reference held for the caller
};

// make_device_exclusive. `addr` is aligned down to its page. REQUIRES: mmap_lock held (read).
//   EFAULT      no VMA or not writable there (get_user_pages' errors; a failed fault)
//   ENOMEM      the write fault could not allocate
//   EOPNOTSUPP  not an anonymous folio, or a hugetlb one
//   EBUSY       the folio lock is held by someone else, or the PTE changed meanwhile
Result<DeviceExclusive> make_device_exclusive(mm::Mm& mm, VirtAddr addr, const void* owner)
    REQUIRES_SHARED(mm.mmap_lock());

}  // namespace dpmm::hmm
