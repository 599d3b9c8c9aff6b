// mmap of anonymous memory, shmem and files (mm/mmap.c do_mmap, __get_unmapped_area,
// generic_get_unmapped_area_topdown; mm/vma.c mmap_region).
#include <cassert>
#include <tuple>

#include "mm/address_space.h"
#include "mm/hstate.h"
#include "mm/hugetlb.h"
#include "mm/hugetlbfs.h"
#include "mm/mm.h"
#include "mm/shmem.h"

namespace dpmm::mm {

bool Mm::range_free_locked(VirtAddr start, VirtAddr end) const {
  const Vma* vma = find_vma(start);
  return vma == nullptr || vma->start >= end;
}

Result<VirtAddr> Mm::get_unmapped_area_locked(VirtAddr hint, uint64_t len, MmapFlags flags,
                                              uint64_t align) const {
  const VirtAddr task_size = kernel_.task_size();
  const VirtAddr min_addr = kernel_.mmap_min_addr();
  if (len > task_size.raw() - min_addr.raw())
    return make_error(Errno::kENOMEM, "mmap of {:#x} bytes: more than the address space", len);
  if (has(flags, MmapFlags::kFixed)) {
    if (!hint.is_aligned(align))
      return make_error(Errno::kEINVAL, "MAP_FIXED address {} is not aligned to {:#x}", hint,
                        align);
    if (hint.raw() > task_size.raw() - len)
      return make_error(Errno::kENOMEM, "MAP_FIXED range {}+{:#x} ends beyond TASK_SIZE {}", hint,
                        len, task_size);
    if (!hint.is_page_aligned())
      return make_error(Errno::kEINVAL, "MAP_FIXED address {} is not page aligned", hint);
    return hint;
  }
  // A hint is honoured when the page-aligned range there is free.
  if (hint.raw() != 0) {
    const VirtAddr a = hint.align_up(align);
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
    if (high >= low && high - low >= len) {
      const uint64_t at = (high - len) & ~(align - 1);
      if (at >= low) return VirtAddr(at);
    }
    if (it == vmas_.begin()) break;
    --it;
    high = std::min(high, it->first);
  }
  return make_error(Errno::kENOMEM, "no free range of {:#x} bytes below {}", len,
                    kernel_.mmap_base());
}

Result<VirtAddr> Mm::mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags) {
  if (!has(flags, MmapFlags::kAnonymous))
    return make_error(Errno::kEBADF, "mmap without MAP_ANONYMOUS and no file (fd -1)");
  return do_mmap(addr, len, prot, flags, nullptr, 0);
}

Result<VirtAddr> Mm::mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags,
                          std::shared_ptr<File> file, uint64_t offset) {
  // The arch's sys_mmap checks the offset first, then ksys_mmap_pgoff looks the fd up; with
  // MAP_ANONYMOUS the fd is not looked at.
  if ((offset & (kPageSize - 1)) != 0)
    return make_error(Errno::kEINVAL, "mmap offset {:#x} is not page aligned", offset);
  if (has(flags, MmapFlags::kAnonymous)) return do_mmap(addr, len, prot, flags, nullptr, offset);
  if (file == nullptr) return make_error(Errno::kEBADF, "mmap of a null file");
  return do_mmap(addr, len, prot, flags, std::move(file), offset);
}

