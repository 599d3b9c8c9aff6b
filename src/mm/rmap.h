// The anonymous reverse map (mm/rmap.c): from an anon folio to every (mm, VMA, address) that
// may map it, across a fork tree.
//
// Structure (a simplification of anon_vma + anon_vma_chain, documented in docs/mm.md):
//   - every anon VMA that has faulted gets an AnonVma (vma.h); a folio's mapping word points
//     at the AnonVma of the VMA it was first mapped in (FOLIO_MAPPING_ANON tag), its index is
//     the page offset (linear_page_index);
//   - fork gives each child VMA an AnonVma whose parent is the parent VMA's (anon_vma_fork).
//     The kernel's chain of a VMA (its own anon_vma plus its ancestors') is exactly the path to
//     the root here, so instead of chains each AnonVma keeps its children: the VMAs that may
//     map a folio of AnonVma A are those whose AnonVma is A or a descendant of A;
//   - a folio's index is its page offset in the VMA that first mapped it (linear_page_index);
//     VMAs keep their vm_pgoff through splits, fork and mremap moves, so in every VMA of the
//     tree the folio sits at vma_address(vma, index), which the walk computes per VMA (the
//     kernel searches the anon_vma's interval tree by pgoff; dpmm looks at the mm's VMAs that
//     use the anon_vma).
// File folios (page cache): the folio's mapping word names its AddressSpace (address_space.h);
// the walk visits every VMA of every mm in the file's i_mmap whose pgoff range holds the
// folio's index, at vma_address(vma, index).
// Locking: one RwLock per machine, Kernel::anon_vma_lock() (LockRank::kAnonVma), stands for
// every anon_vma->root->rwsem. rmap_walk holds it for read; whoever changes a VMA set, a VMA's
// fields, the AnonVma tree or unhooks page tables holds it for write, so the walk may read
// other mms' VMAs and walk their page tables without their mmap_lock, as the kernel's does.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "arch/pfn_or_offset.h"
#include "base/lock.h"
#include "base/types.h"
#include "mm/mm.h"
#include "mm/page_vma_mapped.h"
#include "page/folio.h"

namespace dpmm::mm {

// anon_vma_alloc: a root AnonVma of `mm` with the mm's reference. Not yet reachable by any
// walk, so no lock is needed.
AnonVma* anon_vma_alloc(Mm& mm);
// anon_vma_fork: a child of `parent` for `child_mm`, with child_mm's reference; takes a
// reference on `parent`. REQUIRES the anon_vma lock held for write.
AnonVma* anon_vma_fork_locked(Kernel& k, Mm& child_mm, AnonVma* parent)
    REQUIRES(k.anon_vma_lock());
// put_anon_vma: drops one reference; the last frees it and drops its reference on its
// parent. REQUIRES the anon_vma lock held for write.
void put_anon_vma_locked(Kernel& k, AnonVma* anon_vma) REQUIRES(k.anon_vma_lock());

// folio_anon_vma: the AnonVma of an anon folio, null for any other folio.
AnonVma* folio_anon_vma(page::Folio folio);

// vma_address: where page offset `pgoff` sits in `vma`, or nullopt when outside it. With
// nr_pages > 1 (a large folio), the address of the folio's first page inside the VMA.
std::optional<VirtAddr> vma_address(const Vma& vma, uint64_t pgoff, uint64_t nr_pages = 1);

// One candidate mapping. Return false to stop the walk (rmap_one's bool). For a large folio
// `address` is that of its first page inside the VMA (possibly not its head page).
using RmapVisitor = std::function<bool(Mm& mm, const Vma& vma, VirtAddr address)>;

// rmap_walk: calls `visit` for every (mm, VMA, address) that may map the folio (anon:
// rmap_walk_anon; page cache: rmap_walk_file), holding the anon_vma lock for read (which also
// stands for i_mmap_rwsem). The visitor may take page-table locks, call MMU notifiers and take
// a driver mutex; it must not take any mmap_lock. Does nothing for a folio with neither (a
// driver page from vm_insert_page, a free page). REQUIRES: the folio is referenced by the
// caller (or mapped) so its mapping word names a live AnonVma; for a page-cache folio, the
// folio locked or its file otherwise kept (truncation clears the mapping word under the lock).
void rmap_walk(Kernel& k, page::Folio folio, const RmapVisitor& visit)
    EXCLUDES(k.anon_vma_lock());
void rmap_walk_locked(Kernel& k, page::Folio folio, const RmapVisitor& visit)
    REQUIRES_SHARED(k.anon_vma_lock());

// A page-table entry that maps the folio, found through the rmap.
struct RmapMapping {
  Mm* mm = nullptr;
  VirtAddr address;
  uint64_t entry = 0;  // the PTE word as found
  bool operator==(const RmapMapping&) const = default;
};
// rmap_walk + page_vma_mapped_walk: every PTE that maps `target` (the folio's pfn, or for a
// dpas device-private folio its offset with PvmwFlags::kDevicePrivate). For tests and for
// callers that only need to look (folio_referenced-like).
std::vector<RmapMapping> folio_find_mappings(Kernel& k, page::Folio folio,
                                             arch::PfnOrOffset target, PvmwFlags flags)
    EXCLUDES(k.anon_vma_lock());

}  // namespace dpmm::mm
