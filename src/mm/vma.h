// Vma: one virtual memory area (struct vm_area_struct, include/linux/mm_types.h).
//
// [start, end) page-aligned, its flags and the page protection derived from them, the page
// offset of `start` (vm_pgoff: for an anonymous VMA, start >> PAGE_SHIFT at creation, carried
// through splits and mremap moves so linear_page_index of a page stays the same wherever the
// VMA goes; for a file VMA, the file offset of `start` in pages), the file it maps (vm_file,
// a reference: null for anonymous memory) and the anon_vma seam.
//
// anon_vma: the object anonymous folios' ->mapping points at, so the rmap can find every VMA
// mapping them (mm/rmap.c). Phase 1 only allocates it (anon_vma_prepare) and stores it in each
// new anonymous folio's mapping word; the rmap phase gives it its interval tree, chains and
// lock. It is set once, lazily, under the page-table lock with mmap_lock held for read (as
// __anon_vma_prepare does), so it is atomic here.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "arch/entry_bits.h"
#include "base/types.h"
#include "mm/vm_flags.h"

namespace dpmm::mm {

class File;
class Mm;
struct HugetlbResvMap;

// struct anon_vma, as a tree that follows fork (rmap.h): a VMA's anon_vma is created by
// anon_vma_prepare (no parent) or by fork (parent: the anon_vma of the VMA it was copied
// from). Every field is guarded by Kernel::anon_vma_lock(). Freed when its last reference
// goes: its mm's (dropped at exit) and one per child.
struct AnonVma {
  Mm* mm = nullptr;                 // the mm whose VMAs use it; null once that mm exited
  AnonVma* parent = nullptr;        // anon_vma->parent
  std::vector<AnonVma*> children;   // the anon_vmas forked from this one
  int refcount = 1;                 // anon_vma->refcount
};

struct Vma {
  VirtAddr start;
  VirtAddr end;  // exclusive
  VmFlags flags = VmFlags::kNone;
  arch::Prot page_prot = arch::Prot::kProtNone;  // vm_page_prot
  uint64_t pgoff = 0;                            // vm_pgoff
  std::shared_ptr<File> file;                    // vm_file (get_file on copy)
  // A private hugetlb mapping's reservation map, set on the VMA that made the reservation
  // (HPAGE_RESV_OWNER; hugetlb.h). Pieces split from it share it; a fork child has none.
  std::shared_ptr<HugetlbResvMap> resv_map;

  Vma() = default;
  Vma(VirtAddr s, VirtAddr e, VmFlags f, uint64_t off)
      : start(s), end(e), flags(f), page_prot(vm_get_page_prot(f)), pgoff(off) {}
  Vma(const Vma& o)
      : start(o.start), end(o.end), flags(o.flags), page_prot(o.page_prot), pgoff(o.pgoff),
        file(o.file), resv_map(o.resv_map), anon_vma_(o.anon_vma()) {}
  Vma& operator=(const Vma& o) {
    start = o.start;
    end = o.end;
    flags = o.flags;
    page_prot = o.page_prot;
    pgoff = o.pgoff;
    file = o.file;
    resv_map = o.resv_map;
    set_anon_vma(o.anon_vma());
    return *this;
  }

  uint64_t size() const { return end - start; }
  bool contains(VirtAddr a) const { return a >= start && a < end; }
  // vma_is_anonymous: no vm_ops. Every file VMA has vm_ops (the file's, or vma_init's dummy
  // ops when a driver's mmap sets none), shmem ones included (MAP_SHARED|MAP_ANONYMOUS is a
  // shmem file), so "anonymous" is "no file".
  bool is_anonymous() const { return file == nullptr; }
  // linear_page_index.
  uint64_t linear_page_index(VirtAddr a) const { return ((a - start) >> kPageShift) + pgoff; }

  AnonVma* anon_vma() const { return anon_vma_.load(std::memory_order_acquire); }
  void set_anon_vma(AnonVma* a) const { anon_vma_.store(a, std::memory_order_release); }

 private:
  mutable std::atomic<AnonVma*> anon_vma_{nullptr};
};

}  // namespace dpmm::mm
