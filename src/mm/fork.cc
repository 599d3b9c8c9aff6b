// fork of an address space (kernel/fork.c dup_mmap; mm/memory.c copy_page_range,
// copy_pte_range, copy_present_ptes, copy_present_page, copy_nonpresent_pte,
// try_restore_exclusive_pte; include/linux/mm_inline.h copy_pte_marker; mm/rmap.c anon_vma_fork;
// include/linux/rmap.h folio_try_dup_anon_rmap_pte).
//
// For each VMA of the parent (VM_DONTCOPY skipped): the child gets a copy; a VMA with an
// anon_vma gets a child anon_vma (rmap.h) and its page tables are copied, unless VM_WIPEONFORK
// (copied empty); VM_PFNMAP/VM_MIXEDMAP VMAs have their page tables copied too -- other VMAs
// without an anon_vma have no pages that need copying (vma_needs_copy): the child faults zero
// pages or page-cache pages itself (a MAP_SHARED page is the same page in both). Copy rules per PTE of a COW mapping (private, VM_MAYWRITE):
//   present file page     one more reference and mapcount (folio_dup_file_rmap_pte); a
//                         private mapping's writable entry is write-protected in both
//   present anon page     one more reference and mapcount, PG_anon_exclusive cleared, both
//                         PTEs write-protected, the child's old (not young); a page that may
//                         be pinned (MMF_HAS_PINNED and folio_maybe_dma_pinned) is copied for
//                         the child at once instead, the parent keeping it writable
//   zero page             the special PTE is copied, no counts
//   migration entry       copied; a writable or readable-exclusive one becomes readable in
//                         both (A/D, soft-dirty, uffd-wp kept in the parent); rss only -- the
//                         migration owns the reference
//   device-private entry  one more reference and mapcount (folio_try_dup_anon_rmap_pte cannot
//                         fail: such pages are never pinned); a writable entry becomes
//                         readable in both (soft-dirty dropped)
//   device-exclusive      restored to a present PTE in the parent (needs the folio lock by
//                         trylock; a held lock fails the fork with ENOMEM, as copy_pmd_range
//                         turns copy_pte_range's -EBUSY into -ENOMEM), then copied as present
//   swap entry            copied, exclusive bit cleared in the parent (no swap device counts)
//   hwpoison              copied as is
//   PTE marker            poisoned and guard bits copied, uffd-wp dropped (no userfaultfd)
// The child's entries never carry uffd-wp (no VMA is registered with userfaultfd).
// Around each COW VMA: MMU_NOTIFY_PROTECTION_PAGE on the parent, and a TLB flush of the range
// before the end call (the kernel flushes the whole parent mm at the end of dup_mmap).
// Locks: parent mmap_lock write; the child is private to the forking thread (Mm::
// assert_private_to_fork); source page-table lock, then the child's (LockRank::kPageTable is
// nestable); anon_vma lock for write around every change of the child's VMA set.
#include <cassert>
#include <cstring>
#include <map>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/file_rmap.h"
#include "mm/huge_memory.h"
#include "mm/hugetlb.h"
#include "mm/mm.h"
#include "mm/rmap.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;
using arch::Softleaf;
using arch::SwpBit;

// is_cow_mapping: private and may become writable.
bool is_cow_mapping(VmFlags flags) {
  return (flags & (VmFlags::kShared | VmFlags::kMayWrite)) == VmFlags::kMayWrite;
}

// What copying one non-present entry decided.
enum class NonPresentCopy : uint8_t {
  kDone,              // the child's entry is set (or left none)
  kRestoredPresent,   // a device-exclusive entry became present: copy it as present
};

class PteCopier {
 public:
  PteCopier(Mm& src, Mm& dst, const Vma& src_vma, const Vma& dst_vma)
      : src_(src), dst_(dst), k_(src.kernel()), src_vma_(src_vma), dst_vma_(dst_vma),
        cow_(is_cow_mapping(src_vma.flags)) {}

