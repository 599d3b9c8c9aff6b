// Hugetlb mappings (mm/hugetlb.c, fs/hugetlbfs/inode.c, mm/mmap.c ksys_mmap_pgoff's
// MAP_HUGETLB, include/linux/hugetlb.h): private anonymous ones (below), and shared or private
// mappings of a hugetlbfs file, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB included (an unlinked
// hugetlbfs file behind the VMA): see hugetlbfs.h for the page cache and the inode's
// reservations. A private mapping of a file owns its reservations as an anonymous one does.
//
// mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB) makes a VMA with VM_HUGETLB|VM_DONTEXPAND whose
// length is rounded up to the huge page size and whose start is huge-page aligned. Unless
// MAP_NORESERVE, the mapping reserves one pool page per huge page at mmap time
// (hugetlb_reserve_pages; ENOMEM when the pool cannot promise them) and becomes the
// reservation's owner (HPAGE_RESV_OWNER): its HugetlbResvMap records which huge pages have
// used their reservation. Unused reservations go back when the VMA goes
// (hugetlb_vm_op_close); a fork child owns none (hugetlb_dup_vma_private).
//
// Each huge page is one pool folio (hstate.h) mapped by a PMD leaf, never split:
//   fault    hugetlb_fault under the fault mutex: a none PMD gets a zeroed pool folio
//            (hugetlb_no_page; read-only at first in a private mapping, then hugetlb_wp
//            makes it writable for a write fault); a write to a read-only leaf reuses an
//            exclusively mapped folio or copies it to a new pool folio (hugetlb_wp).
//            No pool page: SIGBUS (alloc_hugetlb_folio's -ENOSPC).
//   rmap     hugetlb_add_new_anon_rmap / hugetlb_try_dup_anon_rmap / hugetlb_remove_rmap: the
//            folio's entire and large mapcounts count its PMD mappings; PageAnonExclusive on
//            the head. Hugetlb pages are not counted in RSS (hugetlb_usage is not modelled).
//   unmap    __unmap_hugepage_range: the leaf goes, the folio's reference is dropped after the
//            TLB flush and the folio returns to the pool when it was the last; the owner's
//            reservation for that huge page is restored (HPG_restore_reserve). MADV_DONTNEED
//            zaps whole huge pages this way (madvise.cc).
//   mremap   move_hugetlb_page_tables: the leaves move as they are (mremap.cc).
//   mprotect hugetlb_change_protection: every leaf takes the VMA's new protection.
//   fork     copy_hugetlb_page_range: the child maps the same folio read-only (both sides
//            write-protected in a private mapping); a folio that may be pinned is copied.
//            A page-cache folio is mapped once more (hugetlb_add_file_rmap), never copied; a
//            shared VMA without an anon_vma is not copied at all (the child refaults).
//   file     hugetlb_no_page on a hugetlbfs VMA: SIGBUS past EOF; a shared VMA maps the
//            cached folio (allocating, zeroing and caching it first, with the inode's
//            reservation when it holds one) writable and dirty when the VMA is writable; a
//            private VMA maps a cached folio read-only (a write copies it: hugetlb_wp) and
//            fills a hole with a private anon folio, never cached.
//   split    a VMA may be cut only at huge-page boundaries (hugetlb_vm_op_split): munmap and
//            mprotect of a range that cuts a huge page fail with EINVAL.
// GUP, pagemap, CPU access and the rmap walk read the PMD leaves as they read a THP's; GUP
// never splits one (follow_huge_pmd); hmm_range_fault has its hugetlb_entry walk.
// migrate_vma_setup refuses hugetlb VMAs (EINVAL) and make_device_exclusive refuses hugetlb
// folios (EOPNOTSUPP), as the kernel does.
//
// Not modelled (docs/mm.md): hugetlbfs files and MAP_SHARED hugetlb mappings, sizes other than
// the PMD-sized default, surplus pages and overcommit, PMD sharing, and the owner's
// unmap_ref_private fallback when a COW finds no page.
#pragma once

#include <cstdint>
#include <memory>
#include <set>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "mm/anon_rmap.h"
#include "mm/fault.h"
#include "mm/mm.h"
#include "mm/vma.h"
#include "page/folio.h"

