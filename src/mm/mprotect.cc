// mprotect (mm/mprotect.c do_mprotect_pkey, mprotect_fixup, change_protection,
// change_pte_range, can_change_pte_writable).
#include <cassert>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/huge_memory.h"
#include "mm/hugetlb.h"
#include "mm/mm.h"

namespace dpmm::mm {

Status Mm::mprotect(VirtAddr addr, uint64_t len, MmapProt prot) {
  if (!addr.is_page_aligned())
    return make_error(Errno::kEINVAL, "mprotect address {} is not page aligned", addr);
  if ((prot & ~kAllMmapProt) != MmapProt::kNone)
    return make_error(Errno::kEINVAL, "mprotect with unknown protection bits {}",
                      prot_to_string(prot));
  if (len == 0) return ok();
  const uint64_t aligned = (len + kPageSize - 1) & ~(kPageSize - 1);
  if (aligned < len || addr.raw() + aligned < addr.raw())
    return make_error(Errno::kENOMEM, "mprotect range {}+{:#x} overflows", addr, len);
  const VirtAddr start = addr;
  const VirtAddr end = addr + aligned;
  const VmFlags want = calc_vm_prot_bits(prot);

  WriteLocker guard(mmap_lock_);
  const Vma* first = find_vma(start);
  if (first == nullptr || first->start > start)
    return make_error(Errno::kENOMEM, "mprotect: {} is not mapped", start);
  VirtAddr at = start;
  while (at < end) {
    auto it = vmas_.find(find_vma(at)->start.raw());
    const Vma& vma = it->second;
    // newflags keep everything but the access bits (mprotect_fixup works VMA by VMA).
    VmFlags newflags = (vma.flags & ~kVmAccessFlags) | want;
    // VM_MAY* gate what a VMA may become (newflags & ~(newflags >> 4)).
    const uint64_t nf = static_cast<uint64_t>(newflags);
    if ((nf & ~(nf >> 4)) & static_cast<uint64_t>(kVmAccessFlags))
      return make_error(Errno::kEACCES, "mprotect: the VMA at {} may not become {}", vma.start,
                        prot_to_string(prot));
    // Private memory becoming writable is charged to the commit limit (VM_ACCOUNT stays on a
    // later downgrade).
    if (has(newflags, VmFlags::kWrite) &&
        !has_any(vma.flags, VmFlags::kAccount | VmFlags::kWrite | VmFlags::kHugetlb |
                            VmFlags::kShared | VmFlags::kNoReserve))
      newflags |= VmFlags::kAccount;
    const VirtAddr stop = std::min(end, vma.end);
    TRY(mprotect_fixup_locked(it, at, stop, newflags));
    at = stop;
    if (at >= end) break;
    const Vma* next = find_vma(at);
    if (next == nullptr || next->start > at)
      return make_error(Errno::kENOMEM, "mprotect: {} is not mapped", at);
  }
  return ok();
}

Status Mm::mprotect_fixup_locked(VmaMap::iterator it, VirtAddr start, VirtAddr end,
                                 VmFlags newflags) {
  if (it->second.flags == newflags) return ok();
  if (it->second.start < start) it = TRY(split_vma_locked(it, start));
  if (it->second.end > end) TRY(split_vma_locked(it, end));
  Vma& vma = it->second;
  {
    WriteLocker rmap(kernel_.anon_vma_lock());  // rmap walks read VMAs (rmap.h)
    vma.flags = newflags;
    vma.page_prot = vm_get_page_prot(newflags);
  }
  const MmuNotifierRange range = notifier_range(MmuNotifyEvent::kProtectionVma, start, end);
  invalidate_range_start(range);
  change_protection_locked(vma, start, end);
  flush_tlb_range(start, end);
  invalidate_range_end(range);
  merge_around_locked(it);
  return ok();
}

void Mm::change_protection_locked(const Vma& vma, VirtAddr start, VirtAddr end) {
  if (is_vm_hugetlb_page(vma)) {
    hugetlb_change_protection(*this, vma, start, end);  // change_protection's hugetlb branch
    return;
  }
  const arch::EntryCodec& codec = kernel_.codec();
  const arch::SoftleafFormat fmt = codec.format();
  // Bits of the old entry that survive a protection change (pte_modify keeps
  // _PAGE_CHG_MASK: the pfn, accessed, dirty, special, soft-dirty, uffd-wp).
  constexpr arch::Prot kKeep = arch::Prot::kAccessed | arch::Prot::kDirty |
                               arch::Prot::kSpecial | arch::Prot::kSoftDirty |
                               arch::Prot::kUffdWp;
  // MM_CP_TRY_CHANGE_WRITABLE: private writable VMAs may map exclusive anon pages writable at
  // once instead of taking a write fault later.
  const bool try_writable =
      has(vma.flags, VmFlags::kWrite) && !has(vma.flags, VmFlags::kShared);
  // change_pmd_range: a whole 2 MiB leaf changes at once (change_huge_pmd); a leaf the range
  // covers only in part is split first.
  constexpr uint64_t kPmdSpan = uint64_t{1} << kPmdShift;
  for (VirtAddr a = start; a < end;) {
    const VirtAddr haddr = a.align_down(kPmdSpan);
    const VirtAddr next(std::min(haddr.raw() + kPmdSpan, end.raw()));
    if (const std::optional<EntrySlot> pmd = page_table_->walk_pmd(a);
        pmd && pmd_is_huge(kernel_, pmd->load())) {
      if (a == haddr && next == haddr + kPmdSpan) {
        change_huge_pmd(*this, vma, *pmd, haddr);
      } else {
        split_huge_pmd(*this, vma, *pmd, a);
      }
    }
    a = next;
  }
  SpinLocker guard(page_table_->lock());
  for (VirtAddr a = start; a < end; a += kPageSize) {
    const std::optional<EntrySlot> pte = page_table_->walk_pte(a);
    if (!pte) {
      a = VirtAddr(a.align_down(uint64_t{1} << kPmdShift).raw() + (uint64_t{1} << kPmdShift) -
                   kPageSize);
      continue;
    }
    uint64_t old = pte->load();
    while (true) {
      if (old == 0) break;
      const arch::DecodedEntry d = codec.decode(arch::EntryLevel::kPte, old);
      uint64_t updated = old;
      if (d.kind == arch::DecodedEntry::Kind::kPresent) {
        arch::Prot p = vma.page_prot;
        if (arch::has(p, arch::Prot::kProtNone)) {
          p = p | (d.prot & (arch::Prot::kAccessed | arch::Prot::kDirty | arch::Prot::kSpecial |
                             arch::Prot::kSoftDirty));
        } else {
          p = p | (d.prot & kKeep);
          if (try_writable && !arch::has(p, arch::Prot::kWrite)) {
            // can_change_pte_writable: an exclusive anon page needs no COW.
            page::Page* page = vm_normal_page(kernel_, d);
            if (page != nullptr && page::page_folio(page).is_anon() && page_anon_exclusive(page))
              p = p | arch::Prot::kWrite;
          }
        }
        updated = MUST(codec.make_present(arch::EntryLevel::kPte, d.pfn, p),
                       "a mapped pfn with a VMA protection encodes");
      } else if (d.kind == arch::DecodedEntry::Kind::kSwap) {
        // Writable migration and device-private entries become readable: a later write
        // faults and restores write access where it is allowed.
        const arch::Softleaf leaf = d.leaf;
        std::optional<arch::Softleaf> readable;
        if (arch::softleaf_is_migration_write(leaf) &&
            !arch::softleaf_is_migration_device_private(leaf)) {
          const Pfn pfn = MUST(arch::softleaf_to_pfn(leaf), "migration entries hold a pfn");
          page::Page* page = MUST(kernel_.pfn_to_page(pfn), "migration entries name RAM");
          readable = page::page_folio(page).is_anon() && page_anon_exclusive(page)
                         ? MUST(arch::make_readable_exclusive_migration_entry(fmt, pfn), "valid")
                         : MUST(arch::make_readable_migration_entry(fmt, pfn), "valid");
        } else if (arch::softleaf_is_migration_device_private_write(leaf)) {
          const DevPrivOffset off = MUST(arch::softleaf_to_offset(leaf), "dpas offset");
          readable = MUST(arch::make_readable_migration_device_private_entry(fmt, off), "valid");
        } else if (arch::softleaf_is_device_private_write(leaf)) {
          const arch::PfnOrOffset where =
              MUST(arch::softleaf_to_pfn_or_offset(leaf), "device-private entries hold one");
          readable = MUST(arch::make_readable_device_private_entry(fmt, where), "valid");
        }
        if (readable) {
          if (arch::softleaf_is_migration(leaf)) {
            if (arch::softleaf_is_migration_young(leaf))
              *readable = arch::make_migration_entry_young(*readable);
            if (arch::softleaf_is_migration_dirty(leaf))
              *readable = arch::make_migration_entry_dirty(*readable);
          }
          updated = MUST(codec.make_swap(arch::EntryLevel::kPte, *readable, d.swp_bits),
                         "a readable variant of a valid entry encodes");
        }
      }
      if (updated == old || pte->compare_exchange(old, updated)) break;
      // A hardware walk set accessed/dirty meanwhile; redo with the new word.
    }
  }
}

}  // namespace dpmm::mm
