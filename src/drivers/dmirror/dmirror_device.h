// DmirrorDevice: one minor's device (struct dmirror_device, lib/test_hmm.c) -- its device
// memory in 256 MiB chunks, the allocator over them, and the pagemap ops the core calls.
//
// Chunks (dmirror_allocate_chunk): each a DevPagemap with ops = this device and owner = this
// device. PRIVATE: registered through DeviceMemory::register_pagemap, which under legacy is
// request_free_mem_region(256 MiB, "hmm_dmirror") + memremap_pages and under the dpas designs
// memremap_device_private_pagemap. COHERENT: memremap_pages on the device's special-purpose
// memory range [spm_addr, spm_addr + 256 MiB - 1] (one chunk at a time: a second one
// conflicts, as in the kernel).
//
// Free lists: free_pages (order 0) and free_folios (PMD order), threaded through
// page->zone_device_data exactly as the driver does; a chunk created for a large allocation
// is carved into PMD-order folios where they fit. A device page handed out is
// zone_device_folio_init'ed (refcount 1, locked) and, for PRIVATE memory, gets a backing
// system folio of the same order in zone_device_data (the data lives there); folio_free gives
// the backing folio back to the buddy and the device page back to its list (unless its chunk
// is being removed).
//
// Locks:
//   devmem_lock_ (Mutex, kDeviceMutex)  the chunk array. Never held across migration (see
//                                       remove_chunks) or while taking a folio lock.
//   lock_ (SpinLock, kLeaf)             calloc/cfree, free lists, chunk->remove. folio_free
//                                       runs from any folio_put, so it takes only this.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "devmem/dev_pagemap.h"
#include "drivers/dmirror/dmirror.h"
#include "drivers/dmirror/uapi.h"
#include "page/folio.h"
#include "phys/phys_range.h"

namespace dpmm::mm {
class Kernel;
}  // namespace dpmm::mm

namespace dpmm::dmirror {

class Dmirror;

// DEVMEM_CHUNK_SIZE and DEVMEM_CHUNKS_RESERVE.
inline constexpr uint64_t kDevmemChunkSize = uint64_t{256} << 20;
inline constexpr unsigned kDevmemChunksReserve = 16;

// Whether an allocation asks for a PMD-order folio (`is_large` in the driver).
enum class IsLarge : bool { kNo, kYes };

// struct dmirror_chunk.
struct DmirrorChunk {
  std::unique_ptr<devmem::DevPagemap> pagemap;
  DmirrorDevice* mdevice = nullptr;
  bool remove = false;  // guarded by mdevice->lock_
};

class DmirrorDevice final : public devmem::DevPagemapOps {
 public:
  // `spm` is the coherent device's memory (nullopt for a private device). `chunk_size` is the
  // bytes of each private chunk (DEVMEM_CHUNK_SIZE in the kernel; a multiple of 4 KiB).
  DmirrorDevice(migrate::DeviceKernel& dk, unsigned minor, DmirrorMemoryType type,
                std::optional<phys::PhysRange> spm, CopyEngine& engine,
                uint64_t chunk_size = kDevmemChunkSize);
  // REQUIRES: remove_chunks() ran (no chunk left).
  ~DmirrorDevice() override;
  DmirrorDevice(const DmirrorDevice&) = delete;
  DmirrorDevice& operator=(const DmirrorDevice&) = delete;

  unsigned minor() const { return minor_; }
  DmirrorMemoryType type() const { return type_; }
  bool is_private() const { return type_ == DmirrorMemoryType::kDevicePrivate; }
  migrate::DeviceKernel& device_kernel() const { return dk_; }
  mm::Kernel& kernel() const;
  CopyEngine& engine() const { return engine_; }
  // The pgmap owner (pagemap.owner = mdevice).
  const void* owner() const { return this; }
  DmirrorDeviceStats stats() const;
  // calloc - cfree (the counters only).
  uint64_t pages_in_use() const;
  // Where each registered chunk's memory is (its pagemap's range), in chunk order.
  std::vector<devmem::PagemapRange> chunk_ranges() const EXCLUDES(devmem_lock_);

