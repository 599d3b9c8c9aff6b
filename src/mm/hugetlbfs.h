// HugetlbfsFile: a hugetlbfs inode whose page cache holds huge pool folios (fs/hugetlbfs/
// inode.c: hugetlbfs_file_mmap, hugetlbfs_setattr, hugetlb_vmtruncate, hugetlb_vmdelete_list,
// remove_inode_hugepages, hugetlbfs_evict_inode, hugetlbfs_read_iter, hugetlb_file_setup;
// mm/hugetlb.c: hugetlb_reserve_pages / hugetlb_unreserve_pages for shared mappings,
// region_chg / region_add / region_del on the inode's resv_map, hugetlb_add_to_page_cache,
// hugetlb_add_file_rmap).
//
// create(k, size) is memfd_create(name, MFD_HUGETLB) followed by ftruncate(size), or an
// O_TMPFILE on a hugetlbfs mount of the default page size: FMODE_READ | FMODE_WRITE, no pages,
// i_size = size (a multiple of the huge page size, else EINVAL). MAP_SHARED|MAP_ANONYMOUS|
// MAP_HUGETLB makes one of these behind the VMA (hugetlb_file_setup's unlinked file).
//
// Page cache: one pool folio per huge page, at the base-page index of its first page (a
// multiple of 512), holding one reference (the cache's); its mapping word names the cache, so
// it is not anon. Shared mappings fault it in (hugetlb_no_page: find it, or allocate, zero and
// add it); every mapper and every fork child maps that one folio, writable where the VMA is
// (no COW). Private mappings map a cached folio read-only and copy it to a private anon folio
// on write (hugetlb_wp); a hole in a private mapping gets a private anon folio, never cached.
// munmap and exit leave the folios in the cache; only truncation and the inode's end free them.
//
// Reservations of shared mappings belong to the inode (its resv_map, `regions_` here): the
// set of huge-page indices that are reserved or instantiated. mmap of [from, to) without
// MAP_NORESERVE reserves the indices not yet in the set (hugetlb_acct_memory; ENOMEM when the
// pool cannot promise them) and adds them all (region_chg + region_add); a fault that
// instantiates a page uses the reservation when its index is in the set, else takes an
// unreserved free page, and adds the index (vma_commit_reservation's region_add). So the
// outstanding reservations are |regions_| - |cached folios|. Truncation (and the inode's end)
// removes the indices past the new size and gives back those that were never instantiated
// (hugetlb_unreserve_pages: region_del - freed). Private mappings keep their own resv map
// (hugetlb.h).
//
// Locking: i_rwsem (a Mutex outside the rank checks, as ShmemFile's) serialises ftruncate;
// i_size is atomic; faults and truncation of one huge page serialise on the hstate's fault
// mutex (remove_inode_hugepages takes hugetlb_fault_mutex per index); regions_ sit under
// resv_mutex_.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>

#include "base/lock.h"
#include "base/result.h"
#include "mm/address_space.h"
#include "mm/file.h"
#include "mm/kernel.h"

namespace dpmm::mm {

class HugetlbfsFile final : public File {
 public:
  // memfd_create(MFD_HUGETLB) + ftruncate(size). EINVAL when size is not a multiple of the
  // huge page size or passes MAX_LFS_FILESIZE.
  static Result<std::shared_ptr<HugetlbfsFile>> create(Kernel& kernel, uint64_t size,
                                                       std::string name = "hugetlbfs");
  // hugetlbfs_evict_inode: every cached folio goes back to the pool, every outstanding
  // reservation of the inode is given back. REQUIRES: no VMA maps the file.
  ~HugetlbfsFile() override;

  std::string name() const override { return name_; }
  Kernel& kernel() const { return kernel_; }
  AddressSpace& page_cache() { return *mapping_; }
  // i_size_read.
  uint64_t size() const { return i_size_.load(std::memory_order_acquire); }

  // hugetlbfs_read_iter: up to out.size() bytes from `offset`, fewer at EOF; holes read as
  // zeros without allocating.
  Result<uint64_t> pread(std::span<std::byte> out, uint64_t offset);
  // hugetlbfs has no write file operation: write(2) and pwrite(2) fail with EINVAL (the VFS
  // answer for a file without ->write_iter). Data goes in through mappings.
  Result<uint64_t> pwrite(std::span<const std::byte> in, uint64_t offset);
  // hugetlbfs_setattr(ATTR_SIZE). EINVAL unless `length` is a multiple of the huge page size.
  // Shrinking (hugetlb_vmtruncate) lowers i_size, unmaps the cut huge pages from every VMA
  // (shared ones and private COW copies: hugetlb_vmdelete_list), removes their folios from the
  // cache (back to the pool once unmapped) and gives back the inode's reservations past the
  // new size that were never used. Growing only sets i_size.
  Status ftruncate(uint64_t length);

  // hugetlbfs_file_mmap: EINVAL when vm_pgoff is not huge-page aligned; sets VM_HUGETLB |
  // VM_DONTEXPAND and reserves (hugetlb_reserve_pages: the inode's regions for a shared VMA,
  // a resv map owned by the VMA for a private one; nothing with VM_NORESERVE; ENOMEM when the
  // pool cannot promise the pages). A writable mapping past EOF extends i_size to its end.
  Status mmap(Mm& mm, Vma& vma) override;
  // Hugetlb VMAs fault through hugetlb_fault, never through vm_ops->fault: ENXIO.
  Result<page::Folio> fault(uint64_t pgoff) override;

  // ---- used by hugetlb_fault (hugetlb.cc); REQUIRES the hstate fault mutex ----
  // filemap_lock_hugetlb_folio: the cached folio of huge page `idx`, with a reference.
  std::optional<page::Folio> find_folio(uint64_t idx);
  // Whether huge page `idx` holds a reservation of the inode (region_chg == 0).
  bool has_reservation(uint64_t idx) const;
  // hugetlb_add_to_page_cache + vma_commit_reservation: a fresh zeroed folio (the caller's
  // reference) enters the cache at huge page `idx` (the cache takes its own reference) and
  // `idx` joins the regions.
  void add_folio(page::Folio folio, uint64_t idx);

  // For tests: the inode's region map size (reserved or instantiated huge pages).
  uint64_t nr_regions() const;
  // For tests: the number of cached huge folios.
  uint64_t nr_cached() { return mapping_->nr_pages(); }

  // MAX_LFS_FILESIZE on 64-bit.
  static constexpr uint64_t kMaxFileSize = uint64_t{INT64_MAX};

 private:
  HugetlbfsFile(Kernel& kernel, std::string name);
  // remove_inode_hugepages from huge page `first` on, then hugetlb_unreserve_pages.
  void remove_inode_hugepages(uint64_t first);

  Kernel& kernel_;
  std::string name_;
  std::unique_ptr<AddressSpace> mapping_;
  std::atomic<uint64_t> i_size_{0};
  Mutex i_rwsem_{LockRank::kNone};
  // resv_map->lock, held across region_chg + hugetlb_acct_memory + region_add (the kernel's
  // adds_in_progress protocol does the same job); outside the rank checks as i_rwsem_.
  mutable Mutex resv_mutex_{LockRank::kNone};
  std::set<uint64_t> regions_ GUARDED_BY(resv_mutex_);
};

// The hugetlbfs file behind a VMA, or null when the VMA maps something else (or nothing).
HugetlbfsFile* vma_hugetlbfs_file(const Vma& vma);

}  // namespace dpmm::mm
