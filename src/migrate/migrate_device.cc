// mm/migrate_device.c (migrate_vma_collect, migrate_device_unmap, migrate_vma_setup,
// migrate_vma_insert_page, __migrate_device_pages, __migrate_device_finalize,
// migrate_device_pfn_lock, migrate_device_range/pfns, migrate_device_coherent_folio), with the
// pieces of mm/rmap.c (try_to_migrate_one, folio_try_share_anon_rmap_pte) and mm/migrate.c
// (remove_migration_pte, folio_migrate_mapping, folio_migrate_flags) they use, and the 2026
// series' *_from_page entry helpers (migration device-private entries for dpas pages).
//
// Locks taken here, in rank order: folio locks (trylock while collecting; the caller's
// locked dst folios), the anon_vma lock (rmap walks), MMU-notifier callbacks (a driver may
// take its device mutex), page-table locks. A TLB flush may run under a page-table lock:
// hardware walks never block inside their guard (mm.h).
#include "migrate/migrate_device.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "base/trace.h"
#include "devmem/dev_pagemap.h"
#include "devmem/device_memory.h"
#include "migrate/device_kernel.h"
#include "mm/anon_rmap.h"
#include "mm/huge_memory.h"
#include "mm/migration_entry.h"
#include "mm/page_vma_mapped.h"
#include "mm/rmap.h"
#include "page/folio_lock.h"

