// hmm_range_fault and its page-table walk (mm/hmm.c: hmm_vma_walk_test, hmm_vma_walk_hole,
// hmm_vma_walk_pmd, hmm_vma_handle_pte, hmm_vma_walk_hugetlb_entry, hmm_vma_fault, hmm_pte_need_fault,
// hmm_range_need_fault, hmm_pfns_fill; mm/pagewalk.c walk_page_range for the shape of the walk).
#include "hmm/hmm_range_fault.h"

#include <algorithm>
#include <cassert>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "base/trace.h"
#include "devmem/dev_pagemap.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/fault.h"
#include "mm/hugetlb.h"
#include "mm/page_table.h"

namespace dpmm::hmm {
namespace hmm_walk {

// (Outside the anonymous namespace: DPMM_FLAG_OPS defines operators this file does not all
// use.) HMM_NEED_FAULT / HMM_NEED_WRITE_FAULT.
enum class NeedFault : uint8_t {
  kNone = 0,
  kFault = 1 << 0,
  kWriteFault = 1 << 1,
  kAll = kFault | kWriteFault,
};
DPMM_FLAG_OPS(NeedFault)

}  // namespace hmm_walk

namespace {

using hmm_walk::NeedFault;

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Softleaf;

// What one step of the walk asks of hmm_range_fault's loop.
enum class WalkStep : uint8_t {
  kContinue,  // answers written; go on
  kRewalk,    // something was faulted or waited for: walk again from `last` (-EBUSY inside)
};

class HmmWalk {
 public:
  HmmWalk(mm::Mm& mm, HmmRange& range)
      : mm_(mm), range_(range), fmt_(hmm_pfn_format_of(mm)), last_(range.start) {}

  VirtAddr last() const { return last_; }
  // The walk runs under the caller's mmap_lock (hmm_range_fault's REQUIRES), which the
  // analysis knows as mm.mmap_lock() and not through this object's reference.
  void mmap_assert_locked() const ASSERT_SHARED_CAPABILITY(mm_.mmap_lock()) {}

  // walk_page_range(mm, last, end, &hmm_walk_ops): VMAs in order, the gaps between them as
  // holes without a VMA.
  Result<WalkStep> walk_page_range(VirtAddr start, VirtAddr end) REQUIRES_SHARED(mm_.mmap_lock()) {
    VirtAddr addr = start;
    while (addr < end) {
      const mm::Vma* vma = mm_.find_vma(addr);
      if (vma == nullptr || vma->start >= end) {
        TRY(walk_hole(addr, end, nullptr));
        break;
      }
      if (addr < vma->start) {
        TRY(walk_hole(addr, vma->start, nullptr));
        addr = vma->start;
        continue;
      }
      const VirtAddr next = std::min(end, vma->end);
      if (TRY(walk_test(*vma, addr, next))) {
        const WalkStep s = TRY(walk_vma(*vma, addr, next));
        if (s == WalkStep::kRewalk) return s;
      }
      addr = next;
    }
    return WalkStep::kContinue;
  }

 private:
  uint64_t index(VirtAddr a) const { return (a - range_.start) >> kPageShift; }
  std::span<uint64_t> words(VirtAddr addr, VirtAddr end) const {
    return range_.hmm_pfns.subspan(index(addr), (end - addr) >> kPageShift);
  }

  // hmm_pte_need_fault.
  NeedFault pte_need_fault(uint64_t pfn_req_flags, uint64_t cpu_flags) const {
    pfn_req_flags &= range_.pfn_flags_mask;
    pfn_req_flags |= range_.default_flags;
    if ((pfn_req_flags & kHmmPfnReqFault) == 0) return NeedFault::kNone;
    if ((pfn_req_flags & kHmmPfnReqWrite) != 0 && (cpu_flags & kHmmPfnWrite) == 0)
      return NeedFault::kAll;
    if ((cpu_flags & kHmmPfnValid) == 0) return NeedFault::kFault;
    return NeedFault::kNone;
  }

