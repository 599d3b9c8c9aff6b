// munmap (mm/vma.c do_vmi_munmap, vms_gather_munmap_vmas, vms_complete_munmap_vmas;
// mm/mmap.c free_pgtables via unmap_region).
#include <cassert>
#include <vector>

#include "mm/mm.h"

namespace dpmm::mm {

Status Mm::munmap(VirtAddr addr, uint64_t len) {
  const VirtAddr task_size = kernel_.task_size();
  if (!addr.is_page_aligned())
    return make_error(Errno::kEINVAL, "munmap address {} is not page aligned", addr);
  if (addr > task_size || len > task_size - addr)
    return make_error(Errno::kEINVAL, "munmap range {}+{:#x} beyond TASK_SIZE {}", addr, len,
                      task_size);
  const uint64_t aligned = (len + kPageSize - 1) & ~(kPageSize - 1);
  if (aligned == 0) return make_error(Errno::kEINVAL, "munmap of length 0");
  WriteLocker guard(mmap_lock_);
  return do_munmap_locked(addr, addr + aligned);
}

Status Mm::do_munmap_locked(VirtAddr start, VirtAddr end) {
  const Vma* first = find_vma(start);
  if (first == nullptr || first->start >= end) return ok();  // nothing mapped there

  // Split at both ends first, so a split failure (ENOMEM) leaves everything mapped.
  auto it = vmas_.find(first->start.raw());
  if (it->second.start < start) it = TRY(split_vma_locked(it, start));
  auto last = std::prev(vmas_.lower_bound(end.raw()));
  if (last->second.end > end) TRY(split_vma_locked(last, end));

  const MmuNotifierRange range = notifier_range(MmuNotifyEvent::kUnmap, start, end);
  invalidate_range_start(range);
  MmuGather tlb(*this, start, end);
  auto stop = vmas_.lower_bound(end.raw());
  for (auto v = it; v != stop; ++v) zap_range_locked(v->second, v->second.start, v->second.end, tlb);
  std::vector<Vma> gone;
  {
    // rmap walks read VMAs and walk page tables (rmap.h).
    WriteLocker rmap(kernel_.anon_vma_lock());
    while (it != stop) gone.push_back(vma_unlink_locked(it++));
    // free_pgtables: tables serving only the hole between the neighbours go.
    tlb.remove_tables(page_table_->free_pgd_range(start, end, floor_below_locked(start),
                                                  ceiling_above_locked(end)));
  }
  tlb.finish();
  for (const Vma& v : gone) vma_close(v);  // remove_vma, after the pages went
  invalidate_range_end(range);
  return ok();
}

}  // namespace dpmm::mm
