// madvise (mm/madvise.c do_madvise, madvise_walk_vmas, madvise_vma_behavior,
// madvise_dontneed_free, madvise_free_pte_range, madvise_update_vma; mm/khugepaged.c
// hugepage_madvise, madvise_collapse, hpage_collapse_scan_pmd, madvise_collapse_errno;
// mm/huge_memory.c __thp_vma_allowable_orders, include/linux/huge_mm.h
// thp_vma_suitable_order).
//
// Advice:
//   NORMAL / RANDOM / SEQUENTIAL  VM_RAND_READ / VM_SEQ_READ set or cleared (VMA split/merge)
//   WILLNEED                      nothing to read ahead (no swap, page cache in memory)
//   DONTNEED                      zap_page_range_single (MMU_NOTIFY_CLEAR): anon pages go,
//                                 file pages are unmapped and refault from the page cache;
//                                 on hugetlb, whole huge pages from an aligned start (the
//                                 end rounds down), their reservations restored (hugetlb.h)
//   FREE                          lazyfree on anonymous private VMAs (see madvise_free_locked)
//   HUGEPAGE / NOHUGEPAGE         hugepage_madvise: VM_HUGEPAGE / VM_NOHUGEPAGE
//   COLLAPSE                      madvise_collapse: anonymous ranges collapse into PMD-mapped
//                                 THPs (collapse_huge_page); shmem collapse is not modelled
//                                 (its allocation fails: ENOMEM)
#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/fault.h"
#include "mm/huge_memory.h"
#include "mm/hugetlb.h"
#include "mm/mm.h"
#include "mm/shmem.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

constexpr uint64_t kPmdSize = uint64_t{1} << kPmdShift;
constexpr uint64_t kPmdNr = kPmdSize >> kPageShift;  // HPAGE_PMD_NR

// madvise_behavior_valid for the advice dpmm models.
bool madvise_behavior_valid(Madvise advice) {
  switch (advice) {
    case Madvise::kNormal:
    case Madvise::kRandom:
    case Madvise::kSequential:
    case Madvise::kWillNeed:
    case Madvise::kDontNeed:
    case Madvise::kFree:
    case Madvise::kHugePage:
    case Madvise::kNoHugePage:
    case Madvise::kCollapse:
      return true;
  }
  return false;
}

// can_madv_lru_vma.
bool can_madv_lru_vma(const Vma& vma) {
  return !has_any(vma.flags, VmFlags::kLocked | VmFlags::kPfnMap | VmFlags::kHugetlb);
}

// VM_SPECIAL | VM_HUGETLB (VM_NO_KHUGEPAGED).
constexpr VmFlags kVmNoKhugepaged = VmFlags::kIo | VmFlags::kDontExpand | VmFlags::kPfnMap |
                                    VmFlags::kMixedMap | VmFlags::kHugetlb;

// enum scan_result values madvise_collapse can meet here.
enum class Scan : uint8_t {
  kFail,
  kSucceed,
  kPmdNull,
  kPmdNone,
  kPmdMapped,
  kPteUffdWp,
  kPageRo,
  kPageNull,
  kPageAnon,
  kPageLock,
  kPageCount,
  kAllocHugePageFail,
};

// madvise_collapse_errno.
Errno madvise_collapse_errno(Scan r) {
  switch (r) {
    case Scan::kAllocHugePageFail:
      return Errno::kENOMEM;
    case Scan::kPageCount:
    case Scan::kPageLock:
      return Errno::kEAGAIN;
    case Scan::kFail:
    case Scan::kSucceed:
    case Scan::kPmdMapped:
    case Scan::kPmdNull:
    case Scan::kPmdNone:
    case Scan::kPteUffdWp:
    case Scan::kPageRo:
    case Scan::kPageNull:
    case Scan::kPageAnon:
      return Errno::kEINVAL;
  }
  return Errno::kEINVAL;
}

