// mremap (mm/mremap.c: do_mremap / SYSCALL mremap, mremap_to, vma_to_resize, vma_expandable,
// move_vma, copy_vma, move_page_tables, move_ptes, align_hugetlb; mm/hugetlb.c
// move_hugetlb_page_tables, clear_vma_resv_huge_pages).
#include <algorithm>
#include <cassert>

#include "mm/address_space.h"
#include "mm/huge_memory.h"
#include "mm/hugetlb.h"
#include "mm/mm.h"

namespace dpmm::mm {
namespace {

constexpr MremapFlags kAllMremapFlags =
    MremapFlags::kMayMove | MremapFlags::kFixed | MremapFlags::kDontUnmap;

// PAGE_ALIGN, or nullopt when it wraps.
std::optional<uint64_t> page_align(uint64_t len) {
  if (len > UINT64_MAX - (kPageSize - 1)) return std::nullopt;
  return (len + kPageSize - 1) & ~(kPageSize - 1);
}

}  // namespace

Result<VirtAddr> Mm::mremap(VirtAddr addr, uint64_t old_len_in, uint64_t new_len_in,
                            MremapFlags flags, VirtAddr new_addr) {
  if ((flags & ~kAllMremapFlags) != MremapFlags::kNone)
    return make_error(Errno::kEINVAL, "mremap with unknown flags {:#x}",
                      static_cast<uint32_t>(flags));
  if (has(flags, MremapFlags::kFixed) && !has(flags, MremapFlags::kMayMove))
    return make_error(Errno::kEINVAL, "MREMAP_FIXED without MREMAP_MAYMOVE");
  if (has(flags, MremapFlags::kDontUnmap) &&
      (!has(flags, MremapFlags::kMayMove) || old_len_in != new_len_in))
    return make_error(Errno::kEINVAL,
                      "MREMAP_DONTUNMAP needs MREMAP_MAYMOVE and old_len == new_len");
  if (!addr.is_page_aligned())
    return make_error(Errno::kEINVAL, "mremap address {} is not page aligned", addr);
  const std::optional<uint64_t> old_aligned = page_align(old_len_in);
  const std::optional<uint64_t> new_aligned = page_align(new_len_in);
  if (!new_aligned || *new_aligned == 0)
    return make_error(Errno::kEINVAL, "mremap to length {:#x}", new_len_in);
  if (!old_aligned) return make_error(Errno::kEINVAL, "mremap of length {:#x}", old_len_in);
  uint64_t old_len = *old_aligned;
  uint64_t new_len = *new_aligned;
  const bool may_move = has(flags, MremapFlags::kMayMove);

  WriteLocker guard(mmap_lock_);
  const Vma* vma = vma_lookup(addr);
  if (vma == nullptr) return make_error(Errno::kEFAULT, "mremap: nothing is mapped at {}", addr);
  if (is_vm_hugetlb_page(*vma)) {
    // align_hugetlb: both lengths round up to whole huge pages, both addresses must be huge
    // aligned (new_addr even without MREMAP_FIXED), and growing is refused: the reservation
    // map cannot be extended.
    const uint64_t hmask = kHpagePmdSize - 1;
    if (old_len > UINT64_MAX - hmask || new_len > UINT64_MAX - hmask)
      return make_error(Errno::kEINVAL, "mremap of hugetlb: a length overflows");
    old_len = (old_len + hmask) & ~hmask;
    new_len = (new_len + hmask) & ~hmask;
    if (!addr.is_aligned(kHpagePmdSize) || !new_addr.is_aligned(kHpagePmdSize))
      return make_error(Errno::kEINVAL, "mremap of hugetlb at {} to {}: not huge-page aligned",
                        addr, new_addr);
    if (new_len > old_len)
      return make_error(Errno::kEINVAL, "mremap may not grow the hugetlb mapping at {}", addr);
    // From here on the common paths apply: a shrink unmaps the tail in place; a move needs
    // MREMAP_FIXED (growing is the only other reason to move); DONTUNMAP is refused for
    // VM_DONTEXPAND (vma_to_resize).
  }
  if (old_len == 0 && !has_any(vma->flags, VmFlags::kShared | VmFlags::kMayShare))
    return make_error(Errno::kEINVAL, "mremap of length 0 of a private mapping at {}", addr);

  const VirtAddr task_size = kernel_.task_size();

  if (has_any(flags, MremapFlags::kFixed | MremapFlags::kDontUnmap)) {
    // mremap_to.
    if (has(flags, MremapFlags::kFixed)) {
      if (!new_addr.is_page_aligned())
        return make_error(Errno::kEINVAL, "MREMAP_FIXED address {} is not page aligned", new_addr);
      if (new_len > task_size.raw() || new_addr.raw() > task_size.raw() - new_len)
        return make_error(Errno::kEINVAL, "MREMAP_FIXED range {}+{:#x} beyond TASK_SIZE",
                          new_addr, new_len);
      if (addr.raw() + old_len > new_addr.raw() && new_addr.raw() + new_len > addr.raw())
        return make_error(Errno::kEINVAL, "mremap: the old and new ranges overlap");
      TRY(do_munmap_locked(new_addr, new_addr + new_len));
    }
    if (old_len > new_len) {
      TRY(do_munmap_locked(addr + new_len, addr + old_len));
      old_len = new_len;
    }
    VmaMap::iterator it = TRY(vma_to_resize_locked(addr, old_len, new_len, flags));
    MmapFlags map_flags = MmapFlags::kNone;
    if (has(flags, MremapFlags::kFixed)) map_flags |= MmapFlags::kFixed;
    const VirtAddr to = TRY(get_unmapped_area_locked(
        has(flags, MremapFlags::kFixed) ? new_addr : VirtAddr(0), new_len, map_flags));
    return move_vma_locked(it, addr, old_len, new_len, to, flags);
  }

  // Shrinking (or the same size) happens in place.
  if (old_len >= new_len) {
    if (old_len > new_len) TRY(do_munmap_locked(addr + new_len, addr + old_len));
    return addr;
  }
  VmaMap::iterator it = TRY(vma_to_resize_locked(addr, old_len, new_len, flags));
  // Grow in place when the range ends the VMA and the space after it is free
  // (vma_expandable), merging with the next VMA where compatible.
  const uint64_t delta = new_len - old_len;
  if (old_len == it->second.end - addr && it->second.end.raw() <= task_size.raw() - delta &&
      range_free_locked(it->second.end, it->second.end + delta)) {
    {
      WriteLocker rmap(kernel_.anon_vma_lock());
      it->second.end = it->second.end + delta;
    }
    merge_around_locked(it);
    return addr;
  }
  if (!may_move)
    return make_error(Errno::kENOMEM,
                      "mremap cannot grow [{}, +{:#x}) in place and MREMAP_MAYMOVE is not set",
                      addr, old_len);
  const VirtAddr to = TRY(get_unmapped_area_locked(VirtAddr(0), new_len, MmapFlags::kNone));
  return move_vma_locked(it, addr, old_len, new_len, to, flags);
}

Result<Mm::VmaMap::iterator> Mm::vma_to_resize_locked(VirtAddr addr, uint64_t old_len,
                                                      uint64_t new_len, MremapFlags flags) {
  const Vma* v = vma_lookup(addr);
  if (v == nullptr) return make_error(Errno::kEFAULT, "mremap: nothing is mapped at {}", addr);
  if (old_len > v->end - addr)
    return make_error(Errno::kEFAULT, "mremap: [{}, +{:#x}) runs past the VMA's end {}", addr,
                      old_len, v->end);
  if (has(flags, MremapFlags::kDontUnmap) &&
      has_any(v->flags, VmFlags::kDontExpand | VmFlags::kPfnMap))
    return make_error(Errno::kEINVAL, "MREMAP_DONTUNMAP of a VM_DONTEXPAND/VM_PFNMAP mapping");
  if (new_len != old_len) {
    const uint64_t pgoff = v->linear_page_index(addr);
    if (pgoff + (new_len >> kPageShift) < pgoff)
      return make_error(Errno::kEINVAL, "mremap: the page offset wraps");
    if (has_any(v->flags, VmFlags::kDontExpand | VmFlags::kPfnMap))
      return make_error(Errno::kEFAULT, "mremap may not grow a VM_DONTEXPAND/VM_PFNMAP mapping");
  }
  return vmas_.find(v->start.raw());
}

Result<VirtAddr> Mm::move_vma_locked(VmaMap::iterator it, VirtAddr old_addr, uint64_t old_len,
                                     uint64_t new_len, VirtAddr new_addr, MremapFlags flags) {
  // A move may split the old VMA into three and add one.
  if (vmas_.size() >= kMaxMapCount - 3)
    return make_error(Errno::kENOMEM, "mremap would exceed max_map_count {}", kMaxMapCount);
  assert(range_free_locked(new_addr, new_addr + new_len) && "move_vma to a used range");
  // copy_vma: the new VMA keeps flags, file, anon_vma and the page offset of old_addr, so
  // every moved page keeps its linear_page_index (and the rmap finds it).
  Vma moved = it->second;
  moved.start = new_addr;
  moved.end = new_addr + new_len;
  moved.pgoff = it->second.linear_page_index(old_addr);
  const bool dont_unmap = has(flags, MremapFlags::kDontUnmap);
  if (dont_unmap) moved.flags &= ~(VmFlags::kLocked | VmFlags::kLockOnFault);
  // The old VMA's fields (it may be split below) are what DONTUNMAP leaves behind.
  const VirtAddr old_vma_start = it->second.start;
  const VirtAddr old_vma_end = it->second.end;

  const MmuNotifierRange range = notifier_range(MmuNotifyEvent::kUnmap, old_addr,
                                                old_addr + old_len);
  invalidate_range_start(range);
  {
    // take_rmap_locks: no rmap walk sees a page between its old and new PTE.
    WriteLocker rmap(kernel_.anon_vma_lock());
    vma_link_locked(moved);
    move_page_tables_locked(old_addr, new_addr, old_len);
  }
  // Every translation of the old range is gone before anyone reuses it.
  flush_tlb_range(old_addr, old_addr + old_len);
  invalidate_range_end(range);

  if (dont_unmap) {
    // The old range stays mapped and empty. It no longer needs its anon_vma when it was the
    // whole VMA (unlink_anon_vmas); new faults there prepare a fresh one.
    if (old_vma_start == old_addr && old_vma_end == old_addr + old_len) {
      WriteLocker rmap(kernel_.anon_vma_lock());
      auto old_it = vmas_.find(old_addr.raw());
      old_it->second.set_anon_vma(nullptr);
      old_it->second.flags &= ~(VmFlags::kLocked | VmFlags::kLockOnFault);
    }
  } else if (old_len != 0) {  // old_len 0 duplicates a shared mapping: nothing to unmap
    if (is_vm_hugetlb_page(moved)) {
      // The moved VMA took the reservation map with it (hugetlb_vm_op_open shares it), so
      // the piece left at the old address must not give its unused reservations back when
      // the unmap below closes it (clear_vma_resv_huge_pages). The kernel clears the whole
      // old VMA, so parts of it that stay lose their reservations; dpmm splits first and
      // clears only the moved piece (docs/mm.md). Hugetlb cuts here are huge-page aligned.
      auto old_it = vmas_.find(old_vma_start.raw());
      if (old_it->second.start < old_addr) old_it = TRY(split_vma_locked(old_it, old_addr));
      if (old_it->second.end > old_addr + old_len)
        TRY(split_vma_locked(old_it, old_addr + old_len));
      WriteLocker rmap(kernel_.anon_vma_lock());
      old_it->second.resv_map = nullptr;
    }
    TRY(do_munmap_locked(old_addr, old_addr + old_len));
  }
  if (auto nit = vmas_.find(new_addr.raw()); nit != vmas_.end()) merge_around_locked(nit);
  return new_addr;
}

void Mm::move_page_tables_locked(VirtAddr old_addr, VirtAddr new_addr, uint64_t len) {
  if (const Vma* old_vma = vma_lookup(old_addr);
      old_vma != nullptr && is_vm_hugetlb_page(*old_vma)) {
    move_hugetlb_page_tables(*this, old_addr, new_addr, len);
    return;
  }
  constexpr uint64_t kPmdSpan = uint64_t{1} << kPmdShift;
  for (uint64_t off = 0; off < len;) {
    const VirtAddr from = old_addr + off;
    const std::optional<EntrySlot> src_pmd = page_table_->walk_pmd(from);
    if (src_pmd && pmd_is_huge(kernel_, src_pmd->load())) {
      // move_pmd / move_huge_pmd: a whole leaf moves when both ends are 2 MiB aligned and
      // the rest of the range covers it; otherwise it splits and its PTEs move one by one.
      const VirtAddr to = new_addr + off;
      if (from.is_aligned(kPmdSpan) && to.is_aligned(kPmdSpan) && len - off >= kPmdSpan &&
          move_huge_pmd(*this, from, to)) {
        off += kPmdSpan;
        continue;
      }
      const Vma* vma = vma_lookup(from);
      assert(vma != nullptr && "mremap moves mapped memory");
      split_huge_pmd(*this, *vma, *src_pmd, from);
    }
    if (!src_pmd || src_pmd->load() == 0 || !page_table_->pte_offset(*src_pmd, from)) {
      // No PTE table here: nothing to move in this PMD span.
      off = std::min(len, from.align_down(kPmdSpan).raw() + kPmdSpan - old_addr.raw());
      continue;
    }
    const EntrySlot src = *page_table_->pte_offset(*src_pmd, from);
    if (src.load() != 0) {
      const VirtAddr to = new_addr + off;
      // The destination tables are allocated before the lock (pte_alloc takes it).
      const Result<EntrySlot> dst_pmd = page_table_->walk_pmd_alloc(to);
      const Result<EntrySlot> dst =
          dst_pmd.is_ok() ? page_table_->pte_alloc(*dst_pmd, to) : Result<EntrySlot>(dst_pmd.error());
      // move_page_tables stops at an allocation failure and the kernel moves back what it
      // moved; dpmm's tables come from a node the tests never exhaust mid-move.
      const EntrySlot d = MUST(dst, "a page table for mremap's destination");
      SpinLocker guard(page_table_->lock());
      // move_ptes: the entry goes over as it is, whatever it is (present, swap,
      // device-private, migration); its references and mapcounts stay with it.
      const uint64_t word = src.exchange(0);
      assert(d.load() == 0 && "mremap destination PTE in use");
      d.store(word);
    }
    off += kPageSize;
  }
}

}  // namespace dpmm::mm