  // copy_pte_range body for one PTE. REQUIRES both page-table locks.
  Status copy_one(EntrySlot src_pte, EntrySlot dst_pte, VirtAddr addr) {
    uint64_t word = src_pte.load();
    if (word == 0) return ok();
    DecodedEntry d = k_.codec().decode(EntryLevel::kPte, word);
    switch (d.kind) {
      case DecodedEntry::Kind::kNone:
        return ok();
      case DecodedEntry::Kind::kTable:
        assert(false && "a PTE decodes as a table");
        return make_error(Errno::kEINVAL, "a PTE at {} decodes as a table", addr);
      case DecodedEntry::Kind::kSwap: {
        const NonPresentCopy r = TRY(copy_nonpresent(src_pte, dst_pte, addr, word, d));
        if (r == NonPresentCopy::kDone) return ok();
        word = src_pte.load();
        d = k_.codec().decode(EntryLevel::kPte, word);
        assert(d.kind == DecodedEntry::Kind::kPresent && "restored entry is present");
        break;
      }
      case DecodedEntry::Kind::kPresent:
        break;
    }
    return copy_present(src_pte, dst_pte, addr, word, d);
  }

 private:
  uint64_t present_word(Pfn pfn, Prot prot) const {
    return MUST(k_.codec().make_present(EntryLevel::kPte, pfn, prot),
                "a mapped pfn with a derived protection encodes");
  }
  uint64_t swap_word(Softleaf leaf, SwpBit bits) const {
    return MUST(k_.codec().make_swap(EntryLevel::kPte, leaf, bits),
                "a valid softleaf with its software bits encodes");
  }

  // copy_present_ptes for one small folio (or a special PTE).
  Status copy_present(EntrySlot src_pte, EntrySlot dst_pte, VirtAddr addr, uint64_t word,
                      const DecodedEntry& d) {
    if (page::Page* page = vm_normal_page(k_, d)) {
      page::Folio folio = page::page_folio(page);
      page::folio_get(folio);
      if (!folio.is_anon()) {
        // A page-cache or driver page: folio_dup_file_rmap_pte, never copied at fork.
        folio_dup_file_rmap_pte(folio, page);
        dst_.add_rss(mm_counter_file(folio), 1);
      } else {
        const MaybePinned pinned = src_.has_pinned() && folio_maybe_dma_pinned(folio)
                                       ? MaybePinned::kYes
                                       : MaybePinned::kNo;
        if (folio_try_dup_anon_rmap_pte(folio, page, pinned).is_error()) {
          page::folio_put(folio);
          return copy_present_page(dst_pte, addr, d);
        }
        dst_.add_rss(RssMember::kAnonPages, 1);
      }
    }
    // __copy_present_ptes: write-protect both for COW; the child's entry is old.
    if (cow_ && arch::has(d.prot, Prot::kWrite)) {
      while (true) {
        const DecodedEntry cur = k_.codec().decode(EntryLevel::kPte, word);
        const uint64_t wp = present_word(cur.pfn, cur.prot & ~Prot::kWrite);
        // A hardware walk may set accessed/dirty meanwhile; keep what it set.
        if (src_pte.compare_exchange(word, wp)) {
          word = wp;
          break;
        }
      }
    }
    const DecodedEntry now = k_.codec().decode(EntryLevel::kPte, word);
    Prot child = now.prot & ~(Prot::kAccessed | Prot::kUffdWp);
    if (cow_) child = child & ~Prot::kWrite;
    dst_pte.store(present_word(now.pfn, child));
    return ok();
  }

  // copy_present_page: the page may be pinned, so the child gets its own copy now.
  Status copy_present_page(EntrySlot dst_pte, VirtAddr addr, const DecodedEntry& d) {
    Result<page::Folio> fresh = k_.alloc_folio(Order(0));
    if (fresh.is_error())
      return make_error(Errno::kENOMEM, "fork: no page to copy the pinned page at {}", addr);
    page::Folio copy = *fresh;
    const Pfn pfn = k_.page_to_pfn(copy.head());
    std::memcpy(k_.page_bytes(pfn).data(), k_.page_bytes(d.pfn).data(), kPageSize);
    copy.set_flag(page::PageFlag::kUptodate);
    folio_add_new_anon_rmap(copy, dst_vma_, addr, RmapExclusive::kYes);
    dst_.add_rss(RssMember::kAnonPages, 1);
    // maybe_mkwrite(pte_mkdirty(mk_pte(new, vm_page_prot))).
    Prot p = dst_vma_.page_prot | Prot::kDirty;
    if (has(dst_vma_.flags, VmFlags::kWrite)) p = p | Prot::kWrite;
    dst_pte.store(present_word(pfn, p));
    return ok();
  }