// thp_vma_allowable_order(vma, vm_flags, forced collapse, PMD_ORDER), shmem included (its
// collapse is not modelled: the allocation fails, see madvise_collapse_locked).
bool collapse_allowable_pmd(const Vma& vma) {
  if (has_any(vma.flags, VmFlags::kNoHugePage | kVmNoKhugepaged)) return false;
  // Only anonymous memory and shmem may hold PMD-sized folios (no read-only file THP).
  if (!vma.is_anonymous() && dynamic_cast<ShmemFile*>(vma.file.get()) == nullptr) return false;
  // thp_vma_suitable_order at the VMA's last PMD: a file VMA's offset must be PMD-aligned
  // with its address too.
  if (!vma.is_anonymous() && (((vma.start.raw() >> kPageShift) - vma.pgoff) & (kPmdNr - 1)) != 0)
    return false;
  if (vma.size() < kPmdSize) return false;
  const uint64_t haddr = (vma.end.raw() - kPmdSize) & ~(kPmdSize - 1);
  return haddr >= vma.start.raw() && haddr + kPmdSize <= vma.end.raw();
}

// collapse_huge_page (mm/khugepaged.c) for one 2 MiB range of an anonymous VMA whose scan
// passed: swap in what is not present, allocate the THP, take the PTE table out under the
// anon_vma lock and the notifier, recheck every entry (__collapse_huge_page_isolate), copy
// the pages (zeroes for none and zero-page entries), map the THP by a PMD with the old table
// deposited, and release the old pages after the flush. REQUIRES: mmap_lock held for write.
Scan collapse_huge_page(Mm& mm, const Vma& vma, VirtAddr haddr) REQUIRES(mm.mmap_lock()) {
  Kernel& k = mm.kernel();
  PageTable& pt = mm.page_table();
  // __collapse_huge_page_swapin: non-present entries are faulted in (device-private pages
  // migrate back to RAM).
  for (uint64_t i = 0; i < kPmdNr; ++i) {
    const VirtAddr a = haddr + i * kPageSize;
    const std::optional<EntrySlot> slot = pt.walk_pte(a);
    if (!slot) return Scan::kPmdNull;
    const uint64_t word = slot->load();
    if (word == 0) continue;
    if (k.codec().decode(arch::EntryLevel::kPte, word).kind != arch::DecodedEntry::Kind::kSwap)
      continue;
    if (handle_mm_fault(mm, a, FaultFlags::kNone).is_error()) return Scan::kFail;
  }
  Result<page::Folio> fresh = k.alloc_folio(Order(kHpagePmdOrder));
  if (fresh.is_error()) return Scan::kAllocHugePageFail;
  page::Folio thp = *fresh;
  thp.set_flag(page::PageFlag::kUptodate);
  mm.anon_vma_prepare(vma);

  WriteLocker rmap(k.anon_vma_lock());  // anon_vma_lock_write: no rmap walk meanwhile
  const MmuNotifierRange range = mm.notifier_range(MmuNotifyEvent::kClear, haddr, haddr + kPmdSize);
  mm.invalidate_range_start(range);
  const EntrySlot pmd = *pt.walk_pmd(haddr);
  std::vector<uint64_t> words(kPmdNr);
  std::optional<page::Folio> table;
  Scan result = Scan::kSucceed;
  {
    SpinLocker guard(pt.lock());
    // __collapse_huge_page_isolate: every entry still none, the zero page, or an anon page
    // nobody else holds a reference to.
    for (uint64_t i = 0; i < kPmdNr && result == Scan::kSucceed; ++i) {
      const std::optional<EntrySlot> slot = pt.pte_offset(pmd, haddr + i * kPageSize);
      if (!slot) {
        result = Scan::kPmdNull;
        break;
      }
      words[i] = slot->load();
      if (words[i] == 0) continue;
      const arch::DecodedEntry d = k.codec().decode(arch::EntryLevel::kPte, words[i]);
      if (d.kind != arch::DecodedEntry::Kind::kPresent) {
        result = Scan::kFail;  // SCAN_EXCEED_SWAP_PTE: a swap-in raced
        break;
      }
      if (k.is_zero_pfn(d.pfn)) continue;
      page::Page* page = vm_normal_page(k, d);
      if (page == nullptr || page->is_zone_device()) {
        result = Scan::kPageNull;
        break;
      }
      page::Folio folio = page::page_folio(page);
      if (!folio.is_anon()) {
        result = Scan::kPageAnon;
        break;
      }
      if (page::folio_test_locked(folio)) {
        result = Scan::kPageLock;
        break;
      }
      if (folio.ref_count() != folio.mapcount()) {
        result = Scan::kPageCount;
        break;
      }
    }
    // pmdp_collapse_flush: the table leaves the PMD; no walk can reach the old pages.
    if (result == Scan::kSucceed) table = pt.unhook_table_locked(pmd);
  }
  if (result != Scan::kSucceed) {
    mm.invalidate_range_end(range);
    page::folio_put(thp);
    return result;
  }
  mm.flush_tlb_range(haddr, haddr + kPmdSize);
  // __collapse_huge_page_copy: the THP came zeroed, so none and zero-page entries need
  // nothing; present pages are copied.
  const Pfn thp_pfn = k.page_to_pfn(thp.head());
  std::vector<page::Folio> release;
  int64_t filled = 0;
  uint64_t* entries = reinterpret_cast<uint64_t*>(k.page_bytes(k.page_to_pfn(table->head())).data());
  for (uint64_t i = 0; i < kPmdNr; ++i) {
    EntrySlot(entries + i).store(0);  // the deposited table starts empty
    const arch::DecodedEntry d = k.codec().decode(arch::EntryLevel::kPte, words[i]);
    if (words[i] == 0 || d.kind != arch::DecodedEntry::Kind::kPresent || k.is_zero_pfn(d.pfn)) {
      ++filled;
      continue;
    }
    std::memcpy(k.page_bytes(thp_pfn + PageCount(i)).data(), k.page_bytes(d.pfn).data(),
                kPageSize);
    page::Page* page = vm_normal_page(k, d);
    page::Folio folio = page::page_folio(page);
    folio_remove_rmap_pte(folio, page);
    release.push_back(folio);
  }
  {
    SpinLocker guard(pt.lock());
    folio_add_new_anon_rmap(thp, vma, haddr, RmapExclusive::kYes, RmapLevel::kPmd);
    pt.deposit_table(haddr, *table);
    arch::Prot p = vma.page_prot | arch::Prot::kDirty | arch::Prot::kAccessed;
    if (has(vma.flags, VmFlags::kWrite)) p = p | arch::Prot::kWrite;
    pmd.store(MUST(k.codec().make_present(arch::EntryLevel::kPmd, thp_pfn, p),
                   "a 2 MiB-aligned RAM pfn encodes as a PMD leaf"));
    mm.add_rss(RssMember::kAnonPages, filled);
  }
  mm.invalidate_range_end(range);
  for (page::Folio f : release) page::folio_put(f);  // the old PTEs' references
  return Scan::kSucceed;
}

}  // namespace

