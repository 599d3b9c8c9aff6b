// hmm_range_fault (mm/hmm.c): read a process's page tables for a device, faulting in what the
// device asked for, and answer one hmm_pfns word per page (hmm_pfn.h).
//
// Request per page: req = (hmm_pfns[i] & pfn_flags_mask) | default_flags.
//   no REQ_FAULT                       never fault; report what is there
//   REQ_FAULT, answer not VALID        read fault (handle_mm_fault, FAULT_FLAG_REMOTE)
//   REQ_FAULT|REQ_WRITE, no WRITE      write fault (EPERM when the VMA has no VM_WRITE)
// When neither default_flags nor pfn_flags_mask holds REQ_FAULT (snapshot mode) no page is
// ever faulted and no request word is read.
//
// Answers (kernel-baseline §6; the sticky DMA_MAPPED/P2PDMA/P2PDMA_BUS bits of each request word
// are kept in its answer):
//   address in no VMA                          ERROR (EFAULT if a fault is requested)
//   VMA with VM_IO|VM_PFNMAP or without VM_READ ERROR for the whole VMA (EFAULT if any page of
//                                              it requests a fault)
//   pte_none / no page table / uffd-wp marker  0 (or fault)
//   present PTE                                pfn | VALID | WRITE-if-writable (PROT_NONE
//                                              entries answer 0 and fault when requested);
//                                              the zero page is reported with its pfn,
//                                              read-only
//   device-private entry of dev_private_owner  VALID | WRITE-if-writable entry | its PFN
//                                              (legacy) or offset | DEVICE_PRIVATE (dpas);
//                                              never faulted, even for REQ_WRITE on a read-only
//                                              entry (the owner check comes first)
//   other non-present entries, no fault req.   0
//   ... fault requested: swap, foreign device-private (-> its driver's migrate_to_ram),
//       device-exclusive (-> restored)         fault, then walk again
//   ... migration entry                        wait for the migration, then walk again
//   ... anything else (hwpoison, markers)      EFAULT
// After a fault the walk restarts at the faulted address; answers below it stay, words at and
// above it still hold requests (the kernel's hmm_vma_walk.last).
//
// PMD leaves (system THP) are answered by hmm_vma_handle_pmd (order 9), device-private PMDs
// (device THP) by hmm_vma_handle_absent_pmd: the caller's own with order 9, another owner's
// faulted back on request (docs/hmm.md); PMD migration entries (a THP under migration) read
// as 0, or are waited for and walked again when a fault is requested.
#pragma once

#include <cstdint>
#include <span>

#include "base/result.h"
#include "base/types.h"
#include "hmm/hmm_pfn.h"
#include "hmm/mmu_interval_notifier.h"
#include "mm/mm.h"

namespace dpmm::hmm {

// struct hmm_range.
struct HmmRange {
  // The subscription whose sequence guards this reading; may be null (no retry check, for
  // callers that hold mmap_lock across their use of the answers).
  MmuIntervalNotifier* notifier = nullptr;
  uint64_t notifier_seq = 0;  // from notifier->read_begin()
  VirtAddr start;             // page-aligned
  VirtAddr end;               // page-aligned, exclusive
  // (end - start) >> PAGE_SHIFT words: requests in, answers out.
  std::span<uint64_t> hmm_pfns;
  uint64_t default_flags = 0;
  uint64_t pfn_flags_mask = 0;
  // Device-private pages whose pgmap owner is this are reported, never faulted.
  const void* dev_private_owner = nullptr;
};

// hmm_range_fault. REQUIRES: mmap_lock held (read or write) for the whole call; never dropped.
// The words follow the numbering of mm's kernel (hmm_pfn_format(kernel numbering)).
//   EINVAL  start/end unaligned, end <= start (walk_page_range), hmm_pfns too short, or a
//           notifier of another mm
//   EBUSY   the notifier's sequence moved (an invalidation ran): read_begin again and retry
//   EPERM   a write fault was requested in a VMA without VM_WRITE
//   EFAULT  a requested fault is impossible: no VMA, an unsupported VMA, a special entry, or
//           the fault itself failed (SIGSEGV, SIGBUS, OOM)
Status hmm_range_fault(mm::Mm& mm, HmmRange& range) REQUIRES_SHARED(mm.mmap_lock());

// The answer format of `mm`'s kernel.
HmmPfnFormat hmm_pfn_format_of(const mm::Mm& mm);

}  // namespace dpmm::hmm