namespace dpmm::migrate {
namespace {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;
using arch::Softleaf;
using arch::SwpBit;
using page::Folio;
using page::Page;

constexpr MigratePfnFlags kMig = MigratePfnFlags::kMigrate;

using mm::MigrationKind;

// VM_SPECIAL (include/linux/mm.h).
constexpr mm::VmFlags kVmSpecial =
    mm::VmFlags::kIo | mm::VmFlags::kDontExpand | mm::VmFlags::kPfnMap | mm::VmFlags::kMixedMap;

// make_{readable,readable_exclusive,writable}_migration_entry_from_page (series patches 6
// and 9): by the page's own numbering, an offset for a dpas device-private page.
Softleaf make_migration_entry_from_page(const devmem::DeviceMemory& dm, arch::SoftleafFormat fmt,
                                        const Page* page, MigrationKind kind) {
  return mm::make_migration_entry(fmt, dm.page_to_pfn_or_offset(page), kind);
}

enum class Writable : bool { kNo, kYes };

// make_{readable,writable}_device_private_entry_from_page (series patch 10).
Softleaf make_device_private_entry_from_page(const devmem::DeviceMemory& dm,
                                             arch::SoftleafFormat fmt, const Page* page,
                                             Writable writable) {
  const arch::PfnOrOffset where = dm.page_to_pfn_or_offset(page);
  return writable == Writable::kYes ? MUST(arch::make_writable_device_private_entry(fmt, where), "fits")
                  : MUST(arch::make_readable_device_private_entry(fmt, where), "fits");
}

// folio_try_share_anon_rmap_pte (include/linux/rmap.h): an exclusive anon page becomes
// shared before its mapping is replaced by a migration entry; EBUSY when it may be pinned
// (GUP could be writing to it). REQUIRES: the PTE already cleared (the caller's
// ptep_clear_flush), so no new GUP-fast pin can start.
Status folio_try_share_anon_rmap_pte(Folio folio, Page* page) {
  if (mm::folio_maybe_dma_pinned(folio))
    return make_error(Errno::kEBUSY, "the anon-exclusive page may be pinned");
  page->clear_flag(page::PageFlag::kAnonExclusive);
  return ok();
}

// The target and walk flags page_vma_mapped_walk needs for `folio` (the series'
// page_vma_walk_flags / folio_page_vma_walk_pfn): an offset with PVMW_DEVICE_PRIVATE for a
// dpas device-private folio, the PFN otherwise.
struct WalkTarget {
  arch::PfnOrOffset where;
  mm::PvmwFlags flags;
};
WalkTarget walk_target(const devmem::DeviceMemory& dm, Folio folio, mm::PvmwFlags base) {
  const arch::PfnOrOffset where = dm.page_to_pfn_or_offset(folio.head());
  return {where, where.is_offset() ? base | mm::PvmwFlags::kDevicePrivate : base};
}

// `where` advanced by `i` pages, in its own numbering (the i-th page of a folio).
arch::PfnOrOffset nth(arch::PfnOrOffset where, uint64_t i) {
  return where.is_pfn() ? arch::PfnOrOffset::of_pfn(Pfn(where.raw_index() + i))
                        : arch::PfnOrOffset::of_offset(DevPrivOffset(where.raw_index() + i));
}

// The index in `folio` of the page `vma` maps at `address` (the rmap walk's first address of
// the folio in that VMA), and how many of the folio's pages the VMA holds from there on.
struct FolioSpan {
  uint64_t first;
  uint64_t end;
};
FolioSpan folio_span(Folio folio, const mm::Vma& vma, VirtAddr address) {
  const uint64_t first = vma.linear_page_index(address) - folio.index();
  const uint64_t room = (vma.end - address) >> kPageShift;
  return {first, std::min<uint64_t>(folio.nr_pages().raw(), first + room)};
}

uint64_t swap_word(const mm::Kernel& k, Softleaf leaf, SwpBit bits) {
  return MUST(k.codec().make_swap(EntryLevel::kPte, leaf, bits), "a valid softleaf encodes");
}

// ---------------------------------------------------------------------------------------
// remove_migration_ptes (mm/migrate.c): put `dst` (or `src` itself) back where `src` has a
// migration entry, in every mm the rmap reaches.

// One migration PTE of `src` (page `src_page`) becomes a mapping of `new_page` of `dst`.
// REQUIRES: the page-table lock.
void remove_migration_pte_one(const devmem::DeviceMemory& dm, Folio dst, Page* new_page,
                              mm::Mm& mm, const mm::Vma& vma, const mm::PageVmaMapped& found) {
  mm::Kernel& k = mm.kernel();
  const DecodedEntry old = k.codec().decode(EntryLevel::kPte, found.entry);
  const Softleaf leaf = old.leaf;
  page::folio_get(dst);
  // mk_pte(new, vm_page_prot), old unless the migration entry was young.
  Prot p = vma.page_prot;
  if (arch::softleaf_is_migration_young(leaf)) p = p | Prot::kAccessed;
  if (dst.test_flag(page::PageFlag::kDirty) && arch::softleaf_is_migration_dirty(leaf))
    p = p | Prot::kDirty;
  if (arch::has(old.swp_bits, SwpBit::kSoftDirty)) p = p | Prot::kSoftDirty;
  if (arch::softleaf_is_migration_write(leaf)) {
    // pte_mkwrite: a writable migration entry exists only in a VM_WRITE VMA (mprotect
    // downgrades migration entries with the rest).
    p = p | Prot::kWrite;
  } else if (arch::has(old.swp_bits, SwpBit::kUffdWp)) {
    p = p | Prot::kUffdWp;
  }
  const mm::RmapExclusive exclusive = dst.is_anon() && !arch::softleaf_is_migration_read(leaf)
                                          ? mm::RmapExclusive::kYes
                                          : mm::RmapExclusive::kNo;
  uint64_t word = 0;
  if (devmem::is_device_private_page(new_page)) {
    const Softleaf dev =
        make_device_private_entry_from_page(dm, k.softleaf_format(), new_page,
                                            arch::has(p, Prot::kWrite) ? Writable::kYes
                                                                       : Writable::kNo);
    const SwpBit bits = old.swp_bits & (SwpBit::kSoftDirty | SwpBit::kUffdWp);
    word = swap_word(k, dev, bits);
  } else {
    word = MUST(k.codec().make_present(EntryLevel::kPte, dm.page_to_pfn(new_page), p),
                "a page with a VMA protection encodes");
  }
  mm::folio_add_anon_rmap_pte(dst, new_page, exclusive);
  found.pte.store(word);
}

// remove_migration_pte for every page of `src` that `vma` holds from `address` on: a PMD
// migration entry becomes a PMD mapping of `dst` (remove_migration_pmd), each PTE one a PTE
// mapping of the page of `dst` at the same index (dst small: src is small too, or dst is src).
bool remove_migration_pte(const devmem::DeviceMemory& dm, Folio src, Folio dst, mm::Mm& mm,
                          const mm::Vma& vma, VirtAddr address) {
  assert((dst == src || dst.nr_pages() == src.nr_pages()) && "a migration changes no size");
  const WalkTarget t = walk_target(dm, src, mm::PvmwFlags::kMigration);
  const FolioSpan span = folio_span(src, vma, address);
  SpinLocker guard(mm.page_table().lock());
  for (uint64_t i = span.first; i < span.end; ++i) {
    const VirtAddr a = address + (i - span.first) * kPageSize;
    const std::optional<mm::PageVmaMapped> found =
        mm::page_vma_mapped_walk(mm, vma, a, nth(t.where, i), t.flags);
    if (!found) continue;
    if (found->level == EntryLevel::kPmd) {
      mm::remove_migration_pmd(mm, vma, found->pte, dst, dm.page_to_pfn_or_offset(dst.head()),
                               devmem::folio_is_device_private(dst) ? mm::PmdTarget::kDevicePrivate
                                                                    : mm::PmdTarget::kPresent);
      // One PMD covers the folio in this VMA.
      break;
    }
    remove_migration_pte_one(dm, dst, dst.head() + i, mm, vma, *found);
  }
  return true;
}

void remove_migration_ptes(mm::Kernel& k, const devmem::DeviceMemory& dm, Folio src, Folio dst) {
  mm::rmap_walk(k, src, [&](mm::Mm& mm, const mm::Vma& vma, VirtAddr address) {
    return remove_migration_pte(dm, src, dst, mm, vma, address);
  });
}

// ---------------------------------------------------------------------------------------
// try_to_migrate (mm/rmap.c): replace every remaining mapping of a locked folio by a
// migration entry. Returns with folio_mapped() false unless some mapping could not be
// replaced (a pinned anon-exclusive page).

// One PTE mapping `page` of `folio` becomes a migration entry. Returns whether it did (a
// pinned anon-exclusive page is put back and stops the walk: *keep_going false).
// REQUIRES: the page-table lock.
bool try_to_migrate_pte(const devmem::DeviceMemory& dm, Folio folio, Page* page, mm::Mm& mm,
                        const mm::PageVmaMapped& found, bool* keep_going) {
  mm::Kernel& k = mm.kernel();
  const bool anon_exclusive = folio.is_anon() && mm::page_anon_exclusive(page);
  // ptep_clear_flush for a present PTE, pte_clear for a device-private entry.
  const uint64_t pteval = found.pte.exchange(0);
  const DecodedEntry d = k.codec().decode(EntryLevel::kPte, pteval);
  const bool present = d.kind == DecodedEntry::Kind::kPresent;
  if (present) mm.flush_tlb_range(found.address, found.address + kPageSize);
  if (present && arch::has(d.prot, Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);
  const arch::SoftleafFormat fmt = k.softleaf_format();
  if (devmem::folio_is_device_private(folio)) {
    if (anon_exclusive)
      MUST(folio_try_share_anon_rmap_pte(folio, page), "device-private pages are never pinned");
    const MigrationKind kind = arch::softleaf_is_device_private_write(d.leaf)
                                   ? MigrationKind::kWrite
                               : anon_exclusive ? MigrationKind::kReadExclusive
                                                : MigrationKind::kRead;
    const Softleaf leaf = make_migration_entry_from_page(dm, fmt, page, kind);
    found.pte.store(swap_word(k, leaf, d.swp_bits & (SwpBit::kSoftDirty | SwpBit::kUffdWp)));
  } else if (anon_exclusive && folio_try_share_anon_rmap_pte(folio, page).is_error()) {
    found.pte.store(pteval);  // pinned: put the mapping back and stop
    *keep_going = false;
    return false;
  } else {
    assert(present && "a RAM or coherent folio is mapped by present PTEs");
    const MigrationKind kind = arch::has(d.prot, Prot::kWrite) ? MigrationKind::kWrite
                               : anon_exclusive               ? MigrationKind::kReadExclusive
                                                              : MigrationKind::kRead;
    Softleaf leaf = make_migration_entry_from_page(dm, fmt, page, kind);
    if (arch::has(d.prot, Prot::kAccessed)) leaf = arch::make_migration_entry_young(leaf);
    if (arch::has(d.prot, Prot::kDirty)) leaf = arch::make_migration_entry_dirty(leaf);
    SwpBit bits = SwpBit::kNone;
    if (arch::has(d.prot, Prot::kSoftDirty)) bits = bits | SwpBit::kSoftDirty;
    if (arch::has(d.prot, Prot::kUffdWp)) bits = bits | SwpBit::kUffdWp;
    found.pte.store(swap_word(k, leaf, bits));
  }
  mm::folio_remove_rmap_pte(folio, page);
  return true;
}

// try_to_migrate_one for every page of `folio` that `vma` holds from `address` on: a PMD
// mapping (THP, device THP) becomes one PMD migration entry (set_pmd_migration_entry), each
// PTE mapping a PTE migration entry.
bool try_to_migrate_one(const devmem::DeviceMemory& dm, Folio folio, mm::Mm& mm,
                        const mm::Vma& vma, VirtAddr address) {
  const WalkTarget t = walk_target(dm, folio, mm::PvmwFlags::kNone);
  const FolioSpan span = folio_span(folio, vma, address);
  // MMU_NOTIFY_CLEAR without an owner: every secondary MMU drops its translation.
  const mm::MmuNotifierRange range = mm.notifier_range(
      mm::MmuNotifyEvent::kClear, address, address + (span.end - span.first) * kPageSize);
  mm.invalidate_range_start(range);
  int removed = 0;
  bool keep_going = true;
  {
    SpinLocker guard(mm.page_table().lock());
    for (uint64_t i = span.first; i < span.end && keep_going; ++i) {
      const VirtAddr a = address + (i - span.first) * kPageSize;
      const std::optional<mm::PageVmaMapped> found =
          mm::page_vma_mapped_walk(mm, vma, a, nth(t.where, i), t.flags);
      if (!found) continue;
      if (found->level == EntryLevel::kPmd) {
        // The PMD's reference goes inside; a pinned exclusive THP stays mapped.
        if (mm::set_pmd_migration_entry(mm, found->address, found->pte, folio).is_error())
          keep_going = false;
        break;
      }
      if (try_to_migrate_pte(dm, folio, folio.head() + i, mm, *found, &keep_going)) ++removed;
    }
  }
  mm.invalidate_range_end(range);
  // The mappings' references; the migration holds another, so this never frees the folio.
  for (int i = 0; i < removed; ++i) page::folio_put(folio);
  return keep_going;
}

void try_to_migrate(mm::Kernel& k, const devmem::DeviceMemory& dm, Folio folio) {
  mm::rmap_walk(k, folio, [&](mm::Mm& mm, const mm::Vma& vma, VirtAddr address) {
    return try_to_migrate_one(dm, folio, mm, vma, address);
  });
}

// ---------------------------------------------------------------------------------------
// migrate_vma_check_page: no reference beyond the migration's own, the fault path's and the
// mappings (there are none left after unmap). ZONE_DEVICE pages get one more, as the kernel
// still allows for them.
bool migrate_vma_check_page(Page* page, const Page* fault_page) {
  Folio folio = page::page_folio(page);
  int extra = 1 + (page == fault_page ? 1 : 0);
  if (folio.is_zone_device()) ++extra;
  // File-backed folios (a page-cache reference, + private) are not collected in dpmm.
  return folio.ref_count() - extra <= folio.mapcount();
}

// migrate_device_unmap. Returns the number of entries still migrating.
uint64_t migrate_device_unmap(mm::Kernel& k, const devmem::DeviceMemory& dm,
                              std::span<MigratePfn> src, Page* fault_page) {
  // The head of the fault folio, or null.
  const Page* fault_folio = fault_page != nullptr ? page::page_folio(fault_page).head() : nullptr;
  uint64_t unmapped = 0;
  uint64_t restore = 0;
  for (size_t i = 0; i < src.size();) {
    MigratePfn& e = src[i];
    Page* page = migrate_pfn_to_page(dm, e);
    if (page == nullptr) {
      if (e.is_migrate()) ++unmapped;
      ++i;
      continue;
    }
    Folio folio = page::page_folio(page);
    // A large folio is one entry; the entries of its other pages are empty.
    const uint64_t nr = folio.nr_pages().raw();
    if (nr > 1) e.set(MigratePfnFlags::kCompound);
    i += nr;
    // dpmm has no LRU: the kernel isolates RAM folios here (taking a reference) and drops
    // the collect reference; the count is the same either way.
    if (folio.mapcount() > 0) try_to_migrate(k, dm, folio);
    if (folio.mapcount() > 0 || !migrate_vma_check_page(page, fault_page)) {
      e.clear(kMig);
      ++restore;
      continue;
    }
    ++unmapped;
  }
  for (MigratePfn& e : src) {
    if (restore == 0) break;
    Page* page = migrate_pfn_to_page(dm, e);
    if (page == nullptr || e.is_migrate()) continue;
    Folio folio = page::page_folio(page);
    remove_migration_ptes(k, dm, folio, folio);
    e = MigratePfn();
    if (fault_folio != folio.head()) page::folio_unlock(folio);
    page::folio_put(folio);
    --restore;
  }
  return unmapped;
}

// ---------------------------------------------------------------------------------------
// migrate_vma_collect_pmd for the PTEs of one page table, under its lock.

struct Collector {
  mm::Mm& mm;
  mm::Kernel& k;
  const devmem::DeviceMemory& dm;
  MigrateVma& args;
  // Head of the fault folio, or null. A split of the fault folio moves the fault path's lock
  // and reference to the fault page's new folio and updates this.
  const Page* fault_folio;

  void emit(MigratePfn mpfn) {
    args.dst[args.npages] = MigratePfn();
    args.src[args.npages++] = mpfn;
  }

  // migrate_vma_collect_hole (also for a none PMD): anonymous VMAs may be populated. With
  // MIGRATE_VMA_SELECT_COMPOUND a hole of a whole aligned 2 MiB is one MIGRATE|COMPOUND entry
  // (one collected page) and 511 empty ones, which a non-compound dst splits back into pages
  // (migrate_vma_pages).
  void hole(VirtAddr start, VirtAddr end) {
    const bool anon = args.vma->is_anonymous();
    if (anon && has(args.flags, MigrateVmaSelect::kCompound) &&
        start.is_aligned(mm::kHpagePmdSize) && end == start + mm::kHpagePmdSize) {
      emit(MigratePfn::of(kMig | MigratePfnFlags::kCompound));
      ++args.cpages;
      for (VirtAddr a = start + kPageSize; a < end; a += kPageSize) emit(MigratePfn());
      return;
    }
    for (VirtAddr a = start; a < end; a += kPageSize) {
      if (anon) {
        emit(MigratePfn::of(kMig));
        ++args.cpages;
      } else {
        emit(MigratePfn());
      }
    }
  }

  // What collecting one PTE gave: its src entry, and whether a present PTE was cleared (the
  // range then needs a TLB flush).
  struct Collected {
    MigratePfn mpfn;
    bool cleared_present = false;
    // A large folio met here (referenced): split it and scan again from this PTE.
    std::optional<Folio> large = std::nullopt;
  };

  // One PTE. REQUIRES the page-table lock.
  Collected collect_pte(const mm::EntrySlot& ptep, VirtAddr addr) {
    const uint64_t word = ptep.load();
    const DecodedEntry d = k.codec().decode(EntryLevel::kPte, word);
    if (d.kind == DecodedEntry::Kind::kNone) {
      if (!args.vma->is_anonymous()) return {MigratePfn()};
      ++args.cpages;
      return {MigratePfn::of(kMig)};
    }
    Page* page = nullptr;
    MigratePfn mpfn;
    if (d.kind == DecodedEntry::Kind::kSwap) {
      // Only device-private entries are migratable; swap, migration and device-exclusive
      // entries are left alone.
      if (!arch::softleaf_is_device_private(d.leaf)) return {MigratePfn()};
      Result<Page*> p = dm.device_private_entry_to_page(d.leaf);
      if (p.is_error()) return {MigratePfn()};
      page = *p;
      if (!has(args.flags, MigrateVmaSelect::kDevicePrivate) ||
          devmem::page_pgmap(page)->owner() != args.pgmap_owner)
        return {MigratePfn()};
      mpfn = migrate_pfn_from_page(dm, page) | kMig;
      if (arch::softleaf_is_device_private_write(d.leaf)) mpfn = mpfn | MigratePfnFlags::kWrite;
    } else if (d.kind == DecodedEntry::Kind::kPresent) {
      if (k.is_zero_pfn(d.pfn) && has(args.flags, MigrateVmaSelect::kSystem)) {
        ++args.cpages;
        return {MigratePfn::of(kMig)};
      }
      page = mm::vm_normal_page(k, d);
      if (page != nullptr && !page->is_zone_device() &&
          !has(args.flags, MigrateVmaSelect::kSystem))
        return {MigratePfn()};
      if (page != nullptr && devmem::is_device_coherent_page(page) &&
          (!has(args.flags, MigrateVmaSelect::kDeviceCoherent) ||
           devmem::page_pgmap(page)->owner() != args.pgmap_owner))
        return {MigratePfn()};
      mpfn = MigratePfn::migrate_pfn(arch::PfnOrOffset::of_pfn(d.pfn)) | kMig;
      if (arch::has(d.prot, Prot::kWrite)) mpfn = mpfn | MigratePfnFlags::kWrite;
    } else {
      return {MigratePfn()};
    }
    if (page != nullptr && page->is_compound()) {
      // migrate_vma_split_folio, then "goto again": the caller splits and rescans. The entry's
      // reference keeps the folio while the lock is dropped; this one is the caller's.
      Folio large = page::page_folio(page);
      page::folio_get(large);
      return {MigratePfn(), false, large};
    }
    if (page == nullptr || page->mapping_word() == 0) return {MigratePfn()};

    Folio folio = page::page_folio(page);
    // The collect reference pins the folio (and so "freezes" the PTE) until finalize.
    page::folio_get(folio);
    const bool is_fault = fault_folio == folio.head();
    if (!is_fault && !page::folio_trylock(folio)) {
      page::folio_put(folio);  // best effort: contention skips the page
      return {MigratePfn()};
    }
    const bool anon_exclusive = folio.is_anon() && mm::page_anon_exclusive(page);
    uint64_t pte = 0;
    if (anon_exclusive) {
      pte = ptep.exchange(0);  // ptep_clear_flush
      if (d.kind == DecodedEntry::Kind::kPresent) mm.flush_tlb_range(addr, addr + kPageSize);
      if (folio_try_share_anon_rmap_pte(folio, page).is_error()) {
        ptep.store(pte);
        if (!is_fault) page::folio_unlock(folio);
        page::folio_put(folio);
        return {MigratePfn()};
      }
    } else {
      pte = ptep.exchange(0);  // ptep_get_and_clear
    }
    ++args.cpages;
    // Re-decode: a hardware walk may have set accessed/dirty since the first read.
    const DecodedEntry now = k.codec().decode(EntryLevel::kPte, pte);
    const bool present = now.kind == DecodedEntry::Kind::kPresent;
    if (present && arch::has(now.prot, Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);
    const MigrationKind kind = mpfn.has(MigratePfnFlags::kWrite) ? MigrationKind::kWrite
                               : anon_exclusive                  ? MigrationKind::kReadExclusive
                                                                 : MigrationKind::kRead;
    Softleaf leaf = make_migration_entry_from_page(dm, k.softleaf_format(), page, kind);
    SwpBit bits = SwpBit::kNone;
    if (present) {
      if (arch::has(now.prot, Prot::kAccessed)) leaf = arch::make_migration_entry_young(leaf);
      if (arch::has(now.prot, Prot::kDirty)) leaf = arch::make_migration_entry_dirty(leaf);
      if (arch::has(now.prot, Prot::kSoftDirty)) bits = bits | SwpBit::kSoftDirty;
      if (arch::has(now.prot, Prot::kUffdWp)) bits = bits | SwpBit::kUffdWp;
    } else {
      bits = now.swp_bits & (SwpBit::kSoftDirty | SwpBit::kUffdWp);
    }
    ptep.store(swap_word(k, leaf, bits));
    // As a regular unmap: the mapping's rmap and reference go; the collect reference keeps
    // the folio.
    mm::folio_remove_rmap_pte(folio, page);
    page::folio_put(folio);
    return {mpfn, present};
  }

  // The split fallback of migrate_vma_collect_huge_pmd: split_huge_pmd, then split_folio of
  // the THP under its lock (a failure leaves it large: its pages are then skipped).
  void collect_split_huge_pmd(mm::EntrySlot pmd, VirtAddr addr) {
    const std::optional<DecodedEntry> d = mm::pmd_trans_huge(k, pmd.load());
    if (!d) return;
    Page* head = mm::vm_normal_page_pmd(k, *d);
    mm::split_huge_pmd(mm, *args.vma, pmd, addr);
    if (head == nullptr) return;  // the huge zero folio
    Folio folio = page::page_folio(head);
    split_collected_folio(folio);
  }

  // migrate_vma_split_folio for a folio the caller holds a reference on, which this drops:
  // split_folio under the folio lock (a trylock: contention leaves the folio large, as a
  // failed split does). The fault folio is already locked and referenced by the fault path,
  // whose reference serves as the split's; afterwards its lock and reference move to the
  // folio that now holds the fault page, which the fault path unlocks and puts
  // (unlock_page(vmf->page)). Returns whether the folio split.
  bool split_referenced(Folio folio) {
    if (fault_folio == folio.head()) {
      page::folio_put(folio);
      if (mm::split_folio(k, folio).is_error()) return false;
      const Folio now = page::page_folio(args.fault_page);
      if (now != folio) {
        page::folio_get(now);
        page::folio_lock(now);
        page::folio_unlock(folio);
        page::folio_put(folio);
      }
      fault_folio = now.head();
      return true;
    }
    bool split = false;
    if (page::folio_trylock(folio)) {
      split = mm::split_folio(k, folio).is_ok();
      page::folio_unlock(folio);
    }
    page::folio_put(folio);
    return split;
  }

  // split_referenced for a folio the caller holds no reference on (its PTEs do).
  void split_collected_folio(Folio folio) {
    if (page::folio_try_get(folio)) (void)split_referenced(folio);
  }

  // The split fallback of migrate_vma_collect_huge_pmd for a device THP of the caller's: the
  // PMD becomes 512 device-private PTEs, then the folio splits (zone_device_private_split_cb
  // gives the new folios their pagemap), and the pages are collected one by one.
  // REQUIRES: the caller checked the select flags and the owner.
  void collect_split_device_pmd(mm::EntrySlot pmd, VirtAddr addr, Page* head) {
    mm::split_huge_pmd(mm, *args.vma, pmd, addr);
    split_collected_folio(page::page_folio(head));
  }

  enum class HugeCollect : uint8_t { kCollected, kSkipped, kFallback };

  // migrate_vma_collect_huge_pmd's MIGRATE_VMA_SELECT_COMPOUND path for a THP or device THP
  // whose PMD (read as `word`) covers [start, start + 2 MiB): the folio is referenced,
  // locked (trylock; the fault folio already is) and its PMD becomes a migration entry; one
  // src entry MIGRATE|COMPOUND (|WRITE when the PMD was writable) stands for the whole
  // folio and the other 511 are empty. kSkipped: lock contention (the range is skipped);
  // kFallback: the PMD changed meanwhile or the folio may be pinned (split instead).
  HugeCollect collect_huge_pmd(mm::EntrySlot pmd, VirtAddr start, uint64_t word, Page* head,
                               bool write) {
    Folio folio = page::page_folio(head);
    const bool is_fault = fault_folio == folio.head();
    MigratePfn mpfn = migrate_pfn_from_page(dm, head) | kMig | MigratePfnFlags::kCompound;
    if (write) mpfn = mpfn | MigratePfnFlags::kWrite;
    {
      SpinLocker guard(mm.page_table().lock());
      if (pmd.load() != word) return HugeCollect::kFallback;
      page::folio_get(folio);
      if (!is_fault && !page::folio_trylock(folio)) {
        page::folio_put(folio);
        return HugeCollect::kSkipped;
      }
      if (mm::set_pmd_migration_entry(mm, start, pmd, folio).is_ok()) {
        ++args.cpages;
        emit(mpfn);
        for (uint64_t i = 1; i < mm::kHpagePmdNr; ++i) emit(MigratePfn());
        return HugeCollect::kCollected;
      }
    }
    if (!is_fault) page::folio_unlock(folio);
    page::folio_put(folio);
    return HugeCollect::kFallback;
  }

  void skip(VirtAddr start, VirtAddr end) {
    for (VirtAddr a = start; a < end; a += kPageSize) emit(MigratePfn());
  }

  // collect_huge_pmd, with a skipped range filled in: true when the 2 MiB is done with
  // (collected or skipped), false when the caller falls back to splitting.
  bool collected_whole(mm::EntrySlot pmd, VirtAddr start, uint64_t word, Page* head,
                       bool write) {
    switch (collect_huge_pmd(pmd, start, word, head, write)) {
      case HugeCollect::kCollected:
        return true;
      case HugeCollect::kSkipped:
        skip(start, start + mm::kHpagePmdSize);
        return true;
      case HugeCollect::kFallback:
        return false;
    }
    return false;
  }

  // migrate_vma_collect_pmd over [start, end), inside one PMD.
  void collect_pmd(mm::EntrySlot pmd, VirtAddr start, VirtAddr end) {
    mm::PageTable& pt = mm.page_table();
    const uint64_t word = pmd.load();
    // migrate_vma_collect_huge_pmd: whole-PMD collection needs SELECT_COMPOUND and a range
    // that covers the PMD.
    const bool whole = has(args.flags, MigrateVmaSelect::kCompound) &&
                       start.is_aligned(mm::kHpagePmdSize) && end == start + mm::kHpagePmdSize;
    if (const std::optional<DecodedEntry> d = mm::pmd_trans_huge(k, word)) {
      // A system THP needs SELECT_SYSTEM. The huge zero folio is a hole (a per-page insert
      // splits it later). Otherwise a whole THP is collected as one entry, or split (the
      // PMD, then the folio under its lock) and collected page by page.
      if (!has(args.flags, MigrateVmaSelect::kSystem)) return skip(start, end);
      Page* head = mm::vm_normal_page_pmd(k, *d);
      if (head == nullptr) return hole(start, end);
      if (whole && collected_whole(pmd, start, word, head, arch::has(d->prot, Prot::kWrite)))
        return;
      collect_split_huge_pmd(pmd, start);
    } else if (mm::pmd_is_device_private_entry(k, word)) {
      // A device THP of the caller's (SELECT_DEVICE_PRIVATE, its owner): as above; any other
      // is skipped.
      const Softleaf leaf = mm::softleaf_from_pmd(k, word);
      Page* head = mm::device_private_pmd_page(k, leaf);
      if (!has(args.flags, MigrateVmaSelect::kDevicePrivate) || head == nullptr ||
          devmem::page_pgmap(head)->owner() != args.pgmap_owner)
        return skip(start, end);
      if (whole &&
          collected_whole(pmd, start, word, head, arch::softleaf_is_device_private_write(leaf)))
        return;
      collect_split_device_pmd(pmd, start, head);
    }
    if (!pt.pte_offset(pmd, start)) {
      // A PMD migration entry (another migration's THP), or a leaf that did not split: the
      // kernel skips what is not a device-private entry.
      return skip(start, end);
    }
    // The PTE scan. A large folio (a PTE-mapped THP or device THP) stops it: the folio is
    // split and the scan goes on from the same PTE; one that does not split ends the scan,
    // the rest of the range skipped (migrate_vma_collect_skip).
    for (VirtAddr a = start; a < end;) {
      std::optional<Folio> large = std::nullopt;
      {
        bool unmapped = false;
        const VirtAddr from = a;
        SpinLocker guard(pt.lock());
        for (; a < end; a += kPageSize) {
          const std::optional<mm::EntrySlot> ptep = pt.pte_offset(pmd, a);
          if (!ptep) break;
          Collected c = collect_pte(*ptep, a);
          if (c.large) {
            large = c.large;
            break;
          }
          unmapped = unmapped || c.cleared_present;
          emit(c.mpfn);
        }
        // Only flush when a present entry was changed.
        if (unmapped) mm.flush_tlb_range(from, a);
      }
      if (a < end && (!large || !split_referenced(*large))) return skip(a, end);
    }
  }

  // walk_page_range with migrate_vma_walk_ops.
  void walk(VirtAddr start, VirtAddr end) {
    constexpr uint64_t kPmdSpan = uint64_t{1} << mm::kPmdShift;
    for (VirtAddr a = start; a < end;) {
      const VirtAddr next(std::min(a.align_down(kPmdSpan).raw() + kPmdSpan, end.raw()));
      const std::optional<mm::EntrySlot> pmd = mm.page_table().walk_pmd(a);
      if (!pmd || pmd->load() == 0) {
        hole(a, next);
      } else {
        collect_pmd(*pmd, a, next);
      }
      a = next;
    }
  }
};

// migrate_vma_insert_page: map a new page where a hole or the zero page was
// (do_anonymous_page's path with a ZONE_DEVICE or system page). On failure clears kMigrate.
void migrate_vma_insert_page(mm::Mm& mm, const devmem::DeviceMemory& dm, const MigrateVma& args,
                             VirtAddr addr, Page* page, MigratePfn& src)
    REQUIRES_SHARED(mm.mmap_lock()) {
  mm::Kernel& k = mm.kernel();
  const mm::Vma& vma = *args.vma;
  Folio folio = page::page_folio(page);
  auto abort = [&] { src.clear(kMig); };
  if (!vma.is_anonymous()) return abort();
  Result<mm::EntrySlot> pmd = mm.page_table().walk_pmd_alloc(addr);
  if (pmd.is_error()) return abort();
  // The huge zero folio (collected as a hole) splits into zero-page PTEs, which the insert
  // then replaces; any other leaf (a THP faulted in since collection) is left alone.
  if (const std::optional<DecodedEntry> leaf = mm::pmd_trans_huge(k, pmd->load())) {
    if (!mm::is_huge_zero_pmd(k, *leaf)) return abort();
    mm::split_huge_pmd(mm, vma, *pmd, addr);
  }
  Result<mm::EntrySlot> ptep = mm.page_table().pte_alloc(*pmd, addr);
  if (ptep.is_error()) return abort();
  mm.anon_vma_prepare(vma);
  // __folio_mark_uptodate: the driver's copy is complete before the entry is visible.
  folio.set_flag(page::PageFlag::kUptodate);
  uint64_t entry = 0;
  if (devmem::folio_is_device_private(folio)) {
    const Softleaf leaf = make_device_private_entry_from_page(
        dm, k.softleaf_format(), page,
        has(vma.flags, mm::VmFlags::kWrite) ? Writable::kYes : Writable::kNo);
    entry = swap_word(k, leaf, SwpBit::kNone);
  } else {
    if (folio.is_zone_device() && !devmem::folio_is_device_coherent(folio)) return abort();
    Prot p = vma.page_prot;
    if (has(vma.flags, mm::VmFlags::kWrite)) p = p | Prot::kWrite | Prot::kDirty;
    entry = MUST(k.codec().make_present(EntryLevel::kPte, dm.page_to_pfn(page), p),
                 "a page with a VMA protection encodes");
  }
  SpinLocker guard(mm.page_table().lock());
  const uint64_t orig = ptep->load();
  const DecodedEntry d = k.codec().decode(EntryLevel::kPte, orig);
  bool flush = false;
  if (d.kind == DecodedEntry::Kind::kPresent) {
    if (!k.is_zero_pfn(d.pfn)) return abort();
    flush = true;
  } else if (d.kind != DecodedEntry::Kind::kNone) {
    return abort();
  }
  // userfaultfd_missing: back off without delivering the fault.
  if (has(vma.flags, mm::VmFlags::kUffdMissing)) return abort();
  mm.add_rss(mm::RssMember::kAnonPages, 1);
  mm::folio_add_new_anon_rmap(folio, vma, addr, mm::RmapExclusive::kYes);
  page::folio_get(folio);  // the mapping's reference
  if (flush) {
    ptep->exchange(0);  // ptep_clear_flush of the zero page
    mm.flush_tlb_range(addr, addr + kPageSize);
  }
  ptep->store(entry);
  src = MigratePfn::of(kMig);
}

// migrate_vma_insert_huge_pmd_page: map the order-9 dst folio `page` by one PMD where a
// whole-PMD hole was collected (a device-private PMD for a device-private folio, a present
// leaf otherwise), with a deposited PTE table. On failure (the VMA cannot hold a THP there,
// no page for the table, the PMD populated since collection, userfaultfd missing) clears
// kMigrate.
void migrate_vma_insert_huge_pmd_page(mm::Mm& mm, const devmem::DeviceMemory& dm,
                                      const MigrateVma& args, VirtAddr addr, Page* page,
                                      MigratePfn& src) REQUIRES_SHARED(mm.mmap_lock()) {
  mm::Kernel& k = mm.kernel();
  const mm::Vma& vma = *args.vma;
  Folio folio = page::page_folio(page);
  auto abort = [&] { src.clear(kMig); };
  if (!vma.is_anonymous() || !mm::thp_vma_suitable_pmd(vma, addr) ||
      folio.order().raw() != mm::kHpagePmdOrder)
    return abort();
  Result<mm::EntrySlot> pmd = mm.page_table().walk_pmd_alloc(addr);
  if (pmd.is_error()) return abort();
  Result<Folio> table = k.alloc_folio(Order(0));  // pte_alloc_one
  if (table.is_error()) return abort();
  mm.anon_vma_prepare(vma);
  folio.set_flag(page::PageFlag::kUptodate);  // __folio_mark_uptodate
  const bool write = has(vma.flags, mm::VmFlags::kWrite);
  uint64_t entry = 0;
  if (devmem::folio_is_device_private(folio)) {
    entry = mm::make_device_private_pmd(k, dm.page_to_pfn_or_offset(page),
                                        write ? Prot::kWrite : Prot::kNone, SwpBit::kNone);
  } else {
    if (folio.is_zone_device() && !devmem::folio_is_device_coherent(folio)) {
      page::folio_put(*table);
      return abort();
    }
    Prot p = vma.page_prot | Prot::kAccessed;
    if (write) p = p | Prot::kWrite | Prot::kDirty;
    entry = MUST(k.codec().make_present(EntryLevel::kPmd, dm.page_to_pfn(page), p),
                 "an order-9 folio with a VMA protection encodes as a PMD leaf");
  }
  bool mapped = false;
  bool replaced_zero = false;
  {
    SpinLocker guard(mm.page_table().lock());
    // A none PMD, or the huge zero folio's (which keeps its deposited table), takes the folio.
    const uint64_t old = pmd->load();
    const std::optional<DecodedEntry> leaf = mm::pmd_trans_huge(k, old);
    replaced_zero = leaf && mm::is_huge_zero_pmd(k, *leaf);
    if ((old == 0 || replaced_zero) && !has(vma.flags, mm::VmFlags::kUffdMissing)) {
      mapped = true;
      mm.add_rss(mm::RssMember::kAnonPages, static_cast<int64_t>(mm::kHpagePmdNr));
      mm::folio_add_new_anon_rmap(folio, vma, addr, mm::RmapExclusive::kYes,
                                  mm::RmapLevel::kPmd);
      page::folio_get(folio);  // the mapping's reference
      if (replaced_zero) {
        pmd->exchange(0);  // pmdp_invalidate, then the flush below
        mm.flush_tlb_range(addr, addr + mm::kHpagePmdSize);
      } else {
        mm.page_table().deposit_table(addr, *table);
      }
      pmd->store(entry);
    }
  }
  if (!mapped || replaced_zero) page::folio_put(*table);  // pte_free
  if (!mapped) abort();
}

// folio_migrate_mapping for an anonymous (or unmapped) folio: no reference beyond the
// expected ones, then index, mapping and swapbacked move to the new folio.
Status folio_migrate_mapping(Folio newfolio, Folio folio, int extra_count) {
  // folio_expected_ref_count: one per mapping (none left after unmap), no page or swap cache.
  const int expected = folio.mapcount() + extra_count + 1;
  if (folio.ref_count() != expected)
    return make_error(Errno::kEAGAIN, "folio has {} references, migration expects {}",
                      folio.ref_count(), expected);
  newfolio.set_index(folio.index());
  newfolio.set_mapping_word(folio.mapping_word());
  if (folio.test_flag(page::PageFlag::kSwapBacked)) newfolio.set_flag(page::PageFlag::kSwapBacked);
  return ok();
}

// folio_migrate_flags (mm/migrate.c), for the flags dpmm models.
void folio_migrate_flags(Folio newfolio, Folio folio) {
  using page::PageFlag;
  for (PageFlag f : {PageFlag::kReferenced, PageFlag::kUptodate, PageFlag::kWorkingset,
                     PageFlag::kDirty}) {
    if (folio.test_flag(f)) newfolio.set_flag(f);
  }
  if (folio.head()->test_and_clear_flag(PageFlag::kActive)) {
    newfolio.set_flag(PageFlag::kActive);
  } else if (folio.head()->test_and_clear_flag(PageFlag::kUnevictable)) {
    newfolio.set_flag(PageFlag::kUnevictable);
  }
}

// migrate_vma_split_unmapped_folio: the collected THP at src[idx] (locked, unmapped: a PMD
// migration entry wherever it was mapped) splits: every migration PMD into 512 migration
// PTEs (in each mm the rmap finds: a forked child may hold one too), then the folio into 512
// locked order-0 folios; src[idx..idx+511] become one entry per page with the same flags,
// COMPOUND cleared. EAGAIN when the folio has references beyond the migration's (and the
// fault path's).
Status migrate_vma_split_unmapped_folio(mm::Kernel& k, std::span<MigratePfn> src, size_t idx,
                                        Folio folio, const Page* fault_page) {
  mm::rmap_walk(k, folio, [&](mm::Mm& m, const mm::Vma& vma, VirtAddr address) {
    mm::split_huge_pmd_address(m, vma, address);
    return true;
  });
  const bool holds_fault = fault_page != nullptr && folio.contains(fault_page);
  TRY(mm::folio_split_unmapped(k, folio, 1 + (holds_fault ? 1 : 0)));
  src[idx].clear(MigratePfnFlags::kCompound);
  const arch::PfnOrOffset where = src[idx].pfn_or_offset();
  const MigratePfnFlags flags = src[idx].flags();
  for (size_t j = 1; j < mm::kHpagePmdNr && idx + j < src.size(); ++j)
    src[idx + j] = MigratePfn::migrate_pfn(nth(where, j)) | flags;
  return ok();
}

// __migrate_device_pages. `args` is null for migrate_device_pages (no vma: no holes).
void migrate_device_pages_impl(mm::Kernel& k, const devmem::DeviceMemory& dm,
                               std::span<MigratePfn> src, std::span<MigratePfn> dst, mm::Mm* mm,
                               MigrateVma* args) NO_THREAD_SAFETY_ANALYSIS {
  // The analysis cannot follow mm == args' mm; migrate_vma_pages holds its mmap_lock.
  assert(src.size() == dst.size() && "src and dst differ in length");
  std::optional<mm::MmuNotifierRange> range;
  for (size_t i = 0; i < src.size(); ++i) {
    Page* newpage = migrate_pfn_to_page(dm, dst[i]);
    Page* page = migrate_pfn_to_page(dm, src[i]);
    // A whole-PMD hole (MIGRATE|COMPOUND without a page) that the driver fills with small
    // pages: each of its 512 entries is inserted on its own (the kernel's split of the
    // compound src entry in __migrate_device_pages).
    if (page == nullptr && src[i].is_migrate() && src[i].has(MigratePfnFlags::kCompound) &&
        !dst[i].has(MigratePfnFlags::kCompound)) {
      assert(args != nullptr && mm != nullptr && "a pageless src entry without a vma");
      src[i].clear(MigratePfnFlags::kCompound);
      const size_t nr = std::min<size_t>(mm::kHpagePmdNr, src.size() - i);
      for (size_t j = 0; j < nr; ++j) {
        Page* np = migrate_pfn_to_page(dm, dst[i + j]);
        if (np == nullptr || dst[i + j].has(MigratePfnFlags::kCompound)) {
          src[i + j].clear(kMig);
          continue;
        }
        const VirtAddr addr = args->start + (i + j) * kPageSize;
        if (!range) {
          range = mm->notifier_range(mm::MmuNotifyEvent::kMigrate, addr, args->end,
                                     args->pgmap_owner);
          mm->invalidate_range_start(*range);
        }
        src[i + j].set(kMig);
        migrate_vma_insert_page(*mm, dm, *args, addr, np, src[i + j]);
      }
      i += nr - 1;
      continue;
    }
    if (newpage == nullptr) {
      src[i].clear(kMig);
      continue;
    }
    // A COMPOUND dst for a small (or absent, non-compound) src is not migrated, as the
    // kernel does.
    if (dst[i].has(MigratePfnFlags::kCompound) && !src[i].has(MigratePfnFlags::kCompound)) {
      src[i].clear(kMig);
      continue;
    }
    if (page == nullptr) {
      if (!src[i].is_migrate()) continue;
      // Only migrate_vma (a vma) produces entries without a page.
      assert(args != nullptr && mm != nullptr && "a pageless src entry without a vma");
      const VirtAddr addr = args->start + i * kPageSize;
      if (!range) {
        range = mm->notifier_range(mm::MmuNotifyEvent::kMigrate, addr, args->end,
                                   args->pgmap_owner);
        mm->invalidate_range_start(*range);
      }
      if (dst[i].has(MigratePfnFlags::kCompound)) {
        // src is a COMPOUND hole too (checked above).
        migrate_vma_insert_huge_pmd_page(*mm, dm, *args, addr, newpage, src[i]);
      } else {
        migrate_vma_insert_page(*mm, dm, *args, addr, newpage, src[i]);
      }
      continue;
    }
    Folio newfolio = page::page_folio(newpage);
    Folio folio = page::page_folio(page);
    // A whole THP (one COMPOUND src entry) whose dst is small pages: the folio splits and the
    // entry becomes 512 (migrate_vma_split_unmapped_folio); without a vma it stays put.
    size_t nr = 1;
    if (src[i].is_migrate() && src[i].has(MigratePfnFlags::kCompound) &&
        !dst[i].has(MigratePfnFlags::kCompound)) {
      if (args == nullptr ||
          migrate_vma_split_unmapped_folio(k, src, i, folio, args->fault_page).is_error()) {
        src[i].clear(kMig | MigratePfnFlags::kCompound);
        continue;
      }
      nr = std::min<size_t>(mm::kHpagePmdNr, src.size() - i);
    }
    const bool has_mapping = folio.mapping_word() != 0;
    if (devmem::folio_is_device_private(newfolio) || devmem::folio_is_device_coherent(newfolio)) {
      // Only anonymous memory moves to device memory; dpmm has no swap cache to drop
      // (folio_free_swap always succeeds).
      if (has_mapping && !folio.is_anon()) {
        src[i].clear(kMig);
        continue;
      }
    } else if (newfolio.is_zone_device()) {
      src[i].clear(kMig);  // other ZONE_DEVICE types are not supported
      continue;
    }
    // File folios would need their page-cache slot replaced: not modelled (docs/migrate.md).
    if (has_mapping && !folio.is_anon()) {
      src[i].clear(kMig);
      continue;
    }
    assert(!folio.test_flag(page::PageFlag::kWriteback) && "writeback folio under migration");
    for (size_t j = 0; j < nr; ++j) {
      Page* sp = migrate_pfn_to_page(dm, src[i + j]);
      Page* np = migrate_pfn_to_page(dm, dst[i + j]);
      if (np == nullptr) {
        src[i + j].clear(kMig);
        continue;
      }
      // The fault path's reference is on the fault page's folio only (the kernel counts it
      // for every piece of a split THP; dpmm for the piece that holds it, docs/migrate.md).
      const int extra = args != nullptr && args->fault_page == sp ? 1 : 0;
      if (folio_migrate_mapping(page::page_folio(np), page::page_folio(sp), extra).is_error()) {
        src[i + j].clear(kMig);
      } else {
        folio_migrate_flags(page::page_folio(np), page::page_folio(sp));
      }
    }
    i += nr - 1;
  }
  if (range) mm->invalidate_range_end(*range);
}

// __migrate_device_finalize.
void migrate_device_finalize_impl(mm::Kernel& k, const devmem::DeviceMemory& dm,
                                  std::span<MigratePfn> src, std::span<MigratePfn> dst,
                                  Page* fault_page) {
  assert(src.size() == dst.size() && "src and dst differ in length");
  // The head of the fault folio, or null.
  const Page* fault_folio = fault_page != nullptr ? page::page_folio(fault_page).head() : nullptr;
  auto release = [&](Folio f) {
    assert(fault_folio != f.head() && "the fault folio as a destination");
    page::folio_unlock(f);
    page::folio_put(f);
  };
  for (size_t i = 0; i < src.size(); ++i) {
    Page* newpage = migrate_pfn_to_page(dm, dst[i]);
    Page* page = migrate_pfn_to_page(dm, src[i]);
    std::optional<Folio> dfolio =
        newpage != nullptr ? std::optional(page::page_folio(newpage)) : std::nullopt;
    if (page == nullptr) {
      // An inserted hole page holds its mapping's own reference; a refused one goes back
      // to its allocator (folio_free for a device page).
      if (dfolio) release(*dfolio);
      continue;
    }
    Folio sfolio = page::page_folio(page);
    if (!src[i].is_migrate() || !dfolio) {
      if (dfolio) release(*dfolio);
      dfolio = sfolio;
    }
    // dpmm has no LRU (folio_add_lru for a system dst is a no-op).
    remove_migration_ptes(k, dm, sfolio, *dfolio);
    if (fault_folio != sfolio.head()) page::folio_unlock(sfolio);
    page::folio_put(sfolio);  // the collect reference: frees a migrated source
    if (*dfolio != sfolio) release(*dfolio);
  }
}

// migrate_device_pfn_lock: a referenced, locked, allocated head page, or 0.
MigratePfn migrate_device_pfn_lock(const devmem::DeviceMemory& dm, arch::PfnOrOffset where) {
  Result<Page*> page = dm.pfn_or_offset_to_page(where);
  if (page.is_error()) return MigratePfn();
  // folio_get_nontail_page: tails and free pages (refcount 0) are skipped.
  if ((*page)->is_tail()) return MigratePfn();
  Folio folio(*page);
  if (!page::folio_try_get(folio)) return MigratePfn();
  if (page::page_folio(*page) != folio) {
    page::folio_put(folio);
    return MigratePfn();
  }
  if (!page::folio_trylock(folio)) {
    page::folio_put(folio);
    return MigratePfn();
  }
  return MigratePfn::migrate_pfn(where) | kMig;
}

// One step of migrate_device_range/pfns at src[i] for the page at `where`: the locked head
// of an allocated folio, COMPOUND when large with the entries of its other pages emptied
// (they are skipped), or 0. Returns how many entries it filled.
size_t migrate_device_lock_one(const devmem::DeviceMemory& dm, std::span<MigratePfn> src,
                               size_t i, arch::PfnOrOffset where) {
  src[i] = migrate_device_pfn_lock(dm, where);
  if (!src[i].is_valid()) return 1;
  const Folio folio = page::page_folio(migrate_pfn_to_page(dm, src[i]));
  const size_t nr = std::min<size_t>(folio.nr_pages().raw(), src.size() - i);
  if (nr == 1) return 1;
  src[i].set(MigratePfnFlags::kCompound);
  for (size_t j = 1; j < nr; ++j) src[i + j] = MigratePfn();
  return nr;
}

// The finalize tracepoints: how many entries are migrating (the per-page success bit after
// migrate_*_pages), and, as the instant events "pages_to_device" / "pages_to_system", which
// way they go (the destination page's zone). Looks pages up only when a sink listens.
uint64_t trace_migrating(const devmem::DeviceMemory& dm, std::span<const MigratePfn> src,
                         std::span<const MigratePfn> dst) {
  if (trace_sink() == nullptr) return 0;
  uint64_t to_device = 0;
  uint64_t to_system = 0;
  for (size_t i = 0; i < src.size(); ++i) {
    if (!src[i].has(MigratePfnFlags::kMigrate) || !dst[i].is_valid()) continue;
    Page* page = migrate_pfn_to_page(dm, dst[i]);
    const uint64_t nr =
        dst[i].has(MigratePfnFlags::kCompound) ? page::page_folio(page).nr_pages().raw() : 1;
    (page->is_zone_device() ? to_device : to_system) += nr;
  }
  if (to_device != 0) trace_instant("pages_to_device", TraceCategory::kMigrate, to_device);
  if (to_system != 0) trace_instant("pages_to_system", TraceCategory::kMigrate, to_system);
  return to_device + to_system;
}

}  // namespace

Status migrate_vma_setup(mm::Mm& mm, MigrateVma& args) {
  TraceScope trace("migrate_vma_setup", TraceCategory::kMigrate,
                   args.end > args.start ? (args.end - args.start) >> kPageShift : 0);
  if (args.vma == nullptr) return make_error(Errno::kEINVAL, "migrate_vma_setup: no vma");
  const mm::Vma& vma = *args.vma;
  const int64_t nr_pages =
      args.end > args.start ? static_cast<int64_t>((args.end - args.start) >> kPageShift) : 0;
  args.start = args.start.page_base();
  args.end = args.end.page_base();
  if (has(vma.flags, mm::VmFlags::kHugetlb) || has_any(vma.flags, kVmSpecial))
    return make_error(Errno::kEINVAL, "migrate_vma_setup: hugetlb or VM_SPECIAL vma [{}, {})",
                      vma.start, vma.end);
  if (nr_pages <= 0)
    return make_error(Errno::kEINVAL, "migrate_vma_setup: empty range [{}, {})", args.start,
                      args.end);
  if (args.start < vma.start || args.start >= vma.end)
    return make_error(Errno::kEINVAL, "migrate_vma_setup: start {} outside the vma [{}, {})",
                      args.start, vma.start, vma.end);
  if (args.end <= vma.start || args.end > vma.end)
    return make_error(Errno::kEINVAL, "migrate_vma_setup: end {} outside the vma [{}, {})",
                      args.end, vma.start, vma.end);
  if (args.src.size() < static_cast<uint64_t>(nr_pages) ||
      args.dst.size() < static_cast<uint64_t>(nr_pages))
    return make_error(Errno::kEINVAL,
                      "migrate_vma_setup: src/dst hold {}/{} entries, the range needs {}",
                      args.src.size(), args.dst.size(), nr_pages);
  if (args.fault_page != nullptr && !devmem::is_device_private_page(args.fault_page))
    return make_error(Errno::kEINVAL, "migrate_vma_setup: fault_page is not device-private");
  if (args.fault_page != nullptr && !page::folio_test_locked(page::page_folio(args.fault_page)))
    return make_error(Errno::kEINVAL, "migrate_vma_setup: fault_page is not locked");
  assert(mm.vma_lookup(vma.start) != nullptr && "args.vma is not a VMA of this mm");

  std::fill_n(args.src.begin(), nr_pages, MigratePfn());
  args.cpages = 0;
  args.npages = 0;
  mm::Kernel& k = mm.kernel();
  const devmem::DeviceMemory& dm = device_memory_of(k);

  // migrate_vma_collect: the owner lets the driver skip its own invalidation.
  const mm::MmuNotifierRange range =
      mm.notifier_range(mm::MmuNotifyEvent::kMigrate, args.start, args.end, args.pgmap_owner);
  mm.invalidate_range_start(range);
  Collector c{mm, k, dm, args,
              args.fault_page != nullptr ? page::page_folio(args.fault_page).head() : nullptr};
  c.walk(args.start, args.end);
  mm.invalidate_range_end(range);
  args.end = args.start + (args.npages << kPageShift);

  if (args.cpages != 0)
    args.cpages = migrate_device_unmap(k, dm, args.src.first(args.npages), args.fault_page);
  return ok();
}

void migrate_vma_pages(mm::Mm& mm, MigrateVma& args) {
  TraceScope trace("migrate_vma_pages", TraceCategory::kMigrate, args.npages);
  mm::Kernel& k = mm.kernel();
  migrate_device_pages_impl(k, device_memory_of(k), args.src.first(args.npages),
                            args.dst.first(args.npages), &mm, &args);
}

void migrate_vma_finalize(mm::Mm& mm, MigrateVma& args) {
  mm::Kernel& k = mm.kernel();
  TraceScope trace("migrate_vma_finalize", TraceCategory::kMigrate,
                   trace_migrating(device_memory_of(k), args.src.first(args.npages),
                                   args.dst.first(args.npages)));
  migrate_device_finalize_impl(k, device_memory_of(k), args.src.first(args.npages),
                               args.dst.first(args.npages), args.fault_page);
}

Status migrate_device_range(mm::Kernel& kernel, std::span<MigratePfn> src,
                            arch::PfnOrOffset start, uint64_t npages) {
  TraceScope trace("migrate_device_range", TraceCategory::kMigrate, npages);
  if (src.size() < npages)
    return make_error(Errno::kEINVAL, "migrate_device_range: src holds {} entries, {} needed",
                      src.size(), npages);
  const devmem::DeviceMemory& dm = device_memory_of(kernel);
  for (uint64_t i = 0; i < npages;) i += migrate_device_lock_one(dm, src.first(npages), i, nth(start, i));
  migrate_device_unmap(kernel, dm, src.first(npages), nullptr);
  return ok();
}

Status migrate_device_pfns(mm::Kernel& kernel, std::span<MigratePfn> src) {
  const devmem::DeviceMemory& dm = device_memory_of(kernel);
  for (size_t i = 0; i < src.size();) {
    if (!src[i].is_valid()) {
      src[i++] = MigratePfn();
      continue;
    }
    i += migrate_device_lock_one(dm, src, i, src[i].pfn_or_offset());
  }
  migrate_device_unmap(kernel, dm, src, nullptr);
  return ok();
}

void migrate_device_pages(mm::Kernel& kernel, std::span<MigratePfn> src,
                          std::span<MigratePfn> dst) {
  migrate_device_pages_impl(kernel, device_memory_of(kernel), src, dst, nullptr, nullptr);
}

void migrate_device_finalize(mm::Kernel& kernel, std::span<MigratePfn> src,
                             std::span<MigratePfn> dst) {
  TraceScope trace("migrate_device_finalize", TraceCategory::kMigrate,
                   trace_migrating(device_memory_of(kernel), src, dst));
  migrate_device_finalize_impl(kernel, device_memory_of(kernel), src, dst, nullptr);
}

Status migrate_device_coherent_folio(mm::Kernel& kernel, page::Folio folio) {
  assert(!folio.is_large() && "migrate_device_coherent_folio of a large folio");
  const devmem::DeviceMemory& dm = device_memory_of(kernel);
  page::folio_lock(folio);
  MigratePfn src = migrate_pfn_from_page(dm, folio.head()) | kMig;
  // No vma and no page-table walk: unmap through the rmap directly. On failure the unmap's
  // restore pass has already unlocked the folio and dropped the caller's reference.
  migrate_device_unmap(kernel, dm, std::span(&src, 1), nullptr);
  if (!src.is_migrate())
    return make_error(Errno::kEBUSY, "migrate_device_coherent_folio: the folio could not be "
                      "unmapped (pinned or mapped elsewhere)");
  MigratePfn dst;
  std::optional<Folio> dfolio;
  if (Result<Folio> fresh = kernel.alloc_folio(Order(0)); fresh.is_ok()) {
    dfolio = *fresh;
    page::folio_lock(*dfolio);
    dst = migrate_pfn_from_page(dm, dfolio->head());
  }
  migrate_device_pages(kernel, std::span(&src, 1), std::span(&dst, 1));
  if (src.is_migrate()) {
    // folio_copy: coherent memory is CPU-addressable, so both sides have bytes.
    std::memcpy(kernel.page_bytes(dm.folio_pfn(*dfolio)).data(),
                kernel.page_bytes(dm.folio_pfn(folio)).data(), kPageSize);
  }
  migrate_device_finalize(kernel, std::span(&src, 1), std::span(&dst, 1));
  if (src.is_migrate()) return ok();
  return make_error(Errno::kEBUSY, "migrate_device_coherent_folio: {}",
                    dfolio ? "the folio has unexpected references" : "no system page free");
}

}  // namespace dpmm::migrate