Status Mm::madvise(VirtAddr start, uint64_t len_in, Madvise advice) {
  if (!madvise_behavior_valid(advice))
    return make_error(Errno::kEINVAL, "madvise with unknown advice {}", madvise_name(advice));
  if (!start.is_page_aligned())
    return make_error(Errno::kEINVAL, "madvise address {} is not page aligned", start);
  if (len_in > UINT64_MAX - (kPageSize - 1))
    return make_error(Errno::kEINVAL, "madvise length {:#x} overflows", len_in);
  const uint64_t len = (len_in + kPageSize - 1) & ~(kPageSize - 1);
  if (start.raw() + len < start.raw())
    return make_error(Errno::kEINVAL, "madvise range {}+{:#x} wraps", start, len);
  if (len == 0) return ok();
  const VirtAddr end = start + len;

  WriteLocker guard(mmap_lock_);
  // madvise_walk_vmas: the mapped parts are advised; a hole makes the result ENOMEM.
  bool unmapped = false;
  for (VirtAddr at = start; at < end;) {
    const Vma* vma = find_vma(at);
    if (vma == nullptr || vma->start >= end) {
      unmapped = true;
      break;
    }
    if (at < vma->start) {
      unmapped = true;
      at = vma->start;
    }
    const VirtAddr stop = std::min(end, vma->end);
    TRY(madvise_vma_locked(vmas_.find(vma->start.raw()), at, stop, advice));
    at = stop;
  }
  if (unmapped)
    return make_error(Errno::kENOMEM, "{} over [{}, {}): part of it is not mapped",
                      madvise_name(advice), start, end);
  return ok();
}