  // hmm_range_need_fault: the union over [addr, end); snapshot mode never looks at the words.
  NeedFault range_need_fault(VirtAddr addr, VirtAddr end, uint64_t cpu_flags) const {
    if (((range_.default_flags | range_.pfn_flags_mask) & kHmmPfnReqFault) == 0)
      return NeedFault::kNone;
    NeedFault required = NeedFault::kNone;
    for (uint64_t w : words(addr, end)) {
      required |= pte_need_fault(w, cpu_flags);
      if (required == NeedFault::kAll) break;
    }
    return required;
  }

  // hmm_pfns_fill: answers for [addr, end), keeping each word's sticky in/out bits.
  void pfns_fill(VirtAddr addr, VirtAddr end, uint64_t cpu_flags) {
    for (uint64_t& w : words(addr, end)) w = (w & kHmmPfnInoutFlags) | cpu_flags;
  }

  // hmm_vma_fault: fault every page of [addr, end) (the rest of this walk step, as the kernel
  // does), then ask for a rewalk from addr.
  Result<WalkStep> vma_fault(const mm::Vma& vma, VirtAddr addr, VirtAddr end,
                             NeedFault required) REQUIRES_SHARED(mm_.mmap_lock()) {
    assert(required != NeedFault::kNone && "hmm_vma_fault with nothing to fault");
    last_ = addr;
    mm::FaultFlags flags = mm::FaultFlags::kRemote;
    if (has(required, NeedFault::kWriteFault)) {
      if (!has(vma.flags, mm::VmFlags::kWrite)) {
        return make_error(Errno::kEPERM,
                          "hmm_range_fault: write fault requested at {:#x} in a VMA without "
                          "VM_WRITE",
                          addr.raw());
      }
      flags |= mm::FaultFlags::kWrite;
    }
    for (VirtAddr a = addr; a < end; a += kPageSize) {
      const mm::FaultResult r = mm::handle_mm_fault(mm_, a, flags);
      if (r.is_error()) {
        return make_error(Errno::kEFAULT, "hmm_range_fault: fault at {:#x} failed: {} ({})",
                          a.raw(), mm::fault_outcome_name(r.outcome), r.reason);
      }
    }
    return WalkStep::kRewalk;
  }

  // hmm_vma_walk_test: true to walk the VMA, false when it was answered ERROR and skipped.
  Result<bool> walk_test(const mm::Vma& vma, VirtAddr start, VirtAddr end) {
    if (!has_any(vma.flags, mm::VmFlags::kIo | mm::VmFlags::kPfnMap) &&
        has(vma.flags, mm::VmFlags::kRead))
      return true;
    // No struct pages behind it, I/O memory, or no read access (HMM assumes no write without
    // read): a requested fault there is a hard failure.
    if (range_need_fault(start, end, 0) != NeedFault::kNone) {
      return make_error(Errno::kEFAULT,
                        "hmm_range_fault: fault requested in [{:#x}, {:#x}), a VMA that is "
                        "VM_IO/VM_PFNMAP or not readable",
                        start.raw(), end.raw());
    }
    pfns_fill(start, end, kHmmPfnError);
    return false;
  }

  // hmm_vma_walk_hole: no page table (vma set) or no VMA at all (vma null).
  Result<WalkStep> walk_hole(VirtAddr addr, VirtAddr end, const mm::Vma* vma)
      REQUIRES_SHARED(mm_.mmap_lock()) {
    const NeedFault required = range_need_fault(addr, end, 0);
    if (vma == nullptr) {
      if (required != NeedFault::kNone) {
        return make_error(Errno::kEFAULT,
                          "hmm_range_fault: fault requested in [{:#x}, {:#x}), where no VMA is",
                          addr.raw(), end.raw());
      }
      pfns_fill(addr, end, kHmmPfnError);
      return WalkStep::kContinue;
    }
    if (required != NeedFault::kNone) return vma_fault(*vma, addr, end, required);
    pfns_fill(addr, end, 0);
    return WalkStep::kContinue;
  }