  // dmirror_allocate_chunk(mdevice, ppage, is_large): registers a new chunk and puts its pages
  // on the free lists; with `take`, pops one page (or PMD folio) for the caller and counts it
  // in calloc. Returns that page, or null when `take` is kNo.
  //   ENOMEM  `take` and the matching list is still empty; errors of the registration
  enum class TakePage : bool { kNo, kYes };
  Result<page::Page*> allocate_chunk(TakePage take, IsLarge is_large) EXCLUDES(devmem_lock_);

  // dmirror_devmem_alloc_page(dmirror, is_large): a device page (or PMD folio) ready to be a
  // migration destination: refcount 1, locked, pagemap referenced; PRIVATE pages get a
  // zeroed backing system folio in zone_device_data. Null when neither the free lists nor a
  // new chunk (nor, for PRIVATE, the buddy) can provide one.
  page::Page* devmem_alloc_page(IsLarge is_large);

  // BACKING_PAGE(page): the page whose bytes hold `page`'s data (the backing system page of a
  // PRIVATE device page; the page itself otherwise).
  page::Page* backing_page(page::Page* page) const;
  // The bytes of the page BACKING_PAGE names.
  std::span<std::byte> page_data(page::Page* page) const;
  // The bytes of a CPU-addressable page (RAM, or this machine's coherent device memory).
  std::span<std::byte> cpu_page_bytes(page::Page* page) const;

  // dmirror_page_to_chunk(page)->mdevice for any dmirror device's page: the device that owns
  // `page`'s pagemap, or null when the pagemap is not a dmirror chunk.
  static DmirrorDevice* page_to_device(const page::Page* page);

  // dmirror_device_evict_chunk for every chunk (dmirror_fops_release): every allocated page
  // of the device migrates back to system memory, in every process that maps it. The chunks
  // stay registered.
  void evict_chunks() EXCLUDES(devmem_lock_);
  // dmirror_device_remove_chunks (HMM_DMIRROR_RELEASE and module exit): every chunk is marked
  // removed and its free pages dropped, evicted, unregistered (memunmap_pages waits for every
  // page to be freed) and its resource released. Later allocations create new chunks.
  void remove_chunks() EXCLUDES(devmem_lock_);

  // ---- dev_pagemap_ops (dmirror_devmem_ops) ----
  devmem::PagemapOps provided() const override {
    return devmem::PagemapOps::kFolioFree | devmem::PagemapOps::kMigrateToRam |
           devmem::PagemapOps::kFolioSplit;
  }
  // dmirror_devmem_free.
  void folio_free(page::Folio folio) override;
  // dmirror_devmem_fault (dmirror_migrate.cc).
  devmem::VmFaultCode migrate_to_ram(mm::VmFault& vmf) override;
  // dmirror_devmem_folio_split.
  void folio_split(page::Folio head, std::optional<page::Folio> tail) override;

 private:
  // dmirror_device_evict_chunk.
  void evict_chunk(DmirrorChunk& chunk);
  // container_of(pgmap, struct dmirror_chunk, pagemap): the chunk whose pagemap is `pgmap`,
  // or null once it is gone.
  DmirrorChunk* chunk_of(const devmem::DevPagemap* pgmap) const REQUIRES(lock_);
  void free_list_push(page::Page* page, IsLarge is_large) REQUIRES(lock_);
  page::Page* free_list_pop(IsLarge is_large) REQUIRES(lock_);

  migrate::DeviceKernel& dk_;
  const unsigned minor_;
  const DmirrorMemoryType type_;
  const std::optional<phys::PhysRange> spm_;
  const uint64_t chunk_size_;
  CopyEngine& engine_;

  mutable Mutex devmem_lock_{LockRank::kDeviceMutex};
  std::vector<std::unique_ptr<DmirrorChunk>> chunks_ GUARDED_BY(devmem_lock_);
  unsigned devmem_capacity_ GUARDED_BY(devmem_lock_) = 0;

  mutable SpinLock lock_{LockRank::kLeaf};
  // Every registered chunk by its pagemap, for chunk_of (the kernel's container_of needs no
  // lookup; dpmm's DevPagemap is its own object).
  std::vector<DmirrorChunk*> chunk_index_ GUARDED_BY(lock_);
  uint64_t calloc_ GUARDED_BY(lock_) = 0;
  uint64_t cfree_ GUARDED_BY(lock_) = 0;
  page::Page* free_pages_ GUARDED_BY(lock_) = nullptr;
  page::Page* free_folios_ GUARDED_BY(lock_) = nullptr;
};

}  // namespace dpmm::dmirror
