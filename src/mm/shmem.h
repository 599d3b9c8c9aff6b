// ShmemFile: an in-memory tmpfs/shmem file whose pages are RAM folios in its page cache
// (mm/shmem.c: shmem_file_setup, shmem_get_folio_gfp, shmem_fault, shmem_file_read_iter,
// shmem_file_write_iter, shmem_setattr; mm/truncate.c truncate_pagecache; mm/memory.c
// unmap_mapping_range).
//
// create(k, size) is open("/tmp", O_TMPFILE | O_RDWR) followed by ftruncate(size): a file
// with FMODE_READ | FMODE_WRITE, no pages, i_size = size. Pages appear on first write
// (pwrite) or first fault (shmem_fault allocates for reads too: SGP_CACHE), zeroed, with
// PG_swapbacked and PG_uptodate; pwrite and write faults through MAP_SHARED mark them dirty.
// pread of a hole reads zeros without allocating (SGP_READ).
//
// ftruncate down: the size drops first, then every mapping of the cut pages goes (shared
// PTEs and, as the kernel's even_cows, private COW copies: unmap_mapping_range), then each
// cut folio is locked, unmapped again if a fault mapped it meanwhile, and removed from the
// cache; the bytes of the last partial page past the new size are zeroed. A later access
// past EOF through a mapping is SIGBUS (shmem_fault's VM_FAULT_SIGBUS).
//
// Locking: i_rwsem (a Mutex outside the rank checks: the kernel takes it before mmap_lock,
// which dpmm's ranks have no slot for) serialises pwrite and ftruncate; i_size is atomic
// (i_size_read); faults serialise with truncation through the folio lock and the mapping
// word (re-checked under the folio lock).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/lock.h"
#include "base/result.h"
#include "mm/address_space.h"
#include "mm/file.h"
#include "mm/kernel.h"

namespace dpmm::mm {

class ShmemFile final : public File {
 public:
  // open(O_TMPFILE | O_RDWR) + ftruncate(size). EINVAL for a size beyond MAX_LFS_FILESIZE.
  static Result<std::shared_ptr<ShmemFile>> create(Kernel& kernel, uint64_t size,
                                                   std::string name = "shmem");
  ~ShmemFile() override;

  std::string name() const override { return name_; }
  Kernel& kernel() const { return kernel_; }
  AddressSpace& page_cache() { return *mapping_; }
  // i_size_read.
  uint64_t size() const { return i_size_.load(std::memory_order_acquire); }

  // pread: up to out.size() bytes from `offset`, fewer at EOF (0 at or past it).
  Result<uint64_t> pread(std::span<std::byte> out, uint64_t offset);
  // pwrite: every byte, extending the file as needed. ENOMEM when no page is left (bytes
  // written before that stay); EINVAL when the end passes MAX_LFS_FILESIZE.
  Result<uint64_t> pwrite(std::span<const std::byte> in, uint64_t offset);
  // ftruncate. EINVAL beyond MAX_LFS_FILESIZE (the kernel's negative length).
  Status ftruncate(uint64_t length);

  // shmem_mmap: nothing to prepare (no huge pages, no seals).
  Status mmap(Mm& mm, Vma& vma) override;
  // shmem_fault: the folio at `pgoff`, allocated for a hole; referenced and locked.
  // ENXIO (SIGBUS) at or past EOF; ENOMEM when no page is left.
  Result<page::Folio> fault(uint64_t pgoff) override;

  // MAX_LFS_FILESIZE on 64-bit.
  static constexpr uint64_t kMaxFileSize = uint64_t{INT64_MAX};

 private:
  ShmemFile(Kernel& kernel, std::string name);
  // shmem_get_folio(SGP_CACHE): the folio at `index`, allocating a zeroed one for a hole.
  // Returns it referenced and locked, still in the cache.
  Result<page::Folio> get_folio_locked(uint64_t index);
  // truncate_pagecache from `new_size` on (i_rwsem held, i_size already lowered).
  void truncate_pagecache(uint64_t new_size);

  Kernel& kernel_;
  std::string name_;
  std::unique_ptr<AddressSpace> mapping_;
  std::atomic<uint64_t> i_size_{0};
  Mutex i_rwsem_{LockRank::kNone};
};

// unmap_mapping_range (mm/memory.c) with even_cows: removes every PTE of every VMA mapping
// page offsets [first, last] of `mapping` (MMU_NOTIFY_CLEAR), private COW copies included.
// Runs as an rmap walk: takes the anon_vma lock for read, no mmap_lock.
void unmap_mapping_range(AddressSpace& mapping, uint64_t first, uint64_t last);

// shmem_zero_setup (mm/shmem.c): MAP_SHARED | MAP_ANONYMOUS is a private shmem file of the
// mapping's size ("dev/zero") behind the VMA; vm_pgoff 0. ENOMEM never (no page is
// allocated here); the VMA takes the only reference.
Status shmem_zero_setup(Kernel& kernel, Vma& vma);

}  // namespace dpmm::mm
