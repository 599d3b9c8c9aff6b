// mmap for anonymous private mappings (mm/mmap.c do_mmap, __get_unmapped_area,
// generic_get_unmapped_area_topdown; mm/vma.c mmap_region).
#include <cassert>
#include <tuple>

#include "mm/mm.h"

namespace dpmm::mm {

bool Mm::range_free_locked(VirtAddr start, VirtAddr end) const {
  const Vma* vma = find_vma(start);
  return vma == nullptr || vma->start >= end;
}

Result<VirtAddr> Mm::get_unmapped_area_locked(VirtAddr hint, uint64_t len,
                                              MmapFlags flags) const {
  const VirtAddr task_size = kernel_.task_size();
  const VirtAddr min_addr = kernel_.mmap_min_addr();
  if (len > task_size.raw() - min_addr.raw())
    return make_error(Errno::kENOMEM, "mmap of {:#x} bytes: more than the address space", len);
  if (has(flags, MmapFlags::kFixed)) {
    if (hint.raw() > task_size.raw() - len)
      return make_error(Errno::kENOMEM, "MAP_FIXED range {}+{:#x} ends beyond TASK_SIZE {}", hint,
                        len, task_size);
    if (!hint.is_page_aligned())
      return make_error(Errno::kEINVAL, "MAP_FIXED address {} is not page aligned", hint);
    return hint;
  }
  // A hint is honoured when the page-aligned range there is free.
  if (hint.raw() != 0) {
    const VirtAddr a = hint.align_up(kPageSize);
    if (a.raw() <= task_size.raw() - len && a >= min_addr && range_free_locked(a, a + len))
      return a;
  }
  // Top-down: the highest gap below mmap_base that holds len (vm_unmapped_area with
  // VM_UNMAPPED_AREA_TOPDOWN, no alignment or guard gaps).
  uint64_t high = kernel_.mmap_base().raw();
  auto it = vmas_.lower_bound(high);
  // A VMA straddling mmap_base lowers the ceiling to its start.
  if (it != vmas_.begin() && std::prev(it)->second.end.raw() > high) high = std::prev(it)->first;
  while (true) {
    const uint64_t low = it == vmas_.begin() ? min_addr.raw() : std::prev(it)->second.end.raw();
    if (high >= low && high - low >= len) return VirtAddr(high - len);
    if (it == vmas_.begin()) break;
    --it;
    high = std::min(high, it->first);
  }
  return make_error(Errno::kENOMEM, "no free range of {:#x} bytes below {}", len,
                    kernel_.mmap_base());
}

Result<VirtAddr> Mm::mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags) {
  if (len == 0) return make_error(Errno::kEINVAL, "mmap of length 0");
  const uint64_t aligned = (len + kPageSize - 1) & ~(kPageSize - 1);
  if (aligned < len || aligned > kernel_.task_size().raw())
    return make_error(Errno::kENOMEM, "mmap length {:#x} exceeds TASK_SIZE", len);
  len = aligned;
  const uint32_t type = static_cast<uint32_t>(flags & MmapFlags::kTypeMask);
  if (type == static_cast<uint32_t>(MmapFlags::kShared) ||
      type == static_cast<uint32_t>(MmapFlags::kSharedValidate)) {
    if (type == static_cast<uint32_t>(MmapFlags::kSharedValidate) &&
        (flags & ~(kLegacyMapMask | MmapFlags::kSync | MmapFlags::kFixedNoreplace)) !=
            MmapFlags::kNone)
      return make_error(Errno::kEOPNOTSUPP, "MAP_SHARED_VALIDATE with unknown flags in {}",
                        map_flags_to_string(flags));
    return make_error(Errno::kEOPNOTSUPP,
                      "MAP_SHARED mappings need shmem, which a later phase adds ({})",
                      map_flags_to_string(flags));
  }
  if (type != static_cast<uint32_t>(MmapFlags::kPrivate))
    return make_error(Errno::kEINVAL, "mmap flags {} name neither MAP_SHARED nor MAP_PRIVATE",
                      map_flags_to_string(flags));
  if (!has(flags, MmapFlags::kAnonymous))
    return make_error(Errno::kEOPNOTSUPP,
                      "file mappings arrive with the page cache in a later phase (the kernel "
                      "returns EBADF for fd -1)");
  if (has(flags, MmapFlags::kHugetlb))
    return make_error(Errno::kEINVAL, "MAP_HUGETLB: hugetlb arrives in a later phase");
  if ((prot & ~kAllMmapProt) != MmapProt::kNone)
    return make_error(Errno::kEINVAL, "mmap with unknown protection bits {}",
                      prot_to_string(prot));
  if (has(flags, MmapFlags::kFixedNoreplace)) flags = flags | MmapFlags::kFixed;

  WriteLocker guard(mmap_lock_);
  const VirtAddr start = TRY(get_unmapped_area_locked(addr, len, flags));
  const VirtAddr end = start + len;
  if (has(flags, MmapFlags::kFixedNoreplace) && !range_free_locked(start, end))
    return make_error(Errno::kEEXIST, "MAP_FIXED_NOREPLACE: [{}, {}) overlaps a mapping", start,
                      end);
  // MAP_FIXED replaces whatever was there (mmap_region's do_vmi_munmap).
  if (!range_free_locked(start, end)) TRY(do_munmap_locked(start, end));
  if (vmas_.size() >= kMaxMapCount)
    return make_error(Errno::kENOMEM, "more than max_map_count ({}) mappings", kMaxMapCount);

  VmFlags vm_flags = calc_vm_prot_bits(prot) | calc_vm_flag_bits(flags) | kVmMayFlags;
  if (has(flags, MmapFlags::kNoReserve)) vm_flags |= VmFlags::kNoReserve;
  // accountable_mapping: private writable memory is charged to the commit limit.
  if (has(vm_flags, VmFlags::kWrite) && !has(vm_flags, VmFlags::kNoReserve))
    vm_flags |= VmFlags::kAccount;
  // An anonymous VMA's pgoff is its start page (mmap_region: pgoff = addr >> PAGE_SHIFT).
  VmaMap::iterator it;
  {
    WriteLocker rmap(kernel_.anon_vma_lock());  // rmap walks read VMAs (rmap.h)
    bool inserted = false;
    std::tie(it, inserted) =
        vmas_.emplace(start.raw(), Vma(start, end, vm_flags, start.raw() >> kPageShift));
    assert(inserted && "get_unmapped_area returned a used range");
    (void)inserted;
  }
  merge_around_locked(it);
  return start;
}

}  // namespace dpmm::mm
