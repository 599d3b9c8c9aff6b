#include "mm/shmem.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "mm/mm.h"
#include "mm/vma.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

uint64_t pages_for(uint64_t bytes) { return (bytes + kPageSize - 1) >> kPageShift; }

}  // namespace

Result<std::shared_ptr<ShmemFile>> ShmemFile::create(Kernel& kernel, uint64_t size,
                                                     std::string name) {
  if (size > kMaxFileSize)
    return make_error(Errno::kEINVAL, "shmem file of {:#x} bytes: beyond MAX_LFS_FILESIZE", size);
  std::shared_ptr<ShmemFile> f(new ShmemFile(kernel, std::move(name)));
  f->i_size_.store(size, std::memory_order_release);
  return f;
}

ShmemFile::ShmemFile(Kernel& kernel, std::string name)
    : File(FMode::kRead | FMode::kWrite, nullptr), kernel_(kernel), name_(std::move(name)) {
  mapping_ = std::make_unique<AddressSpace>(kernel, *this);
  set_mapping(mapping_.get());
}

ShmemFile::~ShmemFile() = default;

Result<page::Folio> ShmemFile::get_folio_locked(uint64_t index) {
  while (true) {
    if (std::optional<page::Folio> found = mapping_->get_folio(index)) {
      page::folio_lock(*found);
      // Truncated while we slept on the lock: look again.
      if (found->mapping_word() == mapping_->mapping_word()) return *found;
      page::folio_unlock(*found);
      page::folio_put(*found);
      continue;
    }
    page::Folio folio = TRY(kernel_.alloc_folio(Order(0)));  // zeroed
    folio.set_flag(page::PageFlag::kSwapBacked);  // __folio_set_swapbacked
    folio.set_flag(page::PageFlag::kUptodate);
    page::folio_lock(folio);  // shmem_add_to_page_cache adds it locked
    if (mapping_->add_folio(folio, index).is_ok()) return folio;
    // Another thread cached one first: use that.
    page::folio_unlock(folio);
    page::folio_put(folio);
  }
}

Result<page::Folio> ShmemFile::fault(uint64_t pgoff) {
  if (pgoff >= pages_for(size()))
    return make_error(Errno::kENXIO, "{}: page offset {:#x} is past EOF ({:#x} bytes)", name_,
                      pgoff, size());
  page::Folio folio = TRY(get_folio_locked(pgoff));
  // A truncation that lowered i_size before we locked the folio removes it next; refuse it.
  if (pgoff >= pages_for(size())) {
    page::folio_unlock(folio);
    page::folio_put(folio);
    return make_error(Errno::kENXIO, "{}: page offset {:#x} was truncated away", name_, pgoff);
  }
  return folio;
}

Status ShmemFile::mmap(Mm& mm, Vma& vma) {
  (void)mm;
  (void)vma;
  return ok();
}

Result<uint64_t> ShmemFile::pread(std::span<std::byte> out, uint64_t offset) {
  const uint64_t isize = size();
  if (offset >= isize) return uint64_t{0};
  const uint64_t n = std::min<uint64_t>(out.size(), isize - offset);
  for (uint64_t done = 0; done < n;) {
    const uint64_t pos = offset + done;
    const uint64_t in_page = pos & (kPageSize - 1);
    const uint64_t chunk = std::min<uint64_t>(n - done, kPageSize - in_page);
    if (std::optional<page::Folio> folio = mapping_->get_folio(pos >> kPageShift)) {
      const Pfn pfn = kernel_.page_to_pfn(folio->head());
      std::memcpy(out.data() + done, kernel_.page_bytes(pfn).data() + in_page, chunk);
      page::folio_put(*folio);
    } else {
      std::memset(out.data() + done, 0, chunk);  // a hole reads as zeros (SGP_READ)
    }
    done += chunk;
  }
  return n;
}

