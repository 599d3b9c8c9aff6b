#include "mm/pagemap.h"

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "arch/swap_numbering.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/huge_memory.h"

namespace dpmm::mm {

uint64_t pagemap_entry(Mm& mm, VirtAddr addr) {
  ReadLocker guard(mm.mmap_lock());
  const Kernel& k = mm.kernel();
  if (mm.vma_lookup(addr) == nullptr) return 0;
  if (const std::optional<EntrySlot> pmd = mm.page_table().walk_pmd(addr)) {
    if (const std::optional<arch::DecodedEntry> d = pmd_trans_huge(k, pmd->load())) {
      // pagemap_pmd_range: every 4 KiB of a PMD leaf shows its own frame.
      const uint64_t idx = pt_index(PtLevel::kPte, addr);
      uint64_t flags = kPmPresent;
      if (arch::has(d->prot, arch::Prot::kSoftDirty)) flags |= kPmSoftDirty;
      if (arch::has(d->prot, arch::Prot::kUffdWp)) flags |= kPmUffdWp;
      if (page::Page* head = vm_normal_page_pmd(k, *d)) {
        const page::Folio folio = page::page_folio(head);
        if (!folio.is_anon()) flags |= kPmFile;
        if (folio.mapcount() == 1) flags |= kPmMmapExclusive;
      }
      return ((d->pfn.raw() + idx) & kPmPframeMask) | flags;
    }
    if (const uint64_t word = pmd->load();
        pmd_is_device_private_entry(k, word) || pmd_is_migration_entry(k, word)) {
      // pagemap_pmd_range of a swap PMD (a device-private THP, a THP under migration):
      // PM_SWAP, the entry's PFN or offset advanced to this 4 KiB page.
      const arch::DecodedEntry d = k.codec().decode(arch::EntryLevel::kPmd, word);
      uint64_t flags = kPmSwap;
      if (arch::has(d.swp_bits, arch::SwpBit::kSoftDirty)) flags |= kPmSoftDirty;
      if (arch::has(d.swp_bits, arch::SwpBit::kUffdWp)) flags |= kPmUffdWp;
      const uint64_t offset =
          (d.leaf.swp_offset() & d.leaf.format().pfn_mask()) + pt_index(PtLevel::kPte, addr);
      return ((d.leaf.swp_type() | (offset << arch::kMaxSwapfilesShift)) & kPmPframeMask) | flags;
    }
  }
  const std::optional<EntrySlot> pte = mm.page_table().walk_pte(addr);
  if (!pte) return 0;
  const arch::DecodedEntry d = k.codec().decode(arch::EntryLevel::kPte, pte->load());
  uint64_t frame = 0;
  uint64_t flags = 0;
  page::Page* page = nullptr;
  switch (d.kind) {
    case arch::DecodedEntry::Kind::kNone:
    case arch::DecodedEntry::Kind::kTable:
      return 0;
    case arch::DecodedEntry::Kind::kPresent:
      frame = d.pfn.raw();
      flags |= kPmPresent;
      if (arch::has(d.prot, arch::Prot::kSoftDirty)) flags |= kPmSoftDirty;
      if (arch::has(d.prot, arch::Prot::kUffdWp)) flags |= kPmUffdWp;
      page = vm_normal_page(k, d);
      break;
    case arch::DecodedEntry::Kind::kSwap: {
      const arch::Softleaf leaf = d.leaf;
      if (arch::has(d.swp_bits, arch::SwpBit::kSoftDirty)) flags |= kPmSoftDirty;
      if (arch::has(d.swp_bits, arch::SwpBit::kUffdWp)) flags |= kPmUffdWp;
      // PFN-carrying entries show only the PFN as their offset (compatibility with old
      // smaps); a dpas device-private offset is shown the same way, masked alike.
      const uint64_t offset = arch::softleaf_has_pfn(leaf)
                                  ? leaf.swp_offset() & leaf.format().pfn_mask()
                                  : leaf.swp_offset();
      frame = leaf.swp_type() | (offset << arch::kMaxSwapfilesShift);
      flags |= kPmSwap;
      if (arch::softleaf_is_marker(leaf)) {
        const arch::PteMarker m = arch::softleaf_to_marker(leaf);
        if ((m & arch::PteMarker::kUffdWp) != arch::PteMarker::kNone) flags |= kPmUffdWp;
        if ((m & arch::PteMarker::kGuard) != arch::PteMarker::kNone) flags |= kPmGuardRegion;
      }
      if (arch::softleaf_holds_offset(leaf)) {
        if (DevicePrivateFaultHandler* h = k.device_private_handler()) page = h->softleaf_to_page(leaf);
      } else if (arch::softleaf_has_pfn(leaf)) {
        Result<page::Page*> p = k.pfn_to_page(MUST(arch::softleaf_to_pfn(leaf), "has a pfn"));
        if (p.is_ok()) {
          page = *p;
        } else if (DevicePrivateFaultHandler* h = k.device_private_handler()) {
          page = h->softleaf_to_page(leaf);
        }
      }
      break;
    }
  }
  if (page != nullptr) {
    const page::Folio folio = page::page_folio(page);
    if (!folio.is_anon()) flags |= kPmFile;
    if ((flags & kPmPresent) && page_mapcount(page) == 1) flags |= kPmMmapExclusive;
  }
  return (frame & kPmPframeMask) | flags;
}

}  // namespace dpmm::mm