  // walk_pgd_range .. walk_pmd_range for one VMA: a missing upper table is one hole up to
  // that table's boundary, as the kernel's pte_hole calls at each depth.
  Result<WalkStep> walk_vma(const mm::Vma& vma, VirtAddr start, VirtAddr end)
      REQUIRES_SHARED(mm_.mmap_lock()) {
    const mm::PageTable& pt = mm_.page_table();
    VirtAddr addr = start;
    while (addr < end) {
      const mm::EntrySlot pgd = pt.pgd_offset(addr);
      const std::optional<mm::EntrySlot> pud = pt.pud_offset(pgd, addr);
      if (!pud) {
        const VirtAddr next = level_end(addr, end, mm::PtLevel::kPgd);
        if (TRY(walk_hole(addr, next, &vma)) == WalkStep::kRewalk) return WalkStep::kRewalk;
        addr = next;
        continue;
      }
      const std::optional<mm::EntrySlot> pmd = pt.pmd_offset(*pud, addr);
      if (!pmd) {
        const VirtAddr next = level_end(addr, end, mm::PtLevel::kPud);
        if (TRY(walk_hole(addr, next, &vma)) == WalkStep::kRewalk) return WalkStep::kRewalk;
        addr = next;
        continue;
      }
      const VirtAddr next = level_end(addr, end, mm::PtLevel::kPmd);
      // walk_hugetlb_range: a hugetlb VMA's huge pages go to the hugetlb_entry callback
      // whenever huge_pte_offset finds their PMD slot (a PMD table exists), else pte_hole.
      if (mm::is_vm_hugetlb_page(vma)) {
        if (TRY(walk_hugetlb_entry(vma, *pmd, addr, next)) == WalkStep::kRewalk)
          return WalkStep::kRewalk;
        addr = next;
        continue;
      }
      if (TRY(walk_pmd(vma, *pmd, addr, next)) == WalkStep::kRewalk) return WalkStep::kRewalk;
      addr = next;
    }
    return WalkStep::kContinue;
  }

  static VirtAddr level_end(VirtAddr addr, VirtAddr end, mm::PtLevel level) {
    const uint64_t span = mm::pt_entry_span(level);
    const uint64_t boundary = (addr.raw() & ~(span - 1)) + span;
    return boundary - 1 < end.raw() - 1 ? VirtAddr(boundary) : end;
  }

  // hmm_vma_walk_hugetlb_entry for the huge page whose PMD-level entry is `pmd`, over [start,
  // end) inside it. cpu_flags are pte_to_hmm_pfn_flags of the entry plus the order of
  // huge_page_order (9), even for a none entry; the first page's request decides the fault
  // (hmm_pte_need_fault), which covers [start, end). Without a fault every page answers
  // pte_pfn(entry) plus its offset in the huge page: for a none entry that is the bare offset
  // with the order bits and no VALID, as the kernel reports it.
  Result<WalkStep> walk_hugetlb_entry(const mm::Vma& vma, mm::EntrySlot pmd, VirtAddr start,
                                      VirtAddr end) REQUIRES_SHARED(mm_.mmap_lock()) {
    const DecodedEntry d = mm_.kernel().codec().decode(EntryLevel::kPmd, pmd.load());
    uint64_t cpu_flags = fmt_.order_bits(mm::kHpagePmdOrder);
    uint64_t pfn = 0;
    if (d.kind == DecodedEntry::Kind::kPresent) {
      cpu_flags |= kHmmPfnValid | (arch::has(d.prot, arch::Prot::kWrite) ? kHmmPfnWrite : 0);
      pfn = d.pfn.raw();
    }
    const NeedFault required = pte_need_fault(range_.hmm_pfns[index(start)], cpu_flags);
    if (required != NeedFault::kNone) return vma_fault(vma, start, end, required);
    pfn += mm::pt_index(mm::PtLevel::kPte, start);
    for (VirtAddr addr = start; addr < end; addr += kPageSize, ++pfn) {
      uint64_t& word = range_.hmm_pfns[index(addr)];
      word = (word & kHmmPfnInoutFlags) | pfn | cpu_flags;
    }
    return WalkStep::kContinue;
  }

