// VMA splitting and merging (mm/vma.c: __split_vma, vma_merge_existing_range,
// vma_merge_new_range, is_mergeable_vma, is_mergeable_anon_vma).
#include <cassert>

#include "mm/address_space.h"
#include "mm/huge_memory.h"
#include "mm/hugetlb.h"
#include "mm/mm.h"

namespace dpmm::mm {

Result<Mm::VmaMap::iterator> Mm::split_vma_locked(VmaMap::iterator it, VirtAddr addr) {
  Vma& lo = it->second;
  assert(addr > lo.start && addr < lo.end && "split_vma outside the VMA");
  assert(addr.is_page_aligned() && "split_vma at an unaligned address");
  // vm_ops->may_split (hugetlb_vm_op_split) is asked before the map count.
  if (is_vm_hugetlb_page(lo)) TRY(hugetlb_vm_op_split(kernel_, lo, addr));
  if (vmas_.size() >= kMaxMapCount)
    return make_error(Errno::kENOMEM, "splitting the VMA at {} would exceed max_map_count {}",
                      addr, kMaxMapCount);
  // vma_adjust_trans_huge: a PMD leaf across the cut becomes PTEs first.
  vma_adjust_trans_huge(*this, lo, addr);
  Vma hi = lo;
  hi.start = addr;
  hi.pgoff = lo.pgoff + ((addr - lo.start) >> kPageShift);
  WriteLocker rmap(kernel_.anon_vma_lock());  // rmap walks read VMAs (rmap.h)
  lo.end = addr;
  if (hi.file != nullptr) {
    if (AddressSpace* mapping = hi.file->mapping()) mapping->i_mmap_link(this);
  }
  return vmas_.emplace_hint(std::next(it), addr.raw(), hi);
}

bool Mm::can_merge(const Vma& lo, const Vma& hi) {
  if (lo.end != hi.start || lo.flags != hi.flags || lo.file != hi.file) return false;
  // Hugetlb VMAs carry VM_DONTEXPAND, part of VM_SPECIAL, which vma_merge refuses.
  if (is_vm_hugetlb_page(lo)) return false;
  if (hi.pgoff != lo.pgoff + (lo.size() >> kPageShift)) return false;
  // is_mergeable_anon_vma: the same anon_vma, or one side has none yet.
  return lo.anon_vma() == nullptr || hi.anon_vma() == nullptr || lo.anon_vma() == hi.anon_vma();
}

Mm::VmaMap::iterator Mm::merge_around_locked(VmaMap::iterator it) {
  WriteLocker rmap(kernel_.anon_vma_lock());  // rmap walks read VMAs (rmap.h)
  if (auto next = std::next(it); next != vmas_.end() && can_merge(it->second, next->second)) {
    it->second.end = next->second.end;
    if (it->second.anon_vma() == nullptr) it->second.set_anon_vma(next->second.anon_vma());
    vma_unlink_locked(next);
  }
  if (it != vmas_.begin()) {
    auto prev = std::prev(it);
    if (can_merge(prev->second, it->second)) {
      prev->second.end = it->second.end;
      if (prev->second.anon_vma() == nullptr) prev->second.set_anon_vma(it->second.anon_vma());
      vma_unlink_locked(it);
      return prev;
    }
  }
  return it;
}

VirtAddr Mm::floor_below_locked(VirtAddr start) const {
  auto it = vmas_.lower_bound(start.raw());
  if (it == vmas_.begin()) return VirtAddr(0);
  return std::prev(it)->second.end;
}

VirtAddr Mm::ceiling_above_locked(VirtAddr end) const {
  auto it = vmas_.lower_bound(end.raw());
  return it == vmas_.end() ? VirtAddr(kPgtableTop) : it->second.start;
}

}  // namespace dpmm::mm