Status Mm::madvise_vma_locked(VmaMap::iterator it, VirtAddr start, VirtAddr end,
                              Madvise advice) {
  const Vma& vma = it->second;
  switch (advice) {
    case Madvise::kNormal:
      return madvise_update_flags_locked(
          it, start, end, vma.flags & ~(VmFlags::kRandRead | VmFlags::kSeqRead));
    case Madvise::kRandom:
      return madvise_update_flags_locked(
          it, start, end, (vma.flags & ~VmFlags::kSeqRead) | VmFlags::kRandRead);
    case Madvise::kSequential:
      return madvise_update_flags_locked(
          it, start, end, (vma.flags & ~VmFlags::kRandRead) | VmFlags::kSeqRead);
    case Madvise::kWillNeed:
      // madvise_willneed: swap-in readahead (no swap) or page-cache readahead (the cache is
      // memory): nothing to do.
      return ok();
    case Madvise::kDontNeed:
      if (is_vm_hugetlb_page(vma)) {
        // madvise_dontneed_free_valid_vma (kernel >= 6.3): the part of the range in this VMA
        // must start on a huge page, and its end rounds down to one so that no byte past
        // the caller's length is lost; whole huge pages are zapped (locked VMAs too).
        if (!start.is_aligned(kHpagePmdSize))
          return make_error(Errno::kEINVAL, "MADV_DONTNEED of hugetlb at {}: not huge-page aligned",
                            start);
        const VirtAddr hend = end.align_down(kHpagePmdSize);
        if (hend > start) zap_vma_range_rmap_locked(vma, start, hend);
        return ok();
      }
      if (!can_madv_lru_vma(vma))
        return make_error(Errno::kEINVAL, "MADV_DONTNEED of a locked or PFN-mapped VMA");
      zap_vma_range_rmap_locked(vma, start, end);
      return ok();
    case Madvise::kFree:
      if (!can_madv_lru_vma(vma))
        return make_error(Errno::kEINVAL, "MADV_FREE of a locked, PFN-mapped or hugetlb VMA");
      if (!vma.is_anonymous())
        return make_error(Errno::kEINVAL, "MADV_FREE of a file or shmem VMA at {}", vma.start);
      madvise_free_locked(vma, start, end);
      return ok();
    case Madvise::kHugePage:
      // hugepage_madvise: the flags; later faults may map THPs (huge_memory.h).
      return madvise_update_flags_locked(
          it, start, end, (vma.flags & ~VmFlags::kNoHugePage) | VmFlags::kHugePage);
    case Madvise::kNoHugePage:
      return madvise_update_flags_locked(
          it, start, end, (vma.flags & ~VmFlags::kHugePage) | VmFlags::kNoHugePage);
    case Madvise::kCollapse:
      return madvise_collapse_locked(vma, start, end);
  }
  return make_error(Errno::kEINVAL, "madvise with unknown advice");
}

Status Mm::madvise_update_flags_locked(VmaMap::iterator it, VirtAddr start, VirtAddr end,
                                       VmFlags newflags) {
  // madvise_update_vma: split to the range, set the flags, merge back where possible.
  if (it->second.flags == newflags) return ok();
  if (it->second.start < start) it = TRY(split_vma_locked(it, start));
  if (it->second.end > end) TRY(split_vma_locked(it, end));
  {
    WriteLocker rmap(kernel_.anon_vma_lock());  // rmap walks read VMAs (rmap.h)
    it->second.flags = newflags;
    it->second.page_prot = vm_get_page_prot(newflags);
  }
  merge_around_locked(it);
  return ok();
}