  // hmm_vma_walk_pmd.
  Result<WalkStep> walk_pmd(const mm::Vma& vma, mm::EntrySlot pmd, VirtAddr start,
                            VirtAddr end) REQUIRES_SHARED(mm_.mmap_lock()) {
    const uint64_t word = pmd.load();  // pmdp_get_lockless
    if (word == 0) return walk_hole(start, end, &vma);
    const DecodedEntry d = mm_.kernel().codec().decode(EntryLevel::kPmd, word);
    switch (d.kind) {
      case DecodedEntry::Kind::kNone:
        return walk_hole(start, end, &vma);
      case DecodedEntry::Kind::kTable:
        break;
      case DecodedEntry::Kind::kPresent:
        return handle_pmd(vma, start, end, d);
      case DecodedEntry::Kind::kSwap:
        // hmm_vma_handle_absent_pmd: a device-private THP.
        if (arch::softleaf_is_device_private(d.leaf)) return handle_absent_pmd(vma, start, end, d);
        if (arch::softleaf_is_migration(d.leaf)) {
          // A THP under migration: a fault waits for it to end (pmd_migration_entry_wait),
          // then the walk starts again here; otherwise the range reads as not present.
          if (range_need_fault(start, end, 0) != NeedFault::kNone) {
            last_ = start;
            (void)mm::handle_mm_fault(mm_, start, mm::FaultFlags::kRemote);
            return WalkStep::kRewalk;
          }
          pfns_fill(start, end, 0);
          return WalkStep::kContinue;
        }
        // Any other PMD swap entry: the kernel's pmd_bad.
        if (range_need_fault(start, end, 0) != NeedFault::kNone) {
          return make_error(Errno::kEFAULT, "hmm_range_fault: bad PMD swap entry at {:#x}",
                            start.raw());
        }
        pfns_fill(start, end, kHmmPfnError);
        return WalkStep::kContinue;
    }
    const mm::PageTable& pt = mm_.page_table();
    for (VirtAddr addr = start; addr < end; addr += kPageSize) {
      const std::optional<mm::EntrySlot> pte = pt.pte_offset(pmd, addr);
      if (!pte) {
        // The table went away under us: classify this address again.
        last_ = addr;
        return WalkStep::kRewalk;
      }
      if (TRY(handle_pte(vma, addr, end, *pte)) == WalkStep::kRewalk) return WalkStep::kRewalk;
    }
    return WalkStep::kContinue;
  }

  // hmm_vma_handle_pmd: a PMD leaf (an anon THP or the huge zero folio) answers every page
  // of [start, end) with consecutive pfns and the order of the mapping.
  Result<WalkStep> handle_pmd(const mm::Vma& vma, VirtAddr start, VirtAddr end,
                              const DecodedEntry& d) REQUIRES_SHARED(mm_.mmap_lock()) {
    // pmd_to_hmm_pfn_flags: a PROT_NONE leaf is not VALID.
    const uint64_t cpu_flags =
        arch::has(d.prot, arch::Prot::kProtNone)
            ? 0
            : kHmmPfnValid | (arch::has(d.prot, arch::Prot::kWrite) ? kHmmPfnWrite : 0) |
                  fmt_.order_bits(mm::kHpagePmdOrder);
    const NeedFault required = range_need_fault(start, end, cpu_flags);
    if (required != NeedFault::kNone) return vma_fault(vma, start, end, required);
    uint64_t pfn = d.pfn.raw() + mm::pt_index(mm::PtLevel::kPte, start);
    for (VirtAddr addr = start; addr < end; addr += kPageSize, ++pfn) {
      uint64_t& word = range_.hmm_pfns[index(addr)];
      word = (word & kHmmPfnInoutFlags) | pfn | cpu_flags;
    }
    return WalkStep::kContinue;
  }