Result<VirtAddr> Mm::do_mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags,
                             std::shared_ptr<File> file, uint64_t offset) {
  if (len == 0) return make_error(Errno::kEINVAL, "mmap of length 0");
  const uint64_t aligned = (len + kPageSize - 1) & ~(kPageSize - 1);
  if (aligned < len || aligned > kernel_.task_size().raw())
    return make_error(Errno::kENOMEM, "mmap length {:#x} exceeds TASK_SIZE", len);
  len = aligned;
  uint64_t pgoff = offset >> kPageShift;
  if (pgoff + (len >> kPageShift) < pgoff)
    return make_error(Errno::kEOVERFLOW, "mmap offset {:#x} + length {:#x} wraps", offset, len);
  const uint32_t type = static_cast<uint32_t>(flags & MmapFlags::kTypeMask);
  const bool shared = type == static_cast<uint32_t>(MmapFlags::kShared) ||
                      type == static_cast<uint32_t>(MmapFlags::kSharedValidate);
  if (type == static_cast<uint32_t>(MmapFlags::kSharedValidate) &&
      (flags & ~(kLegacyMapMask | MmapFlags::kSync | MmapFlags::kFixedNoreplace)) !=
          MmapFlags::kNone)
    return make_error(Errno::kEOPNOTSUPP, "MAP_SHARED_VALIDATE with unknown flags in {}",
                      map_flags_to_string(flags));
  if (!shared && type != static_cast<uint32_t>(MmapFlags::kPrivate))
    return make_error(Errno::kEINVAL, "mmap flags {} name neither MAP_SHARED nor MAP_PRIVATE",
                      map_flags_to_string(flags));
  // ksys_mmap_pgoff: a hugetlbfs file is a hugetlb mapping with or without MAP_HUGETLB;
  // MAP_HUGETLB with any other file is EINVAL, and without a file names an anonymous hugetlb
  // file (hugetlb_file_setup).
  const bool hugetlbfs = file != nullptr && dynamic_cast<HugetlbfsFile*>(file.get()) != nullptr;
  const bool hugetlb = has(flags, MmapFlags::kHugetlb) || hugetlbfs;
  if (hugetlb) {
    if (file != nullptr && !hugetlbfs)
      return make_error(Errno::kEINVAL, "MAP_HUGETLB with a file that is not on hugetlbfs");
    // len = ALIGN(len, huge_page_size(hs)).
    const uint64_t huge = kernel_.hstate().size();
    const uint64_t rounded = (len + huge - 1) & ~(huge - 1);
    if (rounded < len || rounded > kernel_.task_size().raw())
      return make_error(Errno::kENOMEM, "MAP_HUGETLB length {:#x} exceeds TASK_SIZE", len);
    len = rounded;
    if (file == nullptr) pgoff = 0;  // the anonymous hugetlb file is mapped from its start
  }
  if ((prot & ~kAllMmapProt) != MmapProt::kNone)
    return make_error(Errno::kEINVAL, "mmap with unknown protection bits {}",
                      prot_to_string(prot));
  if (has(flags, MmapFlags::kFixedNoreplace)) flags = flags | MmapFlags::kFixed;

  VmFlags vm_flags = calc_vm_prot_bits(prot) | calc_vm_flag_bits(flags) | kVmMayFlags;
  if (file != nullptr) {
    // file_mmap_ok: the mapped range must end below the file's largest size
    // (MAX_LFS_FILESIZE for the files modelled).
    constexpr uint64_t kMaxSize = uint64_t{INT64_MAX};
    if (len > kMaxSize || pgoff > ((kMaxSize - len) >> kPageShift))
      return make_error(Errno::kEOVERFLOW, "mmap of {} at offset {:#x}+{:#x}: past the largest "
                        "file size", file->name(), offset, len);
    const FMode mode = file->f_mode();
    if (shared) {
      if (has(prot, MmapProt::kWrite) && !has(mode, FMode::kWrite))
        return make_error(Errno::kEACCES, "MAP_SHARED|PROT_WRITE of {}, not open for writing",
                          file->name());
      vm_flags |= VmFlags::kShared | VmFlags::kMayShare;
      if (!has(mode, FMode::kWrite)) vm_flags &= ~(VmFlags::kMayWrite | VmFlags::kShared);
    }
    if (!has(mode, FMode::kRead))
      return make_error(Errno::kEACCES, "mmap of {}, not open for reading", file->name());
    if (!file->has_mmap())
      return make_error(Errno::kENODEV, "{} has no mmap file operation", file->name());
  } else if (shared) {
    pgoff = 0;  // shmem_zero_setup's file starts at the mapping
    vm_flags |= VmFlags::kShared | VmFlags::kMayShare;
  }
  if (has(flags, MmapFlags::kNoReserve)) vm_flags |= VmFlags::kNoReserve;
  // accountable_mapping: private writable memory is charged to the commit limit (shmem
  // charges its own pages).
  if ((vm_flags & (VmFlags::kNoReserve | VmFlags::kShared | VmFlags::kWrite)) == VmFlags::kWrite)
    vm_flags |= VmFlags::kAccount;

  WriteLocker guard(mmap_lock_);
  if (hugetlb) {
    const VirtAddr start =
        TRY(get_unmapped_area_locked(addr, len, flags, kernel_.hstate().size()));
    // hugetlbfs_file_mmap: VM_HUGETLB|VM_DONTEXPAND, then hugetlb_reserve_pages. Hugetlb
    // pages are never charged to the commit limit (accountable_mapping: no VM_ACCOUNT).
    vm_flags = (vm_flags & ~VmFlags::kAccount) | VmFlags::kHugetlb | VmFlags::kDontExpand;
    // dpmm keeps a private anonymous hugetlb VMA file-less (docs/mm.md).
    if (file == nullptr && !shared) return mmap_hugetlb_region_locked(start, len, vm_flags, flags);
    // MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB: an unlinked hugetlbfs file of the mapping's size,
    // which the VMA alone holds (hugetlb_file_setup, with VM_NORESERVE: the mmap reserves).
    if (file == nullptr) file = TRY(HugetlbfsFile::create(kernel_, len, "anon_hugepage"));
    return mmap_region_locked(start, len, vm_flags, pgoff, std::move(file), flags);
  }
  const VirtAddr start = TRY(get_unmapped_area_locked(addr, len, flags));
  // An anonymous private VMA's pgoff is its start page (do_mmap).
  if (file == nullptr && !shared) pgoff = start.raw() >> kPageShift;
  return mmap_region_locked(start, len, vm_flags, pgoff, std::move(file), flags);
}