  // copy_nonpresent_pte.
  Result<NonPresentCopy> copy_nonpresent(EntrySlot src_pte, EntrySlot dst_pte, VirtAddr addr,
                                         uint64_t word, const DecodedEntry& d) {
    const arch::SoftleafFormat fmt = k_.softleaf_format();
    Softleaf leaf = d.leaf;
    SwpBit bits = d.swp_bits;
    switch (arch::softleaf_type(leaf)) {
      case arch::SoftleafType::kSwap:
        // swap_duplicate is not modelled (no swap device); the entry becomes shared.
        if (arch::has(bits, SwpBit::kExclusive)) {
          bits = bits & ~SwpBit::kExclusive;
          src_pte.store(swap_word(leaf, bits));
        }
        dst_.add_rss(RssMember::kSwapEnts, 1);
        break;
      case arch::SoftleafType::kMigrationRead:
      case arch::SoftleafType::kMigrationReadExclusive:
      case arch::SoftleafType::kMigrationWrite:
      case arch::SoftleafType::kMigrationDevicePrivateRead:
      case arch::SoftleafType::kMigrationDevicePrivateReadExclusive:
      case arch::SoftleafType::kMigrationDevicePrivateWrite:
        dst_.add_rss(RssMember::kAnonPages, 1);
        if (cow_ && !arch::softleaf_is_migration_read(leaf) &&
            !arch::softleaf_is_migration_device_private_read(leaf)) {
          // A previously exclusive entry is now shared: the exclusive bit goes too.
          leaf = readable_migration(leaf, fmt);
          bits = bits & (SwpBit::kSoftDirty | SwpBit::kUffdWp);
          src_pte.store(swap_word(leaf, bits));
        }
        break;
      case arch::SoftleafType::kDevicePrivateRead:
      case arch::SoftleafType::kDevicePrivateWrite: {
        DevicePrivateFaultHandler* h = k_.device_private_handler();
        page::Page* page = h != nullptr ? h->softleaf_to_page(leaf) : nullptr;
        if (page == nullptr)
          return make_error(Errno::kEFAULT, "fork: the device-private entry at {} ({}) names no "
                            "page the device-private handler knows", addr,
                            arch::softleaf_describe(leaf));
        page::Folio folio = page::page_folio(page);
        page::folio_get(folio);
        dst_.add_rss(RssMember::kAnonPages, 1);
        MUST(folio_try_dup_anon_rmap_pte(folio, page, MaybePinned::kNo),
             "device-private pages cannot be pinned");
        if (cow_ && arch::softleaf_is_device_private_write(leaf)) {
          // The downgraded entry keeps only uffd-wp (soft-dirty is not preserved for device
          // memory).
          const arch::PfnOrOffset where =
              MUST(arch::softleaf_to_pfn_or_offset(leaf), "device-private entries hold one");
          leaf = MUST(arch::make_readable_device_private_entry(fmt, where), "valid");
          bits = bits & SwpBit::kUffdWp;
          src_pte.store(swap_word(leaf, bits));
        }
        break;
      }
      case arch::SoftleafType::kDeviceExclusive:
        assert(cow_ && "device-exclusive entries exist only in COW mappings");
        TRY(try_restore_exclusive_pte(src_pte, word, leaf, d.swp_bits));
        return NonPresentCopy::kRestoredPresent;
      case arch::SoftleafType::kMarker: {
        // copy_pte_marker: error markers always, uffd-wp only to a uffd-wp VMA (none here).
        const arch::PteMarker m =
            arch::softleaf_to_marker(leaf) & (arch::PteMarker::kPoisoned | arch::PteMarker::kGuard);
        if (m != arch::PteMarker::kNone)
          dst_pte.store(swap_word(MUST(arch::make_pte_marker_entry(fmt, m), "valid"),
                                  SwpBit::kNone));
        return NonPresentCopy::kDone;
      }
      case arch::SoftleafType::kHwpoison:
        break;
      case arch::SoftleafType::kNone:
      case arch::SoftleafType::kCount:
        assert(false && "a swap PTE with no softleaf type");
        return make_error(Errno::kEINVAL, "fork: unknown non-present entry {:#x} at {}", word,
                          addr);
    }
    // The child's entry: as the (possibly downgraded) parent's, without uffd-wp.
    dst_pte.store(swap_word(leaf, bits & ~SwpBit::kUffdWp));
    return NonPresentCopy::kDone;
  }