Result<uint64_t> ShmemFile::pwrite(std::span<const std::byte> in, uint64_t offset) {
  if (offset > kMaxFileSize || in.size() > kMaxFileSize - offset)
    return make_error(Errno::kEINVAL, "pwrite of {:#x} bytes at {:#x}: beyond MAX_LFS_FILESIZE",
                      in.size(), offset);
  MutexLocker guard(i_rwsem_);
  for (uint64_t done = 0; done < in.size();) {
    const uint64_t pos = offset + done;
    const uint64_t in_page = pos & (kPageSize - 1);
    const uint64_t chunk = std::min<uint64_t>(in.size() - done, kPageSize - in_page);
    Result<page::Folio> got = get_folio_locked(pos >> kPageShift);
    if (got.is_error()) {
      if (done == 0) return got.error();
      return done;  // a short write, as write(2) reports
    }
    page::Folio folio = *got;
    const Pfn pfn = kernel_.page_to_pfn(folio.head());
    std::memcpy(kernel_.page_bytes(pfn).data() + in_page, in.data() + done, chunk);
    folio.set_flag(page::PageFlag::kDirty);  // folio_mark_dirty (shmem_write_end)
    page::folio_unlock(folio);
    page::folio_put(folio);
    done += chunk;
    // generic_write_end: i_size grows as the bytes land.
    if (pos + chunk > size()) i_size_.store(pos + chunk, std::memory_order_release);
  }
  return uint64_t{in.size()};
}

Status ShmemFile::ftruncate(uint64_t length) {
  if (length > kMaxFileSize)
    return make_error(Errno::kEINVAL, "ftruncate to {:#x}: beyond MAX_LFS_FILESIZE", length);
  MutexLocker guard(i_rwsem_);
  const uint64_t old = size();
  i_size_.store(length, std::memory_order_release);
  if (length < old) truncate_pagecache(length);
  return ok();
}

void ShmemFile::truncate_pagecache(uint64_t new_size) {
  const uint64_t first = pages_for(new_size);  // the first page entirely past EOF
  unmap_mapping_range(*mapping_, first, UINT64_MAX);
  for (auto& [index, folio] : mapping_->folios_from(first)) {
    page::folio_lock(folio);
    if (folio.mapping_word() == mapping_->mapping_word()) {
      // A fault that looked the folio up before i_size dropped may have mapped it since.
      if (folio.mapcount() > 0) unmap_mapping_range(*mapping_, index, index);
      mapping_->remove_folio_locked(folio);
      page::folio_put(folio);  // the cache's reference
    }
    page::folio_unlock(folio);
    page::folio_put(folio);  // folios_from's
  }
  // truncate_inode_partial_folio: the bytes of the last page past EOF read as zeros.
  if ((new_size & (kPageSize - 1)) != 0) {
    if (std::optional<page::Folio> last = mapping_->get_folio(new_size >> kPageShift)) {
      const Pfn pfn = kernel_.page_to_pfn(last->head());
      const uint64_t from = new_size & (kPageSize - 1);
      std::memset(kernel_.page_bytes(pfn).data() + from, 0, kPageSize - from);
      page::folio_put(*last);
    }
  }
}

void unmap_mapping_range(AddressSpace& mapping, uint64_t first, uint64_t last) {
  Kernel& k = mapping.kernel();
  ReadLocker rmap(k.anon_vma_lock());
  for (Mm* mm : mapping.i_mmap_mms()) {
    mm->rmap_for_each_vma([&](const Vma& vma) {
      if (vma.file == nullptr || vma.file->mapping() != &mapping) return true;
      const uint64_t vpages = vma.size() >> kPageShift;
      const uint64_t lo = std::max(first, vma.pgoff);
      const uint64_t hi = std::min(last, vma.pgoff + vpages - 1);
      if (lo > hi) return true;
      const VirtAddr start = vma.start + ((lo - vma.pgoff) << kPageShift);
      const VirtAddr end = vma.start + ((hi - vma.pgoff + 1) << kPageShift);
      mm->zap_vma_range_rmap_locked(vma, start, end);
      return true;
    });
  }
}

Status shmem_zero_setup(Kernel& kernel, Vma& vma) {
  vma.file = TRY(ShmemFile::create(kernel, vma.size(), "dev/zero"));
  return ok();
}

}  // namespace dpmm::mm