Status Mm::mmap_clear_range_locked(VirtAddr start, VirtAddr end, MmapFlags flags) {
  if (has(flags, MmapFlags::kFixedNoreplace) && !range_free_locked(start, end))
    return make_error(Errno::kEEXIST, "MAP_FIXED_NOREPLACE: [{}, {}) overlaps a mapping", start,
                      end);
  // MAP_FIXED replaces whatever was there (mmap_region's do_vmi_munmap).
  if (!range_free_locked(start, end)) TRY(do_munmap_locked(start, end));
  if (vmas_.size() >= kMaxMapCount)
    return make_error(Errno::kENOMEM, "more than max_map_count ({}) mappings", kMaxMapCount);
  return ok();
}

Result<VirtAddr> Mm::mmap_region_locked(VirtAddr start, uint64_t len, VmFlags vm_flags,
                                        uint64_t pgoff, std::shared_ptr<File> file,
                                        MmapFlags flags) {
  const VirtAddr end = start + len;
  TRY(mmap_clear_range_locked(start, end, flags));

  Vma vma(start, end, vm_flags, pgoff);
  if (file != nullptr) {
    vma.file = file;
    // __mmap_new_file_vma: f_op->mmap sees the VMA before anyone else does.
    Status st = file->mmap(*this, vma);
    if (st.is_error()) {
      // Undo whatever the driver mapped (vm_insert_page) and the tables it needed.
      const MmuNotifierRange range = notifier_range(MmuNotifyEvent::kUnmap, start, end);
      invalidate_range_start(range);
      MmuGather tlb(*this, start, end);
      zap_range_locked(vma, start, end, tlb);
      {
        WriteLocker rmap(kernel_.anon_vma_lock());
        tlb.remove_tables(page_table_->free_pgd_range(start, end, floor_below_locked(start),
                                                      ceiling_above_locked(end)));
      }
      tlb.finish();
      invalidate_range_end(range);
      return st.error();
    }
    vma.page_prot = vm_get_page_prot(vma.flags);  // vma_set_page_prot: the hook may add flags
  } else if (has(vm_flags, VmFlags::kShared)) {
    TRY(shmem_zero_setup(kernel_, vma));
  }
  VmaMap::iterator it;
  {
    WriteLocker rmap(kernel_.anon_vma_lock());  // rmap walks read VMAs (rmap.h)
    it = vma_link_locked(std::move(vma));
  }
  merge_around_locked(it);
  return start;
}

Result<VirtAddr> Mm::mmap_hugetlb_region_locked(VirtAddr start, uint64_t len, VmFlags vm_flags,
                                                MmapFlags flags) {
  const VirtAddr end = start + len;
  TRY(mmap_clear_range_locked(start, end, flags));
  Vma vma(start, end, vm_flags, 0);
  // hugetlb_reserve_pages (ENOMEM when the pool cannot promise every huge page).
  vma.resv_map = TRY(hugetlb_reserve_pages(kernel_, len / kernel_.hstate().size(), vm_flags));
  WriteLocker rmap(kernel_.anon_vma_lock());  // rmap walks read VMAs (rmap.h)
  vma_link_locked(std::move(vma));
  return start;
}

Mm::VmaMap::iterator Mm::vma_link_locked(Vma vma) {
  AddressSpace* mapping = vma.file != nullptr ? vma.file->mapping() : nullptr;
  auto [it, inserted] = vmas_.emplace(vma.start.raw(), std::move(vma));
  assert(inserted && "linking a VMA over a used range");
  (void)inserted;
  if (mapping != nullptr) mapping->i_mmap_link(this);
  return it;
}

Vma Mm::vma_unlink_locked(VmaMap::iterator it) {
  if (it->second.file != nullptr) {
    if (AddressSpace* mapping = it->second.file->mapping()) mapping->i_mmap_unlink(this);
  }
  Vma gone = std::move(it->second);
  vmas_.erase(it);
  return gone;
}

void Mm::vma_close(const Vma& vma) {
  // vm_ops->close: a hugetlb owner gives back its unused reservations. Unlinking for a merge
  // never reaches a hugetlb VMA (can_merge).
  if (is_vm_hugetlb_page(vma)) hugetlb_vm_op_close(kernel_, vma);
}

}  // namespace dpmm::mm