namespace dpmm::mm {

// is_vm_hugetlb_page.
inline bool is_vm_hugetlb_page(const Vma& vma) { return has(vma.flags, VmFlags::kHugetlb); }

// struct resv_map of a private mapping: the huge pages (by vma_hugecache_offset) that have
// used the owner's reservation (region_add on commit). The lock is resv_map->lock; nothing is
// taken under it.
struct HugetlbResvMap {
  mutable SpinLock lock{LockRank::kLeaf};
  std::set<uint64_t> consumed GUARDED_BY(lock);
};

// vma_hugecache_offset: the huge page index of `address` in the mapping.
uint64_t vma_hugecache_offset(const Kernel& k, const Vma& vma, VirtAddr address);

// hugetlb_reserve_pages for a private mapping of `nr` huge pages. With VM_NORESERVE nothing is
// reserved and there is no owner map (null). ENOMEM when the pool cannot promise nr pages.
Result<std::shared_ptr<HugetlbResvMap>> hugetlb_reserve_pages(Kernel& k, uint64_t nr,
                                                              VmFlags vm_flags);
// hugetlb_vm_op_close: the VMA [vma.start, vma.end) goes; the owner gives back the
// reservations of its huge pages that never used theirs.
void hugetlb_vm_op_close(Kernel& k, const Vma& vma);
// hugetlb_vm_op_split: EINVAL unless `addr` is huge-page aligned.
Status hugetlb_vm_op_split(const Kernel& k, const Vma& vma, VirtAddr addr);

// hugetlb_fault. REQUIRES: mmap_lock held for read; access_error passed; vma is hugetlb.
FaultResult hugetlb_fault(Mm& mm, const Vma& vma, VirtAddr address, FaultFlags flags)
    REQUIRES_SHARED(mm.mmap_lock());

// __unmap_hugepage_range over [start, end) (huge-page aligned, inside the VMA): clears the
// leaves, drops their rmap and hands the folios to `tlb`. REQUIRES: mmap_lock for write (or
// the anon_vma lock); EXCLUDES the page-table lock.
void unmap_hugepage_range(Mm& mm, const Vma& vma, VirtAddr start, VirtAddr end, MmuGather& tlb);
// move_hugetlb_page_tables (mremap): every PMD leaf of [old_addr, old_addr + len) moves to the
// same offset from new_addr, as it is (its reference and mapcount go with it). All three are
// huge-page aligned; the destination is empty. REQUIRES: mmap_lock for write and the
// anon_vma lock (take_rmap_locks); the caller flushes the old range.
void move_hugetlb_page_tables(Mm& mm, VirtAddr old_addr, VirtAddr new_addr, uint64_t len);
// hugetlb_change_protection over [start, end): every present leaf takes vma.page_prot,
// keeping accessed, dirty and soft-dirty. REQUIRES: mmap_lock for write; the caller flushes.
void hugetlb_change_protection(Mm& mm, const Vma& vma, VirtAddr start, VirtAddr end);
// copy_hugetlb_page_range (fork). ENOMEM: no page table for the child, or no pool page for
// the copy of a possibly pinned folio. REQUIRES: src's mmap_lock for write; dst private to
// the fork.
Status copy_hugetlb_page_range(Mm& dst, Mm& src, const Vma& dst_vma, const Vma& src_vma);

// ---- rmap of hugetlb folios (include/linux/rmap.h) ----
// hugetlb_add_new_anon_rmap: a fresh pool folio becomes anon, exclusive, mapped once.
void hugetlb_add_new_anon_rmap(page::Folio folio, const Vma& vma, VirtAddr address);
// hugetlb_try_dup_anon_rmap: fork maps it once more. EBUSY (nothing changed) when it is
// exclusive and may be pinned: the caller copies it instead.
Status hugetlb_try_dup_anon_rmap(page::Folio folio, MaybePinned maybe_pinned);
// hugetlb_add_file_rmap: a hugetlbfs page-cache folio is mapped once more (shared mappings,
// fork, a private mapping's read of a cached page). REQUIRES: the caller holds the reference
// the mapping will own.
void hugetlb_add_file_rmap(page::Folio folio);
// hugetlb_remove_rmap: one PMD mapping fewer (the caller still owns its reference).
void hugetlb_remove_rmap(page::Folio folio);

}  // namespace dpmm::mm
