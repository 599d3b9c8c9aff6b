#include "drivers/dmirror/dmirror_device.h"

#include <algorithm>
#include <cassert>

#include <fmt/format.h>

#include "devmem/device_memory.h"
#include "drivers/dmirror/copy_engine.h"
#include "migrate/device_kernel.h"
#include "migrate/migrate_device.h"
#include "migrate/migrate_pfn.h"
#include "mm/kernel.h"
#include "page/folio_lock.h"

namespace dpmm::dmirror {

using migrate::MigratePfn;
using migrate::MigratePfnFlags;

DmirrorDevice::DmirrorDevice(migrate::DeviceKernel& dk, unsigned minor, DmirrorMemoryType type,
                             std::optional<phys::PhysRange> spm, CopyEngine& engine,
                             uint64_t chunk_size)
    : dk_(dk), minor_(minor), type_(type), spm_(spm), chunk_size_(chunk_size), engine_(engine) {
  assert(chunk_size > 0 && chunk_size % kPageSize == 0 && "a chunk is whole pages");
  assert((type == DmirrorMemoryType::kDeviceCoherent) == spm.has_value() &&
         "a coherent device needs its special-purpose memory range, a private one none");
}

DmirrorDevice::~DmirrorDevice() {
  MutexLocker g(devmem_lock_);
  assert(chunks_.empty() && "dmirror device destroyed with chunks: remove_chunks() first");
}

mm::Kernel& DmirrorDevice::kernel() const { return dk_.kernel(); }

std::vector<devmem::PagemapRange> DmirrorDevice::chunk_ranges() const {
  MutexLocker g(devmem_lock_);
  std::vector<devmem::PagemapRange> out;
  for (const auto& c : chunks_) out.push_back(c->pagemap->range());
  return out;
}

uint64_t DmirrorDevice::pages_in_use() const {
  SpinLocker g(lock_);
  return calloc_ - cfree_;
}

DmirrorDeviceStats DmirrorDevice::stats() const {
  DmirrorDeviceStats s;
  {
    MutexLocker g(devmem_lock_);
    s.nr_chunks = chunks_.size();
  }
  SpinLocker g(lock_);
  s.calloc = calloc_;
  s.cfree = cfree_;
  for (page::Page* p = free_pages_; p; p = static_cast<page::Page*>(p->zone_device_data())) {
    ++s.nr_free_pages;
  }
  for (page::Page* p = free_folios_; p; p = static_cast<page::Page*>(p->zone_device_data())) {
    ++s.nr_free_folios;
  }
  return s;
}

DmirrorChunk* DmirrorDevice::chunk_of(const devmem::DevPagemap* pgmap) const {
  for (DmirrorChunk* c : chunk_index_) {
    if (c->pagemap.get() == pgmap) return c;
  }
  return nullptr;
}

void DmirrorDevice::free_list_push(page::Page* page, IsLarge is_large) {
  page::Page*& head = is_large == IsLarge::kYes ? free_folios_ : free_pages_;
  page->set_zone_device_data(head);
  head = page;
}

page::Page* DmirrorDevice::free_list_pop(IsLarge is_large) {
  page::Page*& head = is_large == IsLarge::kYes ? free_folios_ : free_pages_;
  page::Page* page = head;
  if (page == nullptr) return nullptr;
  head = static_cast<page::Page*>(page->zone_device_data());
  calloc_ += is_large == IsLarge::kYes ? kernel().arch().pages_per_pmd().raw() : 1;
  return page;
}

Result<page::Page*> DmirrorDevice::allocate_chunk(TakePage take, IsLarge is_large) {
  devmem::DeviceMemory& dm = dk_.device_memory();
  auto chunk = std::make_unique<DmirrorChunk>();
  devmem::DevPagemapConfig c;
  c.ops = this;
  c.owner = owner();
  c.name = "hmm_dmirror";
  switch (type_) {
    case DmirrorMemoryType::kDevicePrivate:
      c.type = devmem::MemoryType::kDevicePrivate;
      c.nr_pages = PageCount::from_bytes_round_up(chunk_size_);
      break;
    case DmirrorMemoryType::kDeviceCoherent:
      c.type = devmem::MemoryType::kDeviceCoherent;
      c.range = spm_;
      break;
  }
  chunk->pagemap = std::make_unique<devmem::DevPagemap>(c);
  chunk->mdevice = this;
  DmirrorChunk* raw = chunk.get();
  devmem::DevPagemap& pgmap = *raw->pagemap;

  {
    // The kernel grows its chunk array by DEVMEM_CHUNKS_RESERVE and calls memremap_pages
    // under devmem_lock; so does this.
    MutexLocker g(devmem_lock_);
    if (chunks_.size() == devmem_capacity_) {
      devmem_capacity_ += kDevmemChunksReserve;
      chunks_.reserve(devmem_capacity_);
    }
    Status st = dm.register_pagemap(pgmap);
    if (st.is_error()) {
      return make_error(st.error().code(), "hmm_dmirror{}: cannot add a {} MiB chunk: {}", minor_,
                        chunk_size_ >> 20, st.error().message());
    }
    if (!pgmap.descriptors_reachable()) {
      // memmap_init_zone_device's first pfn_to_page would have read past the vmemmap: the
      // kernel crashes here; dpmm reports it and leaves nothing behind.
      Error why = *pgmap.vmemmap_fault();
      dm.unregister_pagemap(pgmap);
      return make_error(why.code(), "hmm_dmirror{}: chunk descriptors unreachable: {}", minor_,
                        why.message());
    }
    chunks_.push_back(std::move(chunk));
  }

  // The pages of the new chunk, looked up before taking the spinlock (the lookups are
  // lock-free and cost more than the list pushes).
  const devmem::PagemapRange& range = pgmap.range();
  const uint64_t npages = range.nr_pages().raw();
  const uint64_t pmd_nr = kernel().arch().pages_per_pmd().raw();
  std::vector<page::Page*> pages(npages);
  for (uint64_t n = 0; n < npages; ++n) {
    pages[n] = MUST(dm.pfn_or_offset_to_page(range.index(n)), "page of a registered chunk");
  }

  SpinLocker g(lock_);
  chunk_index_.push_back(raw);
  for (uint64_t n = 0; n < npages;) {
    const uint64_t index = range.index(n).raw_index();
    if (is_large == IsLarge::kYes && index % pmd_nr == 0 && n + pmd_nr <= npages) {
      free_list_push(pages[n], IsLarge::kYes);
      n += pmd_nr;
      continue;
    }
    free_list_push(pages[n], IsLarge::kNo);
    ++n;
  }
  if (take == TakePage::kNo) return static_cast<page::Page*>(nullptr);
  page::Page* page = free_list_pop(is_large);
  if (page == nullptr) {
    return make_error(Errno::kENOMEM, "hmm_dmirror{}: the new chunk has no free {} page",
                      minor_, is_large == IsLarge::kYes ? "PMD-order" : "order-0");
  }
  return page;
}

page::Page* DmirrorDevice::devmem_alloc_page(IsLarge is_large) {
  const Order order = is_large == IsLarge::kYes ? kernel().arch().pmd_order() : Order(0);
  // A private device is a fake: its data lives in a real system folio of the same order.
  std::optional<page::Folio> rfolio;
  if (is_private()) {
    Result<page::Folio> r = kernel().alloc_folio(order);
    if (r.is_error()) return nullptr;
    rfolio = *r;
  }
  page::Page* dpage = nullptr;
  {
    SpinLocker g(lock_);
    dpage = free_list_pop(is_large);
  }
  if (dpage == nullptr) {
    Result<page::Page*> r = allocate_chunk(TakePage::kYes, is_large);
    if (r.is_ok()) dpage = *r;
  }
  if (dpage == nullptr) {
    if (rfolio) page::folio_put(*rfolio);
    return nullptr;
  }
  Result<page::Folio> folio = devmem::zone_device_folio_init(dpage, *devmem::page_pgmap(dpage),
                                                             order);
  if (folio.is_error()) {
    // The pagemap died under us (its chunk is being removed): the page is lost to the
    // allocator as it would be in the kernel after its WARN.
    if (rfolio) page::folio_put(*rfolio);
    return nullptr;
  }
  dpage->set_zone_device_data(rfolio ? rfolio->head() : nullptr);
  return dpage;
}

page::Page* DmirrorDevice::backing_page(page::Page* page) const {
  if (!devmem::is_device_private_page(page)) return page;
  return static_cast<page::Page*>(page->zone_device_data());
}

std::span<std::byte> DmirrorDevice::cpu_page_bytes(page::Page* page) const {
  const devmem::DeviceMemory& dm = dk_.device_memory();
  return kernel().page_bytes(dm.page_to_pfn(page));
}

std::span<std::byte> DmirrorDevice::page_data(page::Page* page) const {
  page::Page* b = backing_page(page);
  assert(b != nullptr && "device-private page without a backing page");
  return cpu_page_bytes(b);
}

DmirrorDevice* DmirrorDevice::page_to_device(const page::Page* page) {
  if (!page->is_zone_device()) return nullptr;
  devmem::DevPagemap* pgmap = devmem::page_pgmap(page);
  return pgmap == nullptr ? nullptr : dynamic_cast<DmirrorDevice*>(pgmap->ops());
}

void DmirrorDevice::folio_free(page::Folio folio) {
  page::Page* page = folio.head();
  page::Page* rpage = backing_page(page);
  Order order = folio.order();
  if (rpage != page && rpage != nullptr) {
    // The backing folio goes back to the buddy: its only reference is the driver's.
    const page::Folio rfolio = page::page_folio(rpage);
    order = rfolio.order();
    page->set_zone_device_data(nullptr);
    page::folio_put(rfolio);
  }
  const IsLarge large = order.raw() > 0 ? IsLarge::kYes : IsLarge::kNo;
  SpinLocker g(lock_);
  // Back to the allocator unless the chunk is being removed.
  DmirrorChunk* chunk = chunk_of(page->pgmap());
  if (chunk == nullptr || chunk->remove) return;
  cfree_ += order.pages().raw();
  free_list_push(page, large);
}

void DmirrorDevice::folio_split(page::Folio head, std::optional<page::Folio> tail) {
  // dmirror_devmem_folio_split: the backing pages follow the device pages (kernel-baseline §9).
  page::Page* rpage = backing_page(head.head());
  if (rpage == nullptr) {
    if (tail) tail->head()->set_zone_device_data(nullptr);
    return;
  }
  const page::Folio rfolio = page::page_folio(rpage);
  if (!tail) {
    // The backing folio follows the device folio: order-0 pages, each with its own reference
    // and the mirror pointer its head carried.
    void* mirror = rpage->zone_device_data();
    const uint64_t nr = rfolio.nr_pages().raw();
    if (nr > 1) page::clear_compound_page(rfolio);
    for (uint64_t i = 0; i < nr; ++i) {
      page::Page* p = rpage + i;
      p->set_mapping_word(0);
      p->set_zone_device_data(mirror);
      if (i > 0) p->set_ref_count(1);
    }
    return;
  }
  // folio_pfn(tail) - folio_pfn(head): the descriptors of one folio are contiguous (the new
  // folio has no pagemap yet to translate its own index with).
  const uint64_t offset = static_cast<uint64_t>(tail->head() - head.head());
  tail->head()->set_zone_device_data(rpage + offset);
  tail->head()->set_mapping_word(head.head()->mapping_word());
  tail->head()->set_pgmap(head.head()->pgmap());
}

void DmirrorDevice::evict_chunk(DmirrorChunk& chunk) {
  mm::Kernel& k = kernel();
  const devmem::DeviceMemory& dm = dk_.device_memory();
  const devmem::PagemapRange& range = chunk.pagemap->range();
  const uint64_t npages = range.nr_pages().raw();
  std::vector<MigratePfn> src(npages);
  std::vector<MigratePfn> dst(npages);

  MUST(migrate::migrate_device_range(k, src, range.index(0), npages),
       "src holds npages entries");
  for (uint64_t i = 0; i < npages; ++i) {
    page::Page* spage = migrate::migrate_pfn_to_page(dm, src[i]);
    if (spage == nullptr || !src[i].is_migrate()) continue;
    assert((devmem::is_device_private_page(spage) || devmem::is_device_coherent_page(spage)) &&
           "evicting a page that is not device memory");
    Order order = page::page_folio(spage).order();
    page::Page* data = backing_page(spage);
    page::Folio dfolio = [&] {
      if (src[i].has(MigratePfnFlags::kCompound)) {
        // The kernel's driver cannot split here either ("TODO Support splitting here"): a
        // failed large allocation is fatal there as well.
        return MUST(k.alloc_folio(order), "large system folio for eviction");
      }
      order = Order(0);
      // alloc_page(GFP_HIGHUSER_MOVABLE | __GFP_NOFAIL).
      return MUST(k.alloc_folio(Order(0)), "__GFP_NOFAIL system page for eviction");
    }();
    page::folio_lock(dfolio);
    dst[i] = MigratePfn::migrate_pfn(dm.page_to_pfn_or_offset(dfolio.head()));
    if (src[i].has(MigratePfnFlags::kWrite)) dst[i].set(MigratePfnFlags::kWrite);
    if (order.raw() > 0) dst[i].set(MigratePfnFlags::kCompound);
    // folio_copy.
    const Pfn dpfn = dm.folio_pfn(dfolio);
    for (uint64_t j = 0; j < order.pages().raw(); ++j) {
      engine_.copy(k.page_bytes(dpfn + PageCount(j)), cpu_page_bytes(data + j));
    }
  }
  migrate::migrate_device_pages(k, src, dst);
  migrate::migrate_device_finalize(k, src, dst);
}

void DmirrorDevice::evict_chunks() {
  // The kernel walks devmem_chunks without devmem_lock here; dpmm takes a copy under it so
  // that migration (which takes folio locks) never runs under the mutex.
  std::vector<DmirrorChunk*> chunks;
  {
    MutexLocker g(devmem_lock_);
    for (const auto& c : chunks_) chunks.push_back(c.get());
  }
  for (DmirrorChunk* c : chunks) evict_chunk(*c);
}

void DmirrorDevice::remove_chunks() {
  // The kernel holds devmem_lock across the whole removal. dpmm takes the chunks out of the
  // array under it and evicts and unregisters them after dropping it, because eviction takes
  // folio locks (ranked below the device mutex) and allocation takes devmem_lock with folio
  // locks held. An allocation racing with RELEASE therefore creates a new chunk instead of
  // waiting; it would create one right after the kernel's removal too.
  std::vector<std::unique_ptr<DmirrorChunk>> victims;
  {
    MutexLocker g(devmem_lock_);
    victims = std::move(chunks_);
    chunks_.clear();
    devmem_capacity_ = 0;
    SpinLocker s(lock_);
    for (const auto& c : victims) c->remove = true;  // + dmirror_remove_free_pages
    free_pages_ = nullptr;
    free_folios_ = nullptr;
  }
  devmem::DeviceMemory& dm = dk_.device_memory();
  for (auto& c : victims) {
    evict_chunk(*c);
    // memunmap_pages (and release_mem_region for PRIVATE under legacy): waits for every page.
    dm.unregister_pagemap(*c->pagemap);
    SpinLocker s(lock_);
    chunk_index_.erase(std::find(chunk_index_.begin(), chunk_index_.end(), c.get()));
  }
}

}  // namespace dpmm::dmirror