  // make_readable_migration_entry (or the dpas device-private variant), keeping A/D.
  static Softleaf readable_migration(Softleaf leaf, arch::SoftleafFormat fmt) {
    Softleaf r = leaf;
    if (arch::softleaf_is_migration_device_private(leaf)) {
      const DevPrivOffset off = MUST(arch::softleaf_to_offset(leaf), "dpas offset");
      r = MUST(arch::make_readable_migration_device_private_entry(fmt, off), "valid");
    } else {
      const Pfn pfn = MUST(arch::softleaf_to_pfn(leaf), "migration entries hold a pfn");
      r = MUST(arch::make_readable_migration_entry(fmt, pfn), "valid");
    }
    if (arch::softleaf_is_migration_young(leaf)) r = arch::make_migration_entry_young(r);
    if (arch::softleaf_is_migration_dirty(leaf)) r = arch::make_migration_entry_dirty(r);
    return r;
  }

  // try_restore_exclusive_pte + restore_exclusive_pte: back to a present PTE in the parent.
  Status try_restore_exclusive_pte(EntrySlot src_pte, uint64_t word, Softleaf leaf,
                                   SwpBit bits) {
    const Pfn pfn = MUST(arch::softleaf_to_pfn(leaf), "device-exclusive entries hold a pfn");
    page::Page* page = TRY(k_.pfn_to_page(pfn));
    page::Folio folio = page::page_folio(page);
    if (!page::folio_trylock(folio))
      return make_error(Errno::kENOMEM,
                        "fork: the device-exclusive folio at pfn {} is locked (copy_pte_range's "
                        "-EBUSY becomes -ENOMEM)", pfn);
    Prot p = src_vma_.page_prot;  // pte_mkold(mk_pte(page, vm_page_prot))
    if (arch::has(bits, SwpBit::kSoftDirty)) p = p | Prot::kSoftDirty;
    if (arch::has(bits, SwpBit::kUffdWp)) p = p | Prot::kUffdWp;
    if (has(src_vma_.flags, VmFlags::kWrite) && !arch::has(p, Prot::kUffdWp) &&
        folio.is_anon() && page_anon_exclusive(page)) {
      if (folio.test_flag(page::PageFlag::kDirty)) p = p | Prot::kDirty;
      p = p | Prot::kWrite;
    }
    const bool same = src_pte.load() == word;
    assert(same && "the source PTE changed under its lock");
    (void)same;
    src_pte.store(present_word(pfn, p));
    page::folio_unlock(folio);
    return ok();
  }

  Mm& src_;
  Mm& dst_;
  Kernel& k_;
  const Vma& src_vma_;
  const Vma& dst_vma_;
  const bool cow_;
};

}  // namespace

Result<std::unique_ptr<Mm>> Mm::fork() {
  std::unique_ptr<Mm> child = TRY(Mm::create(kernel_));
  WriteLocker guard(mmap_lock_);
  TRY(dup_mmap_locked(*child));
  return child;
}

