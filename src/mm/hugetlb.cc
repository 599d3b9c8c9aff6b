#include "mm/hugetlb.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "arch/decoded_entry.h"
#include "mm/hstate.h"
#include "mm/huge_memory.h"
#include "mm/hugetlbfs.h"
#include "mm/page_table.h"
#include "mm/vm_flags.h"

namespace dpmm::mm {
namespace {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

FaultResult sigbus(std::string_view why) { return {FaultOutcome::kSigBus, why}; }
FaultResult oom(std::string_view why) { return {FaultOutcome::kOom, why}; }

// is_cow_mapping: private and may become writable.
bool is_cow_mapping(VmFlags flags) {
  return (flags & (VmFlags::kShared | VmFlags::kMayWrite)) == VmFlags::kMayWrite;
}

// make_huge_pte: the leaf of a hugetlb folio, young; writable and dirty when `writable`,
// else write-protected.
uint64_t make_huge_pte(const Kernel& k, const Vma& vma, Pfn pfn, bool writable) {
  Prot p = (vma.page_prot & ~Prot::kWrite) | Prot::kAccessed;
  if (writable) p = p | Prot::kWrite | Prot::kDirty;
  return MUST(k.codec().make_present(EntryLevel::kPmd, pfn, p),
              "a huge-page aligned pool pfn encodes as a PMD leaf");
}

// vma_needs_reservation + vma_commit_reservation for the owner of a private mapping: whether
// the huge page at `idx` still has its reservation, marking it used when `commit`.
enum class Commit : bool { kNo, kYes };
bool vma_has_reservation(const Vma& vma, uint64_t idx, Commit commit) {
  if (vma.resv_map == nullptr) return false;  // not the owner, or MAP_NORESERVE
  SpinLocker guard(vma.resv_map->lock);
  if (vma.resv_map->consumed.contains(idx)) return false;
  if (commit == Commit::kYes) vma.resv_map->consumed.insert(idx);
  return true;
}

// alloc_hugetlb_folio's pool half for the huge page at `haddr`: uses the VMA's reservation
// when it has one left. ENOSPC when the pool has no page for it.
Result<page::Folio> alloc_hugetlb_folio(Kernel& k, const Vma& vma, VirtAddr haddr) {
  const uint64_t idx = vma_hugecache_offset(k, vma, haddr);
  const bool reserved = vma_has_reservation(vma, idx, Commit::kNo);
  page::Folio folio =
      TRY(k.hstate().alloc_folio(reserved ? UseReserve::kYes : UseReserve::kNo));
  if (reserved) vma_has_reservation(vma, idx, Commit::kYes);
  return folio;
}

// copy_user_large_folio: every byte of src into dst.
void copy_huge_folio(Kernel& k, page::Folio dst, page::Folio src) {
  const Pfn d = k.page_to_pfn(dst.head());
  const Pfn s = k.page_to_pfn(src.head());
  for (uint64_t i = 0; i < kHpagePmdNr; ++i) {
    std::span<std::byte> to = k.page_bytes(d + PageCount(i));
    std::span<const std::byte> from = k.page_bytes(s + PageCount(i));
    std::memcpy(to.data(), from.data(), to.size());
  }
}

// folio_zero_user over the whole folio.
void zero_huge_folio(Kernel& k, page::Folio folio) {
  const Pfn pfn = k.page_to_pfn(folio.head());
  for (uint64_t i = 0; i < kHpagePmdNr; ++i) {
    std::span<std::byte> bytes = k.page_bytes(pfn + PageCount(i));
    std::memset(bytes.data(), 0, bytes.size());
  }
}

// hugetlb_wp: a write fault on the read-only leaf `orig` at `pmd`. REQUIRES: the fault mutex.
FaultResult hugetlb_wp(Mm& mm, const Vma& vma, EntrySlot pmd, uint64_t orig, VirtAddr haddr)
    REQUIRES_SHARED(mm.mmap_lock()) {
  Kernel& k = mm.kernel();
  const DecodedEntry d = *pmd_trans_huge(k, orig);
  if (has(vma.flags, VmFlags::kMayShare)) {
    // A shared mapping never copies: the leaf becomes writable (set_huge_ptep_writable).
    SpinLocker guard(mm.page_table().lock());
    uint64_t expected = orig;
    pmd.compare_exchange(expected, make_huge_pte(k, vma, d.pfn, /*writable=*/true));
    return FaultResult::handled();
  }
  page::Folio old = page::page_folio(MUST(k.pfn_to_page(d.pfn), "a hugetlb leaf maps RAM"));
  assert(old.is_hugetlb() && "a hugetlb leaf maps a pool folio");
  // Only this mapping maps an anon folio: no copy is needed (folio_move_anon_rmap, then
  // SetPageAnonExclusive; the kernel checks the mapcount, not the refcount). A page-cache
  // folio of a private file mapping is always copied.
  if (old.is_anon() && old.mapcount() == 1) {
    old.set_flag(page::PageFlag::kAnonExclusive);
    if (AnonVma* av = vma.anon_vma())
      old.set_mapping_word(reinterpret_cast<uintptr_t>(av) | page::kFolioMappingAnon);
    SpinLocker guard(mm.page_table().lock());
    uint64_t expected = orig;
    pmd.compare_exchange(expected, make_huge_pte(k, vma, d.pfn, /*writable=*/true));
    return FaultResult::handled();
  }
  page::folio_get(old);
  mm.anon_vma_prepare(vma);  // the copy is anon
  Result<page::Folio> fresh = alloc_hugetlb_folio(k, vma, haddr);
  if (fresh.is_error()) {
    // The owner would unmap the page from its children and retry (unmap_ref_private); dpmm
    // answers SIGBUS at once (docs/mm.md).
    page::folio_put(old);
    return sigbus("no huge page for a hugetlb copy-on-write");
  }
  page::Folio folio = *fresh;
  copy_huge_folio(k, folio, old);
  folio.set_flag(page::PageFlag::kUptodate);
  const MmuNotifierRange range =
      mm.notifier_range(MmuNotifyEvent::kClear, haddr, haddr + kHpagePmdSize);
  mm.invalidate_range_start(range);
  bool replaced = false;
  {
    SpinLocker guard(mm.page_table().lock());
    if (pmd.load() == orig) {
      // huge_ptep_clear_flush, hugetlb_remove_rmap of the old, the new one mapped.
      pmd.exchange(0);
      hugetlb_remove_rmap(old);
      hugetlb_add_new_anon_rmap(folio, vma, haddr);
      pmd.store(make_huge_pte(k, vma, k.page_to_pfn(folio.head()), /*writable=*/true));
      replaced = true;
    }
  }
  if (replaced) {
    mm.flush_tlb_range(haddr, haddr + kHpagePmdSize);
    page::folio_put(old);  // the old mapping's reference, after the flush
  } else {
    page::folio_put(folio);
  }
  mm.invalidate_range_end(range);
  page::folio_put(old);  // ours
  return FaultResult::handled();
}

// hugetlb_no_page: the none PMD at `pmd` gets a zeroed pool folio. REQUIRES: the fault mutex.
FaultResult hugetlb_no_page(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr haddr,
                            FaultFlags flags) REQUIRES_SHARED(mm.mmap_lock()) {
  Kernel& k = mm.kernel();
  const uint64_t idx = vma_hugecache_offset(k, vma, haddr);
  if (HugetlbfsFile* file = vma_hugetlbfs_file(vma)) {
    // A hugetlbfs mapping: past EOF is SIGBUS; the page cache is looked at first.
    if (idx >= file->size() / k.hstate().size())
      return sigbus("hugetlb fault past the end of the hugetlbfs file");
    const bool may_share = has(vma.flags, VmFlags::kMayShare);
    std::optional<page::Folio> cached = file->find_folio(idx);
    if (!cached && may_share) {
      // A shared mapping instantiates the page in the cache, with the inode's reservation
      // when it holds one for this index (vma_needs_reservation on the inode's regions).
      const bool reserved = file->has_reservation(idx);
      Result<page::Folio> fresh =
          k.hstate().alloc_folio(reserved ? UseReserve::kYes : UseReserve::kNo);
      if (fresh.is_error()) return sigbus("no huge page in the pool (alloc_hugetlb_folio)");
      zero_huge_folio(k, *fresh);
      fresh->set_flag(page::PageFlag::kUptodate);
      file->add_folio(*fresh, idx);  // hugetlb_add_to_page_cache; the region is committed
      cached = *fresh;               // the allocation's reference becomes the mapping's
    }
    if (cached) {
      // make_huge_pte(vma, folio, VM_SHARED): writable and dirty in a writable shared
      // mapping; read-only in a private one (a write copies it in hugetlb_wp).
      const bool writable =
          has(vma.flags, VmFlags::kShared) && has(vma.flags, VmFlags::kWrite);
      uint64_t entry = 0;
      {
        SpinLocker guard(mm.page_table().lock());
        if (pmd.load() == 0) {
          hugetlb_add_file_rmap(*cached);
          entry = make_huge_pte(k, vma, k.page_to_pfn(cached->head()), writable);
          pmd.store(entry);
        }
      }
      if (entry == 0) {
        page::folio_put(*cached);  // raced with another populator: it is mapped already
        return FaultResult::handled();
      }
      if (has(flags, FaultFlags::kWrite) && !writable)
        return hugetlb_wp(mm, vma, pmd, entry, haddr);
      return FaultResult::handled();
    }
    // A hole in a private mapping of the file: a private anon page, never cached.
  }
  mm.anon_vma_prepare(vma);  // vmf_anon_prepare
  const bool reserved = vma_has_reservation(vma, idx, Commit::kNo);
  Result<page::Folio> fresh =
      k.hstate().alloc_folio(reserved ? UseReserve::kYes : UseReserve::kNo);
  if (fresh.is_error()) return sigbus("no huge page in the pool (alloc_hugetlb_folio)");
  page::Folio folio = *fresh;
  zero_huge_folio(k, folio);
  folio.set_flag(page::PageFlag::kUptodate);  // __folio_mark_uptodate
  uint64_t entry = 0;
  {
    SpinLocker guard(mm.page_table().lock());
    if (pmd.load() == 0) {
      hugetlb_add_new_anon_rmap(folio, vma, haddr);
      // A private mapping maps it read-only; a write fault goes on to hugetlb_wp, which
      // finds it exclusive and makes it writable.
      entry = make_huge_pte(k, vma, k.page_to_pfn(folio.head()), /*writable=*/false);
      pmd.store(entry);
    }
  }
  if (entry == 0) {
    // Raced with another populator (the fault mutex makes this rare): undo
    // (restore_reserve_on_error).
    page::folio_put(folio);
    if (reserved) k.hstate().restore_reserve();
    return FaultResult::handled();
  }
  if (reserved) vma_has_reservation(vma, idx, Commit::kYes);  // vma_commit_reservation
  if (has(flags, FaultFlags::kWrite)) return hugetlb_wp(mm, vma, pmd, entry, haddr);
  return FaultResult::handled();
}

}  // namespace

uint64_t vma_hugecache_offset(const Kernel& k, const Vma& vma, VirtAddr address) {
  (void)k;
  return ((address - vma.start) >> kPmdShift) + (vma.pgoff >> kHpagePmdOrder);
}

Result<std::shared_ptr<HugetlbResvMap>> hugetlb_reserve_pages(Kernel& k, uint64_t nr,
                                                              VmFlags vm_flags) {
  if (has(vm_flags, VmFlags::kNoReserve)) return std::shared_ptr<HugetlbResvMap>();
  TRY(k.hstate().reserve(nr));  // hugetlb_acct_memory
  return std::make_shared<HugetlbResvMap>();
}

void hugetlb_vm_op_close(Kernel& k, const Vma& vma) {
  if (vma.resv_map == nullptr) return;
  const uint64_t first = vma_hugecache_offset(k, vma, vma.start);
  const uint64_t last = vma_hugecache_offset(k, vma, vma.end);
  uint64_t used = 0;
  {
    SpinLocker guard(vma.resv_map->lock);
    auto& consumed = vma.resv_map->consumed;
    // region_count over [first, last); the closed range's entries go (its pages are gone).
    auto lo = consumed.lower_bound(first);
    auto hi = consumed.lower_bound(last);
    used = static_cast<uint64_t>(std::distance(lo, hi));
    consumed.erase(lo, hi);
  }
  const uint64_t unused = (last - first) - used;
  if (unused != 0) k.hstate().unreserve(unused);
}

Status hugetlb_vm_op_split(const Kernel& k, const Vma& vma, VirtAddr addr) {
  (void)k;
  (void)vma;
  if (!addr.is_aligned(kHpagePmdSize))
    return make_error(Errno::kEINVAL, "hugetlb VMA cut at {}: not huge-page aligned", addr);
  return ok();
}

FaultResult hugetlb_fault(Mm& mm, const Vma& vma, VirtAddr address, FaultFlags flags) {
  Kernel& k = mm.kernel();
  const VirtAddr haddr = address.align_down(kHpagePmdSize);
  MutexLocker fault_guard(k.hstate().fault_mutex());
  Result<EntrySlot> pmd = mm.page_table().walk_pmd_alloc(haddr);  // huge_pte_alloc
  if (pmd.is_error()) {
    return pmd.error().code() == Errno::kENOMEM ? oom("no page for a page table")
                                                : sigbus("a PUD entry is not a table");
  }
  const uint64_t orig = pmd->load();
  if (orig == 0) return hugetlb_no_page(mm, vma, *pmd, haddr, flags);
  const std::optional<DecodedEntry> d = pmd_trans_huge(k, orig);
  // Hugetlb migration and hwpoison entries are not modelled: every populated entry is a leaf.
  if (!d) return sigbus("a hugetlb PMD that is not a leaf");
  if (has(flags, FaultFlags::kWrite) && !arch::has(d->prot, Prot::kWrite))
    return hugetlb_wp(mm, vma, *pmd, orig, haddr);
  // huge_ptep_set_access_flags: young, and dirty for a write.
  Prot p = d->prot | Prot::kAccessed;
  if (has(flags, FaultFlags::kWrite)) p = p | Prot::kDirty;
  const uint64_t entry = MUST(k.codec().make_present(EntryLevel::kPmd, d->pfn, p),
                              "a present leaf with young/dirty set encodes");
  SpinLocker guard(mm.page_table().lock());
  uint64_t expected = orig;
  pmd->compare_exchange(expected, entry);
  return FaultResult::handled();
}

void unmap_hugepage_range(Mm& mm, const Vma& vma, VirtAddr start, VirtAddr end,
                          MmuGather& tlb) {
  Kernel& k = mm.kernel();
  assert(start.is_aligned(kHpagePmdSize) && end.is_aligned(kHpagePmdSize) &&
         "hugetlb ranges are huge-page aligned");
  for (VirtAddr a = start; a < end; a += kHpagePmdSize) {
    const std::optional<EntrySlot> pmd = mm.page_table().walk_pmd(a);
    if (!pmd) continue;
    SpinLocker guard(mm.page_table().lock());
    const uint64_t old = pmd->exchange(0);  // huge_ptep_get_and_clear
    if (old == 0) continue;
    const std::optional<DecodedEntry> d = pmd_trans_huge(k, old);
    assert(d && "a populated hugetlb PMD is a leaf");
    page::Folio folio = page::page_folio(MUST(k.pfn_to_page(d->pfn), "a hugetlb leaf maps RAM"));
    if (arch::has(d->prot, Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);
    hugetlb_remove_rmap(folio);
    // The owner of a private mapping unmapping an anon folio gets the huge page's reservation
    // back, so MADV_DONTNEED followed by a fault cannot lose the page to someone else: the
    // folio is marked HPG_restore_reserve (free_huge_folio re-reserves) and the page is no
    // longer "consumed" in the owner's map (vma_needs_reservation + vma_add_reservation).
    // dpmm does this only when the folio goes back to the pool with this unmap (no other
    // mapping, no other reference): the kernel also does it for a folio a fork child still
    // maps, and its HugePages_Rsvd then dips below zero when the owner's VMA closes until
    // the child lets go (docs/mm.md).
    if (vma.resv_map != nullptr && !has(vma.flags, VmFlags::kMayShare) && folio.is_anon() &&
        folio.mapcount() == 0 && folio.ref_count() == 1) {
      folio_set_hugetlb_restore_reserve(folio);
      SpinLocker resv(vma.resv_map->lock);
      vma.resv_map->consumed.erase(vma_hugecache_offset(k, vma, a));
    }
    tlb.remove_folio(folio);  // tlb_remove_page_size: put after the flush
  }
}

void move_hugetlb_page_tables(Mm& mm, VirtAddr old_addr, VirtAddr new_addr, uint64_t len) {
  assert(old_addr.is_aligned(kHpagePmdSize) && new_addr.is_aligned(kHpagePmdSize) &&
         (len % kHpagePmdSize) == 0 && "hugetlb moves are huge-page aligned");
  for (uint64_t off = 0; off < len; off += kHpagePmdSize) {
    const std::optional<EntrySlot> src = mm.page_table().walk_pmd(old_addr + off);
    if (!src || src->load() == 0) continue;
    // huge_pte_alloc for the destination, before the lock.
    const EntrySlot dst = MUST(mm.page_table().walk_pmd_alloc(new_addr + off),
                               "a page table for mremap's hugetlb destination");
    SpinLocker guard(mm.page_table().lock());
    // move_huge_pte: the leaf goes over as it is; its reference and mapcount go with it.
    const uint64_t word = src->exchange(0);
    assert(dst.load() == 0 && "mremap hugetlb destination in use");
    dst.store(word);
  }
}

void hugetlb_change_protection(Mm& mm, const Vma& vma, VirtAddr start, VirtAddr end) {
  Kernel& k = mm.kernel();
  // huge_pte_modify keeps what pte_modify keeps (_PAGE_CHG_MASK).
  constexpr Prot kKeep = Prot::kAccessed | Prot::kDirty | Prot::kSoftDirty | Prot::kUffdWp;
  for (VirtAddr a = start; a < end; a += kHpagePmdSize) {
    const std::optional<EntrySlot> pmd = mm.page_table().walk_pmd(a);
    if (!pmd) continue;
    SpinLocker guard(mm.page_table().lock());
    const uint64_t old = pmd->load();
    const std::optional<DecodedEntry> d = pmd_trans_huge(k, old);
    if (!d) continue;
    const Prot p = vma.page_prot | (d->prot & kKeep);
    pmd->store(MUST(k.codec().make_present(EntryLevel::kPmd, d->pfn, p),
                    "a hugetlb leaf with the VMA's protection encodes"));
  }
}

Status copy_hugetlb_page_range(Mm& dst, Mm& src, const Vma& dst_vma, const Vma& src_vma) {
  Kernel& k = src.kernel();
  const bool cow = is_cow_mapping(src_vma.flags);
  const MmuNotifierRange range =
      src.notifier_range(MmuNotifyEvent::kProtectionPage, src_vma.start, src_vma.end);
  if (cow) src.invalidate_range_start(range);
  Status status = ok();
  for (VirtAddr a = src_vma.start; a < src_vma.end; a += kHpagePmdSize) {
    const std::optional<EntrySlot> src_pmd = src.page_table().walk_pmd(a);
    if (!src_pmd || src_pmd->load() == 0) continue;
    Result<EntrySlot> dst_pmd = dst.page_table().walk_pmd_alloc(a);  // huge_pte_alloc
    if (dst_pmd.is_error()) {
      status = make_error(Errno::kENOMEM, "fork: no page table for the child's huge page at {}",
                          a);
      break;
    }
    std::optional<page::Folio> pinned;  // a folio the child must get a copy of
    {
      SpinLocker src_guard(src.page_table().lock());
      SpinLocker dst_guard(dst.page_table().lock());
      const uint64_t entry = src_pmd->load();
      const std::optional<DecodedEntry> d = pmd_trans_huge(k, entry);
      if (!d) continue;
      page::Folio folio = page::page_folio(MUST(k.pfn_to_page(d->pfn), "a hugetlb leaf maps RAM"));
      const MaybePinned maybe_pinned = folio.is_anon() && src.has_pinned() &&
                                               folio_maybe_dma_pinned(folio)
                                           ? MaybePinned::kYes
                                           : MaybePinned::kNo;
      page::folio_get(folio);
      if (!folio.is_anon()) {
        // A page-cache folio: one more file mapping (hugetlb_add_file_rmap), never copied.
        hugetlb_add_file_rmap(folio);
      } else if (hugetlb_try_dup_anon_rmap(folio, maybe_pinned).is_error()) {
        pinned = folio;  // copied below, without the locks
      }
      if (!pinned) {
        uint64_t child = entry;
        if (cow && arch::has(d->prot, Prot::kWrite)) {
          // huge_ptep_set_wrprotect in the parent; the child's copy read-only too.
          child = MUST(k.codec().make_present(EntryLevel::kPmd, d->pfn, d->prot & ~Prot::kWrite),
                       "a write-protected leaf encodes");
          src_pmd->store(child);
        }
        dst_pmd->store(child);
      }
    }
    if (pinned) {
      // The child gets its own copy now (hugetlb_install_folio), so the parent's pin stays
      // coherent with what the parent sees.
      Result<page::Folio> fresh = k.hstate().alloc_folio(UseReserve::kNo);
      if (fresh.is_error()) {
        page::folio_put(*pinned);
        status = make_error(Errno::kENOMEM, "fork: no huge page to copy a pinned one at {}", a);
        break;
      }
      copy_huge_folio(k, *fresh, *pinned);
      page::folio_put(*pinned);
      fresh->set_flag(page::PageFlag::kUptodate);
      SpinLocker dst_guard(dst.page_table().lock());
      hugetlb_add_new_anon_rmap(*fresh, dst_vma, a);
      dst_pmd->store(make_huge_pte(k, dst_vma, k.page_to_pfn(fresh->head()),
                                   has(dst_vma.flags, VmFlags::kWrite)));
    }
  }
  if (cow) {
    src.flush_tlb_range(src_vma.start, src_vma.end);
    src.invalidate_range_end(range);
  }
  return status;
}

void hugetlb_add_new_anon_rmap(page::Folio folio, const Vma& vma, VirtAddr address) {
  assert(folio.is_hugetlb() && folio.entire_mapcount() == 0 && "a fresh, unmapped pool folio");
  AnonVma* anon_vma = vma.anon_vma();
  assert(anon_vma != nullptr && "anon_vma_prepare must run before mapping anon memory");
  folio.entire_mapcount_raw().store(0, std::memory_order_release);
  folio.large_mapcount_raw().store(0, std::memory_order_release);
  folio.set_mapping_word(reinterpret_cast<uintptr_t>(anon_vma) | page::kFolioMappingAnon);
  folio.set_index(vma.linear_page_index(address));
  folio.set_flag(page::PageFlag::kAnonExclusive);
}

Status hugetlb_try_dup_anon_rmap(page::Folio folio, MaybePinned maybe_pinned) {
  assert(folio.is_hugetlb() && folio.is_anon() && "fork dups an anon hugetlb folio");
  if (folio.test_flag(page::PageFlag::kAnonExclusive)) {
    if (maybe_pinned == MaybePinned::kYes)
      return make_error(Errno::kEBUSY, "the exclusive hugetlb folio may be pinned: copy it");
    folio.clear_flag(page::PageFlag::kAnonExclusive);
  }
  folio.entire_mapcount_raw().fetch_add(1, std::memory_order_acq_rel);
  folio.large_mapcount_raw().fetch_add(1, std::memory_order_acq_rel);
  return ok();
}

void hugetlb_add_file_rmap(page::Folio folio) {
  assert(folio.is_hugetlb() && !folio.is_anon() && "a hugetlbfs page-cache folio");
  folio.entire_mapcount_raw().fetch_add(1, std::memory_order_acq_rel);
  folio.large_mapcount_raw().fetch_add(1, std::memory_order_acq_rel);
}

void hugetlb_remove_rmap(page::Folio folio) {
  assert(folio.is_hugetlb() && "hugetlb_remove_rmap of a folio that is not hugetlb");
  [[maybe_unused]] const int32_t left =
      folio.entire_mapcount_raw().fetch_sub(1, std::memory_order_acq_rel) - 1;
  assert(left >= -1 && "entire mapcount underflow");
  folio.large_mapcount_raw().fetch_sub(1, std::memory_order_acq_rel);
}

}  // namespace dpmm::mm
