// The default hugetlb hstate and its pool of huge folios (mm/hugetlb.c struct hstate,
// set_max_huge_pages, hugetlb_acct_memory, gather_surplus_pages, dequeue_hugetlb_folio_node,
// free_huge_folio, update_and_free_hugetlb_folio; fs/proc/meminfo.c hugetlb_report_meminfo).
//
// One hstate per Kernel, of PMD size (2 MiB: order 9 with 4 KiB pages on x86_64 and arm64,
// the default_hstate of a boot without hugepagesz=). The pool starts empty, as on a boot
// without hugepages= (KernelOptions::nr_hugepages fills it at creation, as that parameter
// would); set_max_huge_pages is `echo N > /proc/sys/vm/nr_hugepages`.
//
// Pool folios: order-9 compound folios taken from the buddy, their head typed PGTY_hugetlb
// (folio_test_hugetlb) and released to this hstate (the kernel's free_huge_folio, reached from
// folio_put through the hugetlb destructor; dpmm sets the head's FolioReleaser). A free pool
// folio has refcount 0 and sits on the free list; alloc_folio hands one out with refcount 1
// and no mapping. Its bytes are whatever the last user left: hugetlb_no_page zeroes a folio
// when it first maps it (folio_zero_user).
//
// Counters (/proc/meminfo): HugePages_Total = nr_huge_pages, HugePages_Free = free_huge_pages,
// HugePages_Rsvd = resv_huge_pages (promised to a mapping and not yet faulted),
// HugePages_Surp = surplus_huge_pages. dpmm keeps nr_overcommit_hugepages at 0, its default,
// so there is never a surplus page (docs/mm.md). Invariant: rsvd <= free <= total.
//
// Locking: the pool's counters and free list sit under hugetlb_lock (LockRank::kLeaf: nothing
// is taken under it; the buddy is called without it, as the kernel drops hugetlb_lock around
// allocations). fault_mutex() is hugetlb_fault_mutex_table, one mutex for all pages (a
// simplification of the kernel's hash of mutexes: faults on different huge pages serialise).
#pragma once

#include <cstdint>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "page/folio.h"
#include "page/page.h"

namespace dpmm::mm {

class Kernel;

// The hugetlb lines of /proc/meminfo for the default hstate.
struct HugetlbMeminfo {
  uint64_t total = 0;      // HugePages_Total
  uint64_t free = 0;       // HugePages_Free
  uint64_t rsvd = 0;       // HugePages_Rsvd
  uint64_t surp = 0;       // HugePages_Surp (always 0: no overcommit)
  uint64_t page_size = 0;  // Hugepagesize, in bytes
};

// HPG_restore_reserve, a bit of a hugetlb folio's private word (the kernel keeps its
// hugetlb-specific folio flags there): when the folio is freed, free_huge_folio gives the pool
// one reservation back (resv_huge_pages++). __unmap_hugepage_range sets it when the owner of a
// private mapping unmaps an anon folio that used the mapping's reservation (hugetlb.h).
inline constexpr uint64_t kHpgRestoreReserve = uint64_t{1} << 0;
inline bool folio_test_hugetlb_restore_reserve(page::Folio folio) {
  return (folio.head()->private_data() & kHpgRestoreReserve) != 0;
}
inline void folio_set_hugetlb_restore_reserve(page::Folio folio) {
  folio.head()->set_private_data(folio.head()->private_data() | kHpgRestoreReserve);
}

// Whether an allocation consumes one of the pool's reservations (a mapping's promise made at
// mmap time, hugetlb_reserve_pages) or takes an unreserved free page.
enum class UseReserve : bool { kNo, kYes };

class Hstate final : public page::FolioReleaser {
 public:
  explicit Hstate(Kernel& kernel);
  // Returns every free pool folio to the buddy. REQUIRES: no pool folio is in use.
  ~Hstate() override;
  Hstate(const Hstate&) = delete;
  Hstate& operator=(const Hstate&) = delete;

  // huge_page_order / huge_page_size / pages_per_huge_page.
  Order order() const;
  uint64_t size() const;

  // set_max_huge_pages: grows the pool from the buddy (order-9 blocks, zeroed as the buddy
  // hands them out) or shrinks it by freeing free pool folios. It never frees a page in use or
  // reserved: the target is raised to rsvd + in-use first. Like the sysctl, it succeeds with
  // fewer pages than asked when the buddy runs out (read meminfo().total to see how many).
  void set_max_huge_pages(uint64_t count) EXCLUDES(lock_);

  HugetlbMeminfo meminfo() const EXCLUDES(lock_);

  // hugetlb_acct_memory(h, +delta) for a private mapping without MAP_NORESERVE: promises
  // `delta` free pages to it. ENOMEM (nothing changed) when the free pages not yet promised
  // cannot cover delta (gather_surplus_pages with no overcommit).
  Status reserve(uint64_t delta) EXCLUDES(lock_);
  // hugetlb_acct_memory(h, -delta): gives back promises that will not be used.
  void unreserve(uint64_t delta) EXCLUDES(lock_);

  // dequeue_hugetlb_folio_vma (alloc_hugetlb_folio's pool half): a free pool folio with
  // refcount 1, no mapping, PGTY_hugetlb, bytes not cleared. kYes consumes one reservation
  // (REQUIRES: the caller holds one); kNo takes only a page nobody was promised.
  //   ENOSPC  no such page (the fault turns it into VM_FAULT_SIGBUS, vmf_error)
  Result<page::Folio> alloc_folio(UseReserve use_reserve) EXCLUDES(lock_);
  // restore_reserve_on_error: an allocation made with kYes whose folio was never mapped gives
  // its reservation back (the folio itself goes back by folio_put).
  void restore_reserve() EXCLUDES(lock_);

  // free_huge_folio: the folio's last reference went. It goes back on the free list with its
  // rmap state reset (anon mapping, flags); with HPG_restore_reserve set the pool gets one
  // reservation back. REQUIRES: unmapped (entire mapcount -1).
  void folio_release(page::Folio folio) override EXCLUDES(lock_);

  // hugetlb_fault_mutex_table: held by hugetlb_fault across the whole fault.
  Mutex& fault_mutex() RETURN_CAPABILITY(fault_mutex_) { return fault_mutex_; }

 private:
  // update_and_free_hugetlb_folio: a free pool folio goes back to the buddy.
  void dissolve(page::Page* head);

  Kernel& kernel_;
  mutable SpinLock lock_{LockRank::kLeaf};
  std::vector<page::Page*> free_list_ GUARDED_BY(lock_);  // hugepage_freelists (LIFO)
  uint64_t nr_huge_pages_ GUARDED_BY(lock_) = 0;
  uint64_t resv_huge_pages_ GUARDED_BY(lock_) = 0;
  Mutex fault_mutex_{LockRank::kHugetlbFaultMutex};
};

}  // namespace dpmm::mm
