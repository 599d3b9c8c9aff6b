#include "page/memmap.h"

#include <sys/mman.h>

#include <algorithm>
#include <cassert>

#include "base/bits.h"

namespace dpmm::page {

Memmap::Memmap(const arch::ArchParams& params, arch::VmemmapWindow window)
    : params_(params),
      window_(window),
      pfn_section_shift_(params.section_size_bits - kPageShift),
      nr_mem_sections_(uint64_t{1} << (params.max_physmem_bits - params.section_size_bits)),
      max_pfn_(Pfn(uint64_t{1} << (params.max_physmem_bits - kPageShift))),
      section_bytes_((uint64_t{1} << (params.section_size_bits - kPageShift)) * sizeof(Page)) {
  assert(params.section_size_bits > kPageShift && "sections smaller than a page");
  assert(bits::fits(nr_mem_sections_ - 1, kSectionsWidth) &&
         "section numbers do not fit the flags word");
  nr_roots_ = (nr_mem_sections_ + kSectionsPerRoot - 1) / kSectionsPerRoot;
  roots_ = std::make_unique<std::atomic<MemSection*>[]>(nr_roots_);
}

Memmap::~Memmap() {
  MutexLocker guard(mutex_);
  for (uint64_t r = 0; r < nr_roots_; ++r) {
    MemSection* root = roots_[r].load(std::memory_order_relaxed);
    if (root == nullptr) continue;
    for (uint64_t i = 0; i < kSectionsPerRoot; ++i) {
      if (root[i].map.load(std::memory_order_relaxed) != nullptr) {
        unmap_section_locked(r * kSectionsPerRoot + i);
      }
    }
    delete[] root;
  }
}

Memmap::MemSection* Memmap::section(uint64_t nr) const {
  if (nr >= nr_mem_sections_) return nullptr;
  MemSection* root = roots_[nr / kSectionsPerRoot].load(std::memory_order_acquire);
  if (root == nullptr) return nullptr;
  return &root[nr % kSectionsPerRoot];
}

Memmap::MemSection& Memmap::section_alloc_root(uint64_t nr) {
  std::atomic<MemSection*>& slot = roots_[nr / kSectionsPerRoot];
  MemSection* root = slot.load(std::memory_order_relaxed);
  if (root == nullptr) {
    root = new MemSection[kSectionsPerRoot];
    slot.store(root, std::memory_order_release);
  }
  return root[nr % kSectionsPerRoot];
}

void Memmap::unmap_section_locked(uint64_t nr) {
  MemSection* s = section(nr);
  assert(s != nullptr && "unmapping a section with no root");
  Page* map = s->map.exchange(nullptr, std::memory_order_acq_rel);
  assert(map != nullptr && "unmapping a section with no memmap");
  munmap(map, section_bytes_);
  nr_present_.fetch_sub(1, std::memory_order_relaxed);
}

bool Memmap::section_present(uint64_t section_nr) const {
  const MemSection* s = section(section_nr);
  return s != nullptr && s->map.load(std::memory_order_acquire) != nullptr;
}

Status Memmap::add_sections(Pfn start, PageCount nr) {
  const uint64_t per = pages_per_section().raw();
  if (nr.raw() == 0 || start.raw() % per != 0 || nr.raw() % per != 0) {
    return make_error(Errno::kEINVAL,
                      "memmap: [{}, +{}) is not a non-empty run of whole {}-page sections", start,
                      nr.raw(), per);
  }
  const Pfn end = start + nr;
  if (!in_window(start) || !in_window(end - PageCount(1))) {
    return make_error(Errno::kERANGE,
                      "memmap: [{}, {}) is outside the vmemmap window [{}, {}) of {} (or beyond "
                      "MAX_PHYSMEM_BITS={}); its descriptors would lie beyond the end of vmemmap",
                      start, end, window_.start, window_.end, arch::arch_name(params_.kind),
                      params_.max_physmem_bits);
  }
  const uint64_t first = pfn_to_section_nr(start);
  const uint64_t last = pfn_to_section_nr(end - PageCount(1));
  MutexLocker guard(mutex_);
  for (uint64_t s = first; s <= last; ++s) {
    if (section_present(s)) {
      return make_error(Errno::kEEXIST, "memmap: section {} ({}) already has a memmap", s,
                        section_nr_to_pfn(s));
    }
  }
  for (uint64_t s = first; s <= last; ++s) {
    void* mem = mmap(nullptr, section_bytes_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      for (uint64_t u = first; u < s; ++u) unmap_section_locked(u);
      return make_error(Errno::kENOMEM, "memmap: cannot map {} bytes of descriptors for section {}",
                        section_bytes_, s);
    }
    section_alloc_root(s).map.store(static_cast<Page*>(mem), std::memory_order_release);
    nr_present_.fetch_add(1, std::memory_order_relaxed);
  }
  return ok();
}

Status Memmap::remove_sections(Pfn start, PageCount nr) {
  const uint64_t per = pages_per_section().raw();
  if (nr.raw() == 0 || start.raw() % per != 0 || nr.raw() % per != 0) {
    return make_error(Errno::kEINVAL,
                      "memmap: [{}, +{}) is not a non-empty run of whole {}-page sections", start,
                      nr.raw(), per);
  }
  const uint64_t first = pfn_to_section_nr(start);
  const uint64_t last = pfn_to_section_nr(start + nr - PageCount(1));
  MutexLocker guard(mutex_);
  for (uint64_t s = first; s <= last; ++s) {
    if (!section_present(s)) {
      return make_error(Errno::kENOENT, "memmap: section {} ({}) has no memmap to remove", s,
                        section_nr_to_pfn(s));
    }
  }
  for (uint64_t s = first; s <= last; ++s) unmap_section_locked(s);
  return ok();
}

bool Memmap::pfn_valid(Pfn pfn) const {
  return in_window(pfn) && section_present(pfn_to_section_nr(pfn));
}

Result<Page*> Memmap::pfn_to_page(Pfn pfn) const {
  if (!in_window(pfn)) {
    return make_error(Errno::kEFAULT,
                      "pfn_to_page({}) reads beyond the end of vmemmap: the {} vmemmap window is "
                      "[{}, {})",
                      pfn, arch::arch_name(params_.kind), window_.start,
                      std::min(window_.end, max_pfn_));
  }
  const uint64_t nr = pfn_to_section_nr(pfn);
  const MemSection* s = section(nr);
  Page* map = s == nullptr ? nullptr : s->map.load(std::memory_order_acquire);
  if (map == nullptr) {
    return make_error(Errno::kENOENT, "pfn_to_page({}): section {} has no memmap (a hole)", pfn,
                      nr);
  }
  return map + (pfn - section_nr_to_pfn(nr)).raw();
}

Page* Memmap::pfn_to_page_unchecked(Pfn pfn) const {
  assert(pfn_valid(pfn) && "pfn_to_page_unchecked of an invalid pfn");
  const uint64_t nr = pfn_to_section_nr(pfn);
  Page* map = section(nr)->map.load(std::memory_order_acquire);
  return map + (pfn.raw() & (pages_per_section().raw() - 1));
}

Result<Pfn> Memmap::page_to_pfn(const Page* page) const {
  if (page == nullptr) return make_error(Errno::kEINVAL, "page_to_pfn(NULL)");
  const uint64_t nr = page->section_nr();
  const MemSection* s = section(nr);
  const Page* map = s == nullptr ? nullptr : s->map.load(std::memory_order_acquire);
  if (map == nullptr || page < map || page >= map + pages_per_section().raw()) {
    return make_error(Errno::kEINVAL,
                      "page_to_pfn({}): not an initialised descriptor of the memmap (section {} "
                      "from its flags); a device-private page of the dpas designs has no pfn",
                      static_cast<const void*>(page), nr);
  }
  return section_nr_to_pfn(nr) + PageCount(static_cast<uint64_t>(page - map));
}

Pfn Memmap::page_to_pfn_unchecked(const Page* page) const {
  const uint64_t nr = page->section_nr();
  const Page* map = section(nr)->map.load(std::memory_order_acquire);
  assert(map != nullptr && page >= map && page < map + pages_per_section().raw() &&
         "page_to_pfn_unchecked of a page outside the memmap");
  return section_nr_to_pfn(nr) + PageCount(static_cast<uint64_t>(page - map));
}

Page* Memmap::init_page(Pfn pfn, ZoneType zone, unsigned nid, FolioReleaser* releaser) {
  Page* slot = pfn_to_page_unchecked(pfn);
  nr_initialized_.fetch_add(1, std::memory_order_relaxed);
  return init_single_page(slot, PageLinks{.zone = zone,
                                          .nid = nid,
                                          .section = pfn_to_section_nr(pfn),
                                          .releaser = releaser});
}

}  // namespace dpmm::page