Status Mm::dup_mmap_locked(Mm& child) {
  child.assert_private_to_fork();
  // The child anon_vma of each parent anon_vma (VMAs split from one share it, in both).
  std::map<AnonVma*, AnonVma*> forked;
  for (const auto& [start, vma] : vmas_) {
    if (has(vma.flags, VmFlags::kDontCopy)) continue;
    Vma copy = vma;
    copy.set_anon_vma(nullptr);
    copy.resv_map = nullptr;  // hugetlb_dup_vma_private: the child owns no reservation
    AnonVma* src_av = vma.anon_vma();
    const bool wipe = has(vma.flags, VmFlags::kWipeOnFork);
    // vma_needs_copy: pages an anon_vma may own, or VM_PFNMAP/VM_MIXEDMAP pages that no fault
    // could bring back; shared file pages are refaulted from the page cache instead.
    const bool copy_pages =
        !wipe && (src_av != nullptr || has_any(vma.flags, VmFlags::kPfnMap | VmFlags::kMixedMap));
    VmaMap::iterator it;
    {
      WriteLocker rmap(kernel_.anon_vma_lock());
      if (src_av != nullptr && !wipe) {
        AnonVma*& d = forked[src_av];
        if (d == nullptr) {
          d = anon_vma_fork_locked(kernel_, child, src_av);
          child.anon_vmas_.with([&](std::vector<AnonVma*>& all) { all.push_back(d); });
        }
        copy.set_anon_vma(d);
      }
      it = child.vma_link_locked(copy);
    }
    if (copy_pages) TRY(copy_page_range_locked(child, it->second, vma));
  }
  return ok();
}

Status Mm::copy_page_range_locked(Mm& child, const Vma& dst_vma, const Vma& src_vma) {
  child.assert_private_to_fork();
  if (is_vm_hugetlb_page(src_vma)) return copy_hugetlb_page_range(child, *this, dst_vma, src_vma);
  const bool cow = is_cow_mapping(src_vma.flags);
  const MmuNotifierRange range =
      notifier_range(MmuNotifyEvent::kProtectionPage, src_vma.start, src_vma.end);
  if (cow) invalidate_range_start(range);
  PteCopier copier(*this, child, src_vma, dst_vma);
  Status status = ok();
  constexpr uint64_t kPmdSpan = uint64_t{1} << kPmdShift;
  for (VirtAddr a = src_vma.start; a < src_vma.end && status.is_ok();) {
    const VirtAddr next(std::min(a.align_down(kPmdSpan).raw() + kPmdSpan, src_vma.end.raw()));
    const std::optional<EntrySlot> src_pmd = page_table_->walk_pmd(a);
    if (src_pmd && pmd_is_huge(kernel_, src_pmd->load())) {
      // copy_huge_pmd; false means it split the leaf (a possibly pinned folio): copy PTEs.
      Result<bool> copied =
          copy_huge_pmd(child, *this, dst_vma, src_vma, *src_pmd, a.align_down(kPmdSpan));
      if (copied.is_error()) {
        status = copied.error();
        break;
      }
      if (*copied) {
        a = next;
        continue;
      }
    }
    if (!src_pmd || src_pmd->load() == 0 || !page_table_->pte_offset(*src_pmd, a)) {
      // No table (or a PMD swap entry, not modelled).
      a = next;
      continue;
    }
    Result<EntrySlot> dst_pmd = child.page_table().walk_pmd_alloc(a);
    Result<EntrySlot> dst_table =
        dst_pmd.is_ok() ? child.page_table().pte_alloc(*dst_pmd, a) : Result<EntrySlot>(dst_pmd.error());
    if (dst_table.is_error()) {
      status = make_error(Errno::kENOMEM, "fork: no page for the child's page table at {}", a);
      break;
    }
    SpinLocker src_guard(page_table_->lock());
    SpinLocker dst_guard(child.page_table().lock());
    for (VirtAddr p = a; p < next; p += kPageSize) {
      const EntrySlot src_pte = *page_table_->pte_offset(*src_pmd, p);
      const EntrySlot dst_pte = *child.page_table().pte_offset(*dst_pmd, p);
      status = copier.copy_one(src_pte, dst_pte, p);
      if (status.is_error()) break;
    }
    a = next;
  }
  if (cow) {
    // The parent's write-protections are seen before anyone can use the child.
    flush_tlb_range(src_vma.start, src_vma.end);
    invalidate_range_end(range);
  }
  return status;
}

}  // namespace dpmm::mm
