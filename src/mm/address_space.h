// AddressSpace: a file's page cache and its i_mmap (struct address_space,
// include/linux/fs.h; mm/filemap.c filemap_get_folio, filemap_add_folio,
// filemap_remove_folio).
//
// Page cache (i_pages): page offset -> folio, small folios only, except a hugetlbfs inode's
// huge pool folios, each at the base-page index of its first page (hugetlbfs.h). Rules, as
// the kernel's:
//   - the cache holds one reference on each folio it contains (filemap_add_folio's
//     folio_ref_add), dropped when the folio is removed (filemap_remove_folio + folio_put);
//   - a cached folio's mapping word points at this AddressSpace with no tag bits (so
//     folio_test_anon is false), its index is the page offset; removal clears the mapping
//     word, which is how a fault that raced with truncation notices (it re-checks under the
//     folio lock);
//   - removal REQUIRES the folio lock and no PTE left mapping the folio.
// The i_pages lock (xa_lock) is a leaf lock here: nothing else is taken under it, folio
// references are taken with folio_try_get inside and put outside.
//
// i_mmap: the mms with at least one VMA mapping this file, with the number of such VMAs. The
// kernel keeps an interval tree of VMAs under i_mmap_rwsem; dpmm keeps the mms and lets
// rmap_walk_file look at each mm's VMAs. It is guarded by Kernel::anon_vma_lock(), which
// every change to any VMA set already holds for write (see rmap.h and docs/mm.md), and
// which stands for every i_mmap_rwsem too.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "mm/kernel.h"
#include "page/folio.h"

namespace dpmm::mm {

class File;
class Mm;

class AddressSpace {
 public:
  AddressSpace(Kernel& kernel, File& host) : kernel_(kernel), host_(host) {}
  // truncate_inode_pages_final: every folio leaves the cache. REQUIRES: no mm maps the file
  // (the last VMA holding the File is gone).
  ~AddressSpace();
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  Kernel& kernel() const { return kernel_; }
  File& host() const { return host_; }

  // The tag-free mapping word of this address space's folios (folio->mapping).
  uint64_t mapping_word() const { return reinterpret_cast<uintptr_t>(this); }
  // folio_mapping for a page-cache folio: the AddressSpace its mapping word names, or null
  // for anon, KSM/movable-tagged and unmapped folios.
  static AddressSpace* of_folio(page::Folio folio);

  // filemap_get_folio: the folio at `index` with a reference for the caller, or nullopt.
  std::optional<page::Folio> get_folio(uint64_t index);
  // filemap_add_folio: `folio` (a fresh small folio the caller owns a reference on) enters the
  // cache at `index`; the cache takes its own reference. EEXIST when the slot is taken.
  Status add_folio(page::Folio folio, uint64_t index);
  // filemap_remove_folio: the folio leaves the cache; the cache's reference comes back to the
  // caller, who puts it. REQUIRES: the folio locked, in this cache, mapped by no PTE.
  void remove_folio_locked(page::Folio folio);
  // The cached folios with index >= `from`, each with a reference for the caller (truncate).
  std::vector<std::pair<uint64_t, page::Folio>> folios_from(uint64_t from);
  uint64_t nr_pages();  // mapping->nrpages

  // ---- i_mmap (REQUIRES Kernel::anon_vma_lock() held for write to change, read to walk) ----
  void i_mmap_link(Mm* mm) { ++i_mmap_[mm]; }
  void i_mmap_unlink(Mm* mm);
  // The mms with a VMA of this file. REQUIRES the anon_vma lock held (read or write).
  std::vector<Mm*> i_mmap_mms() const;
  bool i_mmap_empty() const { return i_mmap_.empty(); }

 private:
  Kernel& kernel_;
  File& host_;
  Protected<std::map<uint64_t, page::Folio>, Mutex> i_pages_{LockRank::kLeaf};
  std::map<Mm*, int> i_mmap_;  // guarded by Kernel::anon_vma_lock()
};

}  // namespace dpmm::mm