  // hmm_vma_handle_absent_pmd for a device-private PMD: the caller's own THP answers every
  // page of [start, end) with consecutive indices (PFNs, or dpas offsets), VALID, WRITE when
  // the entry is writable, and the order of the PMD; another owner's faults the range back
  // when asked to (do_huge_pmd_device_private), else reports HMM_PFN_ERROR.
  Result<WalkStep> handle_absent_pmd(const mm::Vma& vma, VirtAddr start, VirtAddr end,
                                     const DecodedEntry& d) REQUIRES_SHARED(mm_.mmap_lock()) {
    if (owned_device_private(d.leaf)) {
      uint64_t cpu_flags = kHmmPfnValid | fmt_.order_bits(mm::kHpagePmdOrder);
      if (arch::softleaf_is_device_private_write(d.leaf)) cpu_flags |= kHmmPfnWrite;
      const arch::PfnOrOffset head =
          MUST(arch::softleaf_to_pfn_or_offset(d.leaf), "device-private entries hold an index");
      uint64_t i = mm::pt_index(mm::PtLevel::kPte, start);
      for (VirtAddr addr = start; addr < end; addr += kPageSize, ++i) {
        const arch::PfnOrOffset at =
            head.is_pfn() ? arch::PfnOrOffset::of_pfn(Pfn(head.raw_index() + i))
                          : arch::PfnOrOffset::of_offset(DevPrivOffset(head.raw_index() + i));
        uint64_t& word = range_.hmm_pfns[index(addr)];
        word = (word & kHmmPfnInoutFlags) |
               MUST(fmt_.make_index(at), "the entry's numbering is the answer's") | cpu_flags;
      }
      return WalkStep::kContinue;
    }
    const NeedFault required = range_need_fault(start, end, 0);
    if (required != NeedFault::kNone) return vma_fault(vma, start, end, required);
    pfns_fill(start, end, kHmmPfnError);
    return WalkStep::kContinue;
  }

  // The device-private page behind `leaf` when its pagemap belongs to dev_private_owner.
  bool owned_device_private(Softleaf leaf) const {
    if (!arch::softleaf_is_device_private(leaf)) return false;
    mm::DevicePrivateFaultHandler* h = mm_.kernel().device_private_handler();
    if (h == nullptr) return false;
    page::Page* page = h->softleaf_to_page(leaf);
    if (page == nullptr) return false;
    return devmem::page_pgmap(page)->owner() == range_.dev_private_owner;
  }

  // hmm_vma_handle_pte. `end` bounds the fault of the rest of this PMD step.
  Result<WalkStep> handle_pte(const mm::Vma& vma, VirtAddr addr, VirtAddr end,
                              mm::EntrySlot pte) REQUIRES_SHARED(mm_.mmap_lock()) {
    uint64_t& word = range_.hmm_pfns[index(addr)];
    const uint64_t pfn_req_flags = word;
    const mm::Kernel& k = mm_.kernel();
    const DecodedEntry d = k.codec().decode(EntryLevel::kPte, pte.load());  // ptep_get
    uint64_t new_pfn_flags = 0;
    NeedFault required = NeedFault::kNone;

    const bool uffd_wp_marker =
        d.kind == DecodedEntry::Kind::kSwap && arch::softleaf_is_marker(d.leaf) &&
        has(arch::softleaf_to_marker(d.leaf), arch::PteMarker::kUffdWp);
    if (d.kind == DecodedEntry::Kind::kNone || uffd_wp_marker) {
      required = pte_need_fault(pfn_req_flags, 0);
      if (required != NeedFault::kNone) return vma_fault(vma, addr, end, required);
    } else if (d.kind == DecodedEntry::Kind::kSwap) {
      const Softleaf leaf = d.leaf;
      // The caller's own device-private pages are reported, never faulted.
      if (owned_device_private(leaf)) {
        uint64_t cpu_flags = kHmmPfnValid;
        if (arch::softleaf_is_device_private_write(leaf)) cpu_flags |= kHmmPfnWrite;
        const arch::PfnOrOffset where =
            MUST(arch::softleaf_to_pfn_or_offset(leaf), "device-private entries hold an index");
        new_pfn_flags = MUST(fmt_.make_index(where), "the entry's numbering is the answer's") |
                        cpu_flags;
      } else {
        required = pte_need_fault(pfn_req_flags, 0);
        if (required != NeedFault::kNone) {
          if (arch::softleaf_is_swap(leaf) || arch::softleaf_is_device_private(leaf) ||
              arch::softleaf_is_device_exclusive(leaf))
            return vma_fault(vma, addr, end, required);
          if (arch::softleaf_is_migration(leaf)) {
            // migration_entry_wait: the read fault of this entry sleeps until the migration
            // unlocks the folio; the answer comes from the rewalk.
            last_ = addr;
            (void)mm::handle_mm_fault(mm_, addr, mm::FaultFlags::kRemote);
            return WalkStep::kRewalk;
          }
          return make_error(Errno::kEFAULT,
                            "hmm_range_fault: fault requested at {:#x} on a {} entry",
                            addr.raw(), arch::softleaf_type_name(arch::softleaf_type(leaf)));
        }
      }
    } else if (d.kind == DecodedEntry::Kind::kPresent) {
      // pte_to_hmm_pfn_flags: PROT_NONE entries are not VALID.
      const uint64_t cpu_flags =
          arch::has(d.prot, arch::Prot::kProtNone)
              ? 0
              : kHmmPfnValid | (arch::has(d.prot, arch::Prot::kWrite) ? kHmmPfnWrite : 0);
      required = pte_need_fault(pfn_req_flags, cpu_flags);
      if (required != NeedFault::kNone) return vma_fault(vma, addr, end, required);
      // A special entry other than the zero page has no page a device could use.
      if (mm::vm_normal_page(k, d) == nullptr && !k.is_zero_pfn(d.pfn)) {
        if (pte_need_fault(pfn_req_flags, 0) != NeedFault::kNone) {
          return make_error(Errno::kEFAULT,
                            "hmm_range_fault: fault requested at {:#x} on a special PTE",
                            addr.raw());
        }
        new_pfn_flags = kHmmPfnError;
      } else {
        new_pfn_flags = d.pfn.raw() | cpu_flags;
      }
    } else {
      // A PTE that decodes as a table pointer: nothing the kernel could have built.
      if (pte_need_fault(pfn_req_flags, 0) != NeedFault::kNone)
        return make_error(Errno::kEFAULT, "hmm_range_fault: bad PTE at {:#x}", addr.raw());
      new_pfn_flags = kHmmPfnError;
    }
    word = (word & kHmmPfnInoutFlags) | new_pfn_flags;
    return WalkStep::kContinue;
  }

