// The sparse memmap: descriptors for memory sections (mm/sparse.c, include/linux/mmzone.h).
//
// Physical memory is cut into sections of 2^section_size_bits bytes (128 MiB = 32768 pages on
// both modelled arches). A section present in the memmap owns an array of descriptors, one per
// page; `mem_section` is a two-level table (SPARSEMEM_EXTREME: roots of
// SECTIONS_PER_ROOT = PAGE_SIZE / sizeof(struct mem_section) = 256 sections) filled on demand.
//
// The vmemmap window. On the real machines the descriptors sit in one virtual array (the
// vmemmap) that is only as large as the arch sized it (arch::VmemmapWindow). dpmm keeps the
// window as the bound of every lookup: a PFN outside it is reported, never resolved (on an
// arm64 machine whose vmemmap covers the linear map only, this is the seed's
// "pfn_to_page() reads beyond the end of vmemmap"), and no section outside it can be added.
//
// Descriptor arrays are anonymous MAP_NORESERVE mappings: untouched descriptors cost no memory,
// so adding the sections of a very large node is cheap and descriptors are initialised lazily
// (deferred struct page init, zone.h). A descriptor that was never initialised reads as zeros.
//
// Concurrency: lookups are lock-free (acquire loads of the root and section pointers); adding
// and removing sections take the memmap mutex (LockRank::kMemmap). As in the kernel, removing
// a section while someone may still look it up is the caller's bug (memunmap_pages waits for
// every page reference first).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "arch/arch.h"
#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "page/page.h"

namespace dpmm::page {

class Memmap {
 public:
  // REQUIRES: params.section_size_bits > kPageShift; the section count fits kSectionsWidth.
  Memmap(const arch::ArchParams& params, arch::VmemmapWindow window);
  ~Memmap();
  Memmap(const Memmap&) = delete;
  Memmap& operator=(const Memmap&) = delete;

  const arch::ArchParams& params() const { return params_; }
  const arch::VmemmapWindow& window() const { return window_; }
  PageCount pages_per_section() const { return PageCount(uint64_t{1} << pfn_section_shift_); }
  // pfn_to_section_nr / section_nr_to_pfn.
  uint64_t pfn_to_section_nr(Pfn pfn) const { return pfn.raw() >> pfn_section_shift_; }
  Pfn section_nr_to_pfn(uint64_t nr) const { return Pfn(nr << pfn_section_shift_); }
  // Number of sections the physical address space can have (NR_MEM_SECTIONS).
  uint64_t nr_mem_sections() const { return nr_mem_sections_; }

  // sparse_add_section: gives the sections covering [start, start + nr) descriptor arrays.
  // REQUIRES: start and nr section-aligned.
  //   EINVAL  unaligned or empty range
  //   ERANGE  a section lies outside the vmemmap window or beyond MAX_PHYSMEM_BITS
  //   EEXIST  a section already has a memmap (nothing is added)
  //   ENOMEM  mmap failed (sections added by this call are removed again)
  Status add_sections(Pfn start, PageCount nr);
  // sparse_remove_section: unmaps the descriptor arrays. EINVAL unaligned, ENOENT a section
  // has no memmap (nothing is removed).
  Status remove_sections(Pfn start, PageCount nr);

  // The window check alone (the arch's bound on descriptor lookups).
  bool in_window(Pfn pfn) const { return window_.contains(pfn) && pfn < max_pfn_; }
  // pfn_valid: inside the window and in a section with a memmap.
  bool pfn_valid(Pfn pfn) const;
  bool section_present(uint64_t section_nr) const;

  // pfn_to_page, checked:
  //   EFAULT  outside the vmemmap window ("pfn_to_page() reads beyond the end of vmemmap")
  //   ENOENT  inside the window, in a section with no memmap (a hole)
  // The descriptor may not be initialised yet (deferred init); that is the caller's concern.
  Result<Page*> pfn_to_page(Pfn pfn) const;
  // The hot-path variant. REQUIRES: pfn_valid(pfn) (asserted in debug builds).
  Page* pfn_to_page_unchecked(Pfn pfn) const;

  // page_to_pfn, checked: EINVAL if `page` is not an initialised descriptor of this memmap
  // (for example a device-private page of the dpas designs, which has no PFN).
  Result<Pfn> page_to_pfn(const Page* page) const;
  // REQUIRES: `page` is an initialised descriptor of this memmap (asserted in debug builds).
  Pfn page_to_pfn_unchecked(const Page* page) const;

  // __init_single_page for the descriptor of `pfn`, with the section filled in from the pfn.
  // REQUIRES: pfn_valid(pfn); nobody else uses the descriptor.
  Page* init_page(Pfn pfn, ZoneType zone, unsigned nid, FolioReleaser* releaser);

  // Accounting for reports.
  uint64_t nr_present_sections() const { return nr_present_.load(std::memory_order_relaxed); }
  // Bytes of descriptor arrays mapped (virtual; free until touched).
  uint64_t descriptor_bytes_reserved() const {
    return nr_present_sections() * pages_per_section().raw() * sizeof(Page);
  }
  // Bytes of descriptors initialised so far, cumulative (what the kernel would have touched).
  uint64_t descriptor_bytes_initialized() const {
    return nr_initialized_.load(std::memory_order_relaxed) * sizeof(Page);
  }

 private:
  // struct mem_section: the section's descriptor array, or null.
  struct MemSection {
    std::atomic<Page*> map{nullptr};
  };
  static constexpr uint64_t kSectionsPerRoot = 256;

  MemSection* section(uint64_t nr) const;  // null if its root was never allocated
  MemSection& section_alloc_root(uint64_t nr) REQUIRES(mutex_);
  void unmap_section_locked(uint64_t nr) REQUIRES(mutex_);

  const arch::ArchParams params_;
  const arch::VmemmapWindow window_;
  const unsigned pfn_section_shift_;  // PFN_SECTION_SHIFT
  const uint64_t nr_mem_sections_;
  const Pfn max_pfn_;                 // 1 << (MAX_PHYSMEM_BITS - PAGE_SHIFT)
  const uint64_t section_bytes_;      // bytes of one section's descriptor array

  mutable Mutex mutex_{LockRank::kMemmap};
  // Roots are published with release stores and read lock-free.
  std::unique_ptr<std::atomic<MemSection*>[]> roots_;
  uint64_t nr_roots_;
  std::atomic<uint64_t> nr_present_{0};
  std::atomic<uint64_t> nr_initialized_{0};
};

}  // namespace dpmm::page
