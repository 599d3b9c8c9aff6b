#include "mm/hugetlbfs.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <iterator>

#include "mm/hstate.h"
#include "mm/hugetlb.h"
#include "mm/mm.h"
#include "mm/page_table.h"
#include "mm/shmem.h"
#include "mm/vma.h"
#include "page/folio_lock.h"

namespace dpmm::mm {

Result<std::shared_ptr<HugetlbfsFile>> HugetlbfsFile::create(Kernel& kernel, uint64_t size,
                                                             std::string name) {
  if (size > kMaxFileSize || (size & (kernel.hstate().size() - 1)) != 0)
    return make_error(Errno::kEINVAL,
                      "hugetlbfs file of {:#x} bytes: not a multiple of the huge page size",
                      size);
  std::shared_ptr<HugetlbfsFile> f(new HugetlbfsFile(kernel, std::move(name)));
  f->i_size_.store(size, std::memory_order_release);
  return f;
}

HugetlbfsFile::HugetlbfsFile(Kernel& kernel, std::string name)
    : File(FMode::kRead | FMode::kWrite, nullptr), kernel_(kernel), name_(std::move(name)) {
  mapping_ = std::make_unique<AddressSpace>(kernel, *this);
  set_mapping(mapping_.get());
}

HugetlbfsFile::~HugetlbfsFile() {
  assert(mapping_->i_mmap_empty() && "a hugetlbfs inode went away while mapped");
  remove_inode_hugepages(0);  // hugetlbfs_evict_inode
}

HugetlbfsFile* vma_hugetlbfs_file(const Vma& vma) {
  return dynamic_cast<HugetlbfsFile*>(vma.file.get());
}

Result<page::Folio> HugetlbfsFile::fault(uint64_t pgoff) {
  return make_error(Errno::kENXIO, "{}: hugetlb pages fault through hugetlb_fault (offset {:#x})",
                    name_, pgoff);
}

std::optional<page::Folio> HugetlbfsFile::find_folio(uint64_t idx) {
  return mapping_->get_folio(idx << kHpagePmdOrder);
}

bool HugetlbfsFile::has_reservation(uint64_t idx) const {
  MutexLocker guard(resv_mutex_);
  return regions_.contains(idx);
}

void HugetlbfsFile::add_folio(page::Folio folio, uint64_t idx) {
  MUST(mapping_->add_folio(folio, idx << kHpagePmdOrder),
       "the fault mutex keeps a huge page's cache slot free until it is filled");
  MutexLocker guard(resv_mutex_);
  regions_.insert(idx);  // vma_commit_reservation: region_add
}

uint64_t HugetlbfsFile::nr_regions() const {
  MutexLocker guard(resv_mutex_);
  return regions_.size();
}

Status HugetlbfsFile::mmap(Mm& mm, Vma& vma) {
  (void)mm;
  const uint64_t huge = kernel_.hstate().size();
  if ((vma.pgoff & (kHpagePmdNr - 1)) != 0)
    return make_error(Errno::kEINVAL, "mmap of {} at page offset {:#x}: not huge-page aligned",
                      name_, vma.pgoff);
  vma.flags |= VmFlags::kHugetlb | VmFlags::kDontExpand;
  const uint64_t from = vma.pgoff >> kHpagePmdOrder;
  const uint64_t to = from + vma.size() / huge;
  if (!has(vma.flags, VmFlags::kNoReserve)) {
    if (has(vma.flags, VmFlags::kMayShare)) {
      // region_chg: only the huge pages the inode holds no reservation (or page) for yet;
      // then region_add over the whole range.
      MutexLocker guard(resv_mutex_);
      uint64_t chg = 0;
      for (uint64_t i = from; i < to; ++i) chg += regions_.contains(i) ? 0 : 1;
      TRY(kernel_.hstate().reserve(chg));  // hugetlb_acct_memory
      for (uint64_t i = from; i < to; ++i) regions_.insert(i);
    } else {
      vma.resv_map = TRY(hugetlb_reserve_pages(kernel_, to - from, vma.flags));
    }
  }
  // A writable mapping past EOF makes the file that long.
  const uint64_t end = (vma.pgoff << kPageShift) + vma.size();
  if (has(vma.flags, VmFlags::kWrite) && size() < end)
    i_size_.store(end, std::memory_order_release);
  return ok();
}

Result<uint64_t> HugetlbfsFile::pread(std::span<std::byte> out, uint64_t offset) {
  const uint64_t isize = size();
  if (offset >= isize) return uint64_t{0};
  const uint64_t n = std::min<uint64_t>(out.size(), isize - offset);
  for (uint64_t done = 0; done < n;) {
    const uint64_t pos = offset + done;
    const uint64_t in_page = pos & (kPageSize - 1);
    const uint64_t chunk = std::min<uint64_t>(n - done, kPageSize - in_page);
    const uint64_t pgoff = pos >> kPageShift;
    if (std::optional<page::Folio> folio = find_folio(pgoff >> kHpagePmdOrder)) {
      const Pfn pfn = kernel_.page_to_pfn(folio->head()) + PageCount(pgoff & (kHpagePmdNr - 1));
      std::memcpy(out.data() + done, kernel_.page_bytes(pfn).data() + in_page, chunk);
      page::folio_put(*folio);
    } else {
      std::memset(out.data() + done, 0, chunk);  // a hole reads as zeros
    }
    done += chunk;
  }
  return n;
}

Result<uint64_t> HugetlbfsFile::pwrite(std::span<const std::byte> in, uint64_t offset) {
  return make_error(Errno::kEINVAL, "{}: hugetlbfs has no write operation ({:#x} bytes at {:#x})",
                    name_, in.size(), offset);
}

Status HugetlbfsFile::ftruncate(uint64_t length) {
  if (length > kMaxFileSize || (length & (kernel_.hstate().size() - 1)) != 0)
    return make_error(Errno::kEINVAL, "ftruncate of {} to {:#x}: not a multiple of the huge "
                      "page size", name_, length);
  MutexLocker guard(i_rwsem_);
  const uint64_t old = size();
  i_size_.store(length, std::memory_order_release);
  if (length < old) {
    // hugetlb_vmtruncate: every mapping of the cut pages goes first (hugetlb_vmdelete_list),
    // then their folios and reservations.
    unmap_mapping_range(*mapping_, length >> kPageShift, UINT64_MAX);
    remove_inode_hugepages(length / kernel_.hstate().size());
  }
  return ok();
}

void HugetlbfsFile::remove_inode_hugepages(uint64_t first) {
  // i_size is already lowered: once the faults in flight (which may have read the old size)
  // are through the fault mutex, no fault can add a folio past EOF, so the lookup below
  // sees every folio to remove.
  { MutexLocker flush(kernel_.hstate().fault_mutex()); }
  uint64_t freed = 0;
  for (auto& [index, folio] : mapping_->folios_from(first << kHpagePmdOrder)) {
    {
      // A fault that looked i_size up before it dropped may be mapping this page: the fault
      // mutex waits for it, and whatever it mapped is unmapped again.
      MutexLocker fault(kernel_.hstate().fault_mutex());
      page::folio_lock(folio);
      if (folio.mapping_word() == mapping_->mapping_word()) {
        if (folio.mapcount() > 0) unmap_mapping_range(*mapping_, index, index + kHpagePmdNr - 1);
        mapping_->remove_folio_locked(folio);
        page::folio_put(folio);  // the cache's reference
        ++freed;
      }
      page::folio_unlock(folio);
    }
    page::folio_put(folio);  // folios_from's: the last one sends it back to the pool
  }
  // hugetlb_unreserve_pages: region_del, and the reservations never used go back.
  uint64_t chg = 0;
  {
    MutexLocker guard(resv_mutex_);
    auto lo = regions_.lower_bound(first);
    chg = static_cast<uint64_t>(std::distance(lo, regions_.end()));
    regions_.erase(lo, regions_.end());
  }
  assert(chg >= freed && "every cached huge page is in the inode's regions");
  if (chg > freed) kernel_.hstate().unreserve(chg - freed);
}

}  // namespace dpmm::mm