  mm::Mm& mm_;
  HmmRange& range_;
  const HmmPfnFormat fmt_;
  VirtAddr last_;
};

}  // namespace

HmmPfnFormat hmm_pfn_format_of(const mm::Mm& mm) {
  return hmm_pfn_format(mm.kernel().softleaf_format().numbering);
}

Status hmm_range_fault(mm::Mm& mm, HmmRange& range) {
  mm.mmap_assert_locked();
  if (!range.start.is_page_aligned() || !range.end.is_page_aligned() || range.end <= range.start) {
    return make_error(Errno::kEINVAL, "hmm_range_fault: bad range [{:#x}, {:#x})",
                      range.start.raw(), range.end.raw());
  }
  const uint64_t npages = (range.end - range.start) >> kPageShift;
  TraceScope trace("hmm_range_fault", TraceCategory::kHmm, npages);
  if (range.hmm_pfns.size() < npages) {
    return make_error(Errno::kEINVAL, "hmm_range_fault: {} hmm_pfns for {} pages",
                      range.hmm_pfns.size(), npages);
  }
  if (range.notifier != nullptr && range.notifier->mm() != &mm)
    return make_error(Errno::kEINVAL, "hmm_range_fault: the notifier belongs to another mm");

  HmmWalk walk(mm, range);
  walk.mmap_assert_locked();
  for (;;) {
    // The range was invalidated since read_begin: the caller must start over.
    if (range.notifier != nullptr && range.notifier->check_retry(range.notifier_seq)) {
      trace_instant("hmm_range_fault_ebusy", TraceCategory::kHmm, npages);
      return make_error(Errno::kEBUSY,
                        "hmm_range_fault: [{:#x}, {:#x}) was invalidated (seq {:#x})",
                        range.start.raw(), range.end.raw(), range.notifier_seq);
    }
    // Words below last hold answers, words from last on still hold requests.
    const WalkStep s = TRY(walk.walk_page_range(walk.last(), range.end));
    if (s == WalkStep::kContinue) return ok();
  }
}

}  // namespace dpmm::hmm
