// Unmapping pages (mm/memory.c unmap_page_range, zap_pmd_range, zap_pte_range,
// zap_present_ptes, zap_nonpresent_ptes).
#include <cassert>
#include <cstdio>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/file_rmap.h"
#include "mm/huge_memory.h"
#include "mm/hugetlb.h"
#include "mm/mm.h"

namespace dpmm::mm {
namespace {

// zap_nonpresent_ptes for one cleared swap entry.
void zap_nonpresent(Mm& mm, const arch::Softleaf leaf, MmuGather& tlb) {
  Kernel& k = mm.kernel();
  switch (arch::softleaf_type(leaf)) {
    case arch::SoftleafType::kDevicePrivateRead:
    case arch::SoftleafType::kDevicePrivateWrite:
    case arch::SoftleafType::kDeviceExclusive: {
      // The entry owns a reference and a mapcount of its page, as a present PTE does.
      page::Page* page = nullptr;
      if (arch::softleaf_is_device_exclusive(leaf)) {
        const Pfn pfn = MUST(arch::softleaf_to_pfn(leaf), "device-exclusive entries hold a pfn");
        page = MUST(k.pfn_to_page(pfn), "a device-exclusive entry names RAM");
      } else if (DevicePrivateFaultHandler* h = k.device_private_handler()) {
        page = h->softleaf_to_page(leaf);
      }
      if (page == nullptr) {
        // With a handler installed every device-private entry names a registered page (a
        // pagemap cannot go while a page of it is mapped); without one (mm tests), say so.
        assert(k.device_private_handler() == nullptr &&
               "zap of a device-private entry the installed handler cannot resolve");
        std::fprintf(stderr, "dpmm: zap of %s with no page to release\n",
                     arch::softleaf_describe(leaf).c_str());
        return;
      }
      page::Folio folio = page::page_folio(page);
      mm.add_rss(RssMember::kAnonPages, -1);
      folio_remove_rmap_pte(folio, page);
      tlb.remove_folio(folio);
      return;
    }
    case arch::SoftleafType::kMigrationRead:
    case arch::SoftleafType::kMigrationReadExclusive:
    case arch::SoftleafType::kMigrationWrite:
    case arch::SoftleafType::kMigrationDevicePrivateRead:
    case arch::SoftleafType::kMigrationDevicePrivateReadExclusive:
    case arch::SoftleafType::kMigrationDevicePrivateWrite:
      // The migration holds the references; only the counter goes (mm_counter(folio)).
      mm.add_rss(RssMember::kAnonPages, -1);
      return;
    case arch::SoftleafType::kSwap:
      // free_swap_and_cache: no swap devices yet.
      mm.add_rss(RssMember::kSwapEnts, -1);
      return;
    case arch::SoftleafType::kHwpoison:
    case arch::SoftleafType::kMarker:
    case arch::SoftleafType::kNone:
      return;
    case arch::SoftleafType::kCount:
      break;
  }
  assert(false && "unknown softleaf type");
}

}  // namespace

void Mm::zap_range_locked(const Vma& vma, VirtAddr start, VirtAddr end, MmuGather& tlb) {
  assert(start >= vma.start && end <= vma.end && "zap outside the VMA");
  if (is_vm_hugetlb_page(vma)) {
    // unmap_single_vma -> __unmap_hugepage_range: whole huge pages only.
    unmap_hugepage_range(*this, vma, start, end, tlb);
    return;
  }
  const arch::EntryCodec& codec = kernel_.codec();
  constexpr uint64_t kPmdSpan = uint64_t{1} << kPmdShift;
  for (VirtAddr a = start; a < end;) {
    const VirtAddr next(std::min(a.align_down(kPmdSpan).raw() + kPmdSpan, end.raw()));
    const std::optional<EntrySlot> pmd = page_table_->walk_pmd(a);
    if (!pmd || pmd->load() == 0) {
      a = next;
      continue;
    }
    if (pmd_is_huge(kernel_, pmd->load())) {
      // zap_pmd_range: a whole 2 MiB goes at once (zap_huge_pmd); part of one splits first.
      const VirtAddr haddr = a.align_down(kPmdSpan);
      if (a == haddr && next == haddr + kPmdSpan && zap_huge_pmd(*this, vma, *pmd, haddr, tlb)) {
        a = next;
        continue;
      }
      split_huge_pmd(*this, vma, *pmd, a);
    }
    if (!page_table_->pte_offset(*pmd, a)) {
      assert(false && "a populated PMD is a table or a leaf");
      a = next;
      continue;
    }
    SpinLocker guard(page_table_->lock());
    for (VirtAddr p = a; p < next; p += kPageSize) {
      const EntrySlot pte = *page_table_->pte_offset(*pmd, p);
      const uint64_t old = pte.exchange(0);  // ptep_get_and_clear_full
      if (old == 0) continue;
      const arch::DecodedEntry d = codec.decode(arch::EntryLevel::kPte, old);
      switch (d.kind) {
        case arch::DecodedEntry::Kind::kNone:
          continue;
        case arch::DecodedEntry::Kind::kPresent: {
          page::Page* page = vm_normal_page(kernel_, d);
          if (page == nullptr) continue;  // the zero page
          page::Folio folio = page::page_folio(page);
          // Hardware dirtiness moves to the folio (folio_mark_dirty for file pages, so the
          // page cache knows; for anon pages the kernel drops it, but keeping PG_dirty is
          // harmless and visible).
          if (arch::has(d.prot, arch::Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);
          add_rss(mm_counter(folio), -1);
          folio_remove_rmap_pte(folio, page);
          tlb.remove_folio(folio);
          continue;
        }
        case arch::DecodedEntry::Kind::kSwap:
          zap_nonpresent(*this, d.leaf, tlb);
          continue;
        case arch::DecodedEntry::Kind::kTable:
          break;
      }
      assert(false && "a PTE decoded as a table");
    }
    a = next;
  }
}

void Mm::zap_vma_range_rmap_locked(const Vma& vma, VirtAddr start, VirtAddr end) {
  // zap_page_range_single: its own notifier range and mmu_gather. The anon_vma lock keeps the
  // VMA and its page tables (every unhooking of tables holds it for write).
  const MmuNotifierRange range = notifier_range(MmuNotifyEvent::kClear, start, end);
  invalidate_range_start(range);
  MmuGather tlb(*this, start, end);
  zap_range_locked(vma, start, end, tlb);
  tlb.finish();
  invalidate_range_end(range);
}

}  // namespace dpmm::mm