void Mm::madvise_free_locked(const Vma& vma, VirtAddr start, VirtAddr end) {
  assert(vma.is_anonymous() && start >= vma.start && end <= vma.end && "MADV_FREE range");
  (void)vma;
  const arch::EntryCodec& codec = kernel_.codec();
  const MmuNotifierRange range = notifier_range(MmuNotifyEvent::kClear, start, end);
  invalidate_range_start(range);
  // madvise_free_huge_pmd: a whole THP mapped only here becomes clean and lazyfree at the PMD;
  // a THP the range covers in part is split to PTEs (the kernel splits the folio too and
  // frees its pages lazily one by one; dpmm leaves a PTE-mapped THP's pages as they are,
  // docs/mm.md).
  for (VirtAddr a = start; a < end;) {
    const VirtAddr haddr = a.align_down(kPmdSize);
    const VirtAddr next(std::min(haddr.raw() + kPmdSize, end.raw()));
    const std::optional<EntrySlot> pmd = page_table_->walk_pmd(a);
    if (pmd && pmd_is_huge(kernel_, pmd->load())) {
      if (a != haddr || next != haddr + kPmdSize) {
        split_huge_pmd(*this, vma, *pmd, a);
      } else {
        SpinLocker guard(page_table_->lock());
        uint64_t old = pmd->load();
        while (const std::optional<arch::DecodedEntry> d = pmd_trans_huge(kernel_, old)) {
          page::Page* head = vm_normal_page_pmd(kernel_, *d);
          if (head == nullptr) break;  // the huge zero folio
          page::Folio folio = page::page_folio(head);
          if (folio.mapcount() != 1) break;
          folio.clear_flag(page::PageFlag::kDirty);
          folio.clear_flag(page::PageFlag::kActive);
          if (!folio.test_flag(page::PageFlag::kSwapCache))
            folio.clear_flag(page::PageFlag::kSwapBacked);
          const uint64_t updated =
              MUST(codec.make_present(arch::EntryLevel::kPmd, d->pfn,
                                      d->prot & ~(arch::Prot::kAccessed | arch::Prot::kDirty)),
                   "clearing accessed/dirty of a valid PMD leaf encodes");
          if (updated == old || pmd->compare_exchange(old, updated)) break;
        }
      }
    }
    a = next;
  }
  for (VirtAddr a = start; a < end; a += kPageSize) {
    const std::optional<EntrySlot> pte = page_table_->walk_pte(a);
    if (!pte) {
      a = VirtAddr(std::min(end.raw(), a.align_down(kPmdSize).raw() + kPmdSize) - kPageSize);
      continue;
    }
    SpinLocker guard(page_table_->lock());
    uint64_t old = pte->load();
    if (old == 0) continue;
    const arch::DecodedEntry d = codec.decode(arch::EntryLevel::kPte, old);
    if (d.kind == arch::DecodedEntry::Kind::kSwap) {
      // A real swap entry's slot is freed (free_swap_and_cache); device-private, migration
      // and other non-swap entries are left alone.
      if (arch::softleaf_type(d.leaf) == arch::SoftleafType::kSwap) {
        pte->store(0);
        add_rss(RssMember::kSwapEnts, -1);
      }
      continue;
    }
    if (d.kind != arch::DecodedEntry::Kind::kPresent) continue;
    page::Page* page = vm_normal_page(kernel_, d);
    if (page == nullptr) continue;  // the zero page
    page::Folio folio = page::page_folio(page);
    // Only folios this mapping alone maps may be freed lazily.
    if (!folio.is_anon() || folio.mapcount() != 1) continue;
    // madvise_free_pte_range: the folio is clean and not active, the PTE old and clean, so
    // reclaim may drop it; a later write dirties the PTE again and keeps the data.
    folio.clear_flag(page::PageFlag::kDirty);
    folio.clear_flag(page::PageFlag::kActive);
    while (true) {
      const arch::DecodedEntry cur = codec.decode(arch::EntryLevel::kPte, old);
      const arch::Prot want = cur.prot & ~(arch::Prot::kAccessed | arch::Prot::kDirty);
      if (want == cur.prot) break;
      const uint64_t updated = MUST(codec.make_present(arch::EntryLevel::kPte, cur.pfn, want),
                                    "clearing accessed/dirty of a valid entry encodes");
      if (pte->compare_exchange(old, updated)) break;
    }
    // folio_mark_lazyfree: an anon folio no longer needs swap space.
    if (folio.test_flag(page::PageFlag::kSwapBacked) && !folio.test_flag(page::PageFlag::kSwapCache))
      folio.clear_flag(page::PageFlag::kSwapBacked);
  }
  flush_tlb_range(start, end);
  invalidate_range_end(range);
}

Status Mm::madvise_collapse_locked(const Vma& vma, VirtAddr start, VirtAddr end) {
  if (!collapse_allowable_pmd(vma))
    return make_error(Errno::kEINVAL, "MADV_COLLAPSE: the VMA at {} may not hold a PMD-sized "
                      "page", vma.start);
  const uint64_t hstart = (start.raw() + kPmdSize - 1) & ~(kPmdSize - 1);
  const uint64_t hend = end.raw() & ~(kPmdSize - 1);
  const bool shmem = !vma.is_anonymous();
  uint64_t thps = 0;
  Scan last_fail = Scan::kFail;
  // Each PMD range is scanned (hpage_collapse_scan_pmd / _file); one that could collapse
  // needs a PMD-sized folio, whose allocation always fails here (docs/mm.md).
  for (uint64_t addr = hstart; addr < hend; addr += kPmdSize) {
    Scan result = Scan::kSucceed;
    if (!shmem) {
      const std::optional<EntrySlot> pud_ok = page_table_->walk_pmd(VirtAddr(addr));
      if (!pud_ok) {
        result = Scan::kPmdNull;  // mm_find_pmd: no PMD table
      } else if (pud_ok->load() == 0) {
        result = Scan::kPmdNone;
      } else if (pmd_trans_huge(kernel_, pud_ok->load())) {
        result = Scan::kPmdMapped;  // already a THP: counts as collapsed
      } else {
        bool writable = false;
        SpinLocker guard(page_table_->lock());
        for (uint64_t p = addr; p < addr + kPmdSize && result == Scan::kSucceed; p += kPageSize) {
          const std::optional<EntrySlot> slot = page_table_->walk_pte(VirtAddr(p));
          if (!slot) {
            result = Scan::kPmdNull;
            break;
          }
          const uint64_t word = slot->load();
          if (word == 0) continue;
          const arch::DecodedEntry d = kernel_.codec().decode(arch::EntryLevel::kPte, word);
          if (d.kind == arch::DecodedEntry::Kind::kSwap) {
            if (arch::has(d.swp_bits, arch::SwpBit::kUffdWp)) result = Scan::kPteUffdWp;
            continue;  // swap-like entries are swapped in by the collapse
          }
          if (d.kind != arch::DecodedEntry::Kind::kPresent) continue;
          if (kernel_.is_zero_pfn(d.pfn)) continue;
          if (arch::has(d.prot, arch::Prot::kUffdWp)) {
            result = Scan::kPteUffdWp;
            break;
          }
          if (arch::has(d.prot, arch::Prot::kWrite)) writable = true;
          page::Page* page = vm_normal_page(kernel_, d);
          if (page == nullptr || page->is_zone_device()) {
            result = Scan::kPageNull;
            break;
          }
          page::Folio folio = page::page_folio(page);
          if (!folio.is_anon()) {
            result = Scan::kPageAnon;
            break;
          }
          // folio_test_lru: dpmm keeps no LRU; every mapped anon folio counts as on it.
          if (page::folio_test_locked(folio)) {
            result = Scan::kPageLock;
            break;
          }
          // is_refcount_suitable: no reference beyond the mappings (and swap cache).
          const int expected = folio.mapcount() +
                               (folio.test_flag(page::PageFlag::kSwapCache) ? 1 : 0);
          if (folio.ref_count() != expected) {
            result = Scan::kPageCount;
            break;
          }
        }
        if (result == Scan::kSucceed && !writable) result = Scan::kPageRo;
      }
    }
    // collapse_huge_page (anon); collapse_file (shmem THPs are not modelled: its
    // alloc_charge_folio fails).
    if (result == Scan::kSucceed) {
      result = shmem ? Scan::kAllocHugePageFail : collapse_huge_page(*this, vma, VirtAddr(addr));
    }
    switch (result) {
      case Scan::kSucceed:
      case Scan::kPmdMapped:
        ++thps;
        continue;
      case Scan::kPmdNull:
      case Scan::kPteUffdWp:
      case Scan::kPageRo:
      case Scan::kPageNull:
      case Scan::kPageCount:
      case Scan::kPageLock:
        last_fail = result;  // the whitelisted results: go on with the next PMD
        continue;
      case Scan::kFail:
      case Scan::kPmdNone:
      case Scan::kPageAnon:
      case Scan::kAllocHugePageFail:
        last_fail = result;
        break;
    }
    break;
  }
  // The kernel compares with (hend - hstart) >> HPAGE_PMD_SHIFT in unsigned arithmetic: a
  // range inside one PMD (hstart > hend) wraps and fails with EINVAL; an empty aligned one
  // (hstart == hend) succeeds.
  if (thps == ((hend - hstart) >> kPmdShift)) return ok();
  const Errno e = madvise_collapse_errno(last_fail);
  return make_error(e, "MADV_COLLAPSE of [{}, {}): {}", start, end,
                    e == Errno::kENOMEM ? "no PMD-sized folio could be allocated"
                                        : "the range cannot be collapsed");
}

}  // namespace dpmm::mm
