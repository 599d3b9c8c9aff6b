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

// Which migration entry replaces a mapping (try_to_migrate_one / collect).
enum class MigrationKind : uint8_t { kRead, kReadExclusive, kWrite };

// VM_SPECIAL (include/linux/mm.h).
constexpr mm::VmFlags kVmSpecial =
    mm::VmFlags::kIo | mm::VmFlags::kDontExpand | mm::VmFlags::kPfnMap | mm::VmFlags::kMixedMap;

// make_{readable,readable_exclusive,writable}_migration_entry_from_page (series patches 6
// and 9): the device-private migration types, holding the offset, for a dpas device-private
// page; the RAM types holding the PFN for every other page (legacy device-private pages
// included: their PFN lies in the physical window).
Softleaf make_migration_entry_from_page(const devmem::DeviceMemory& dm, arch::SoftleafFormat fmt,
                                        const Page* page, MigrationKind kind) {
  if (devmem::page_has_device_private_offset(page)) {
    const DevPrivOffset off = dm.device_private_page_to_offset(page);
    switch (kind) {
      case MigrationKind::kRead:
        return MUST(arch::make_readable_migration_device_private_entry(fmt, off), "offset fits");
      case MigrationKind::kReadExclusive:
        return MUST(arch::make_readable_exclusive_migration_device_private_entry(fmt, off),
                    "offset fits");
      case MigrationKind::kWrite:
        return MUST(arch::make_writable_migration_device_private_entry(fmt, off), "offset fits");
    }
  }
  const Pfn pfn = dm.page_to_pfn(page);
  switch (kind) {
    case MigrationKind::kRead:
      return MUST(arch::make_readable_migration_entry(fmt, pfn), "pfn fits");
    case MigrationKind::kReadExclusive:
      return MUST(arch::make_readable_exclusive_migration_entry(fmt, pfn), "pfn fits");
    case MigrationKind::kWrite:
      return MUST(arch::make_writable_migration_entry(fmt, pfn), "pfn fits");
  }
  assert(false && "unknown MigrationKind");
  return Softleaf::none(fmt);
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

uint64_t swap_word(const mm::Kernel& k, Softleaf leaf, SwpBit bits) {
  return MUST(k.codec().make_swap(EntryLevel::kPte, leaf, bits), "a valid softleaf encodes");
}

// ---------------------------------------------------------------------------------------
// remove_migration_ptes (mm/migrate.c): put `dst` (or `src` itself) back where `src` has a
// migration entry, in every mm the rmap reaches.

bool remove_migration_pte(const devmem::DeviceMemory& dm, Folio src, Folio dst, mm::Mm& mm,
                          const mm::Vma& vma, VirtAddr address) {
  mm::Kernel& k = mm.kernel();
  const WalkTarget t = walk_target(dm, src, mm::PvmwFlags::kMigration);
  SpinLocker guard(mm.page_table().lock());
  const std::optional<mm::PageVmaMapped> found =
      mm::page_vma_mapped_walk(mm, vma, address, t.where, t.flags);
  if (!found) return true;
  const DecodedEntry old = k.codec().decode(EntryLevel::kPte, found->entry);
  const Softleaf leaf = old.leaf;
  Page* new_page = dst.head();  // small folios: index 0
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
  found->pte.store(word);
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

bool try_to_migrate_one(const devmem::DeviceMemory& dm, Folio folio, mm::Mm& mm,
                        const mm::Vma& vma, VirtAddr address) {
  mm::Kernel& k = mm.kernel();
  const WalkTarget t = walk_target(dm, folio, mm::PvmwFlags::kNone);
  // MMU_NOTIFY_CLEAR without an owner: every secondary MMU drops its translation.
  const mm::MmuNotifierRange range =
      mm.notifier_range(mm::MmuNotifyEvent::kClear, address, address + kPageSize);
  mm.invalidate_range_start(range);
  bool removed = false;
  bool keep_going = true;
  {
    SpinLocker guard(mm.page_table().lock());
    const std::optional<mm::PageVmaMapped> found =
        mm::page_vma_mapped_walk(mm, vma, address, t.where, t.flags);
    // A PMD mapping (a device-private THP) needs set_pmd_migration_entry, which dpmm does
    // not model yet (docs/migrate.md): leave it mapped, so the folio is not migrated.
    if (found && found->level == EntryLevel::kPmd) {
      keep_going = false;
    } else if (found) {
      Page* page = folio.head();
      const bool anon_exclusive = folio.is_anon() && mm::page_anon_exclusive(page);
      // ptep_clear_flush for a present PTE, pte_clear for a device-private entry.
      const uint64_t pteval = found->pte.exchange(0);
      const DecodedEntry d = k.codec().decode(EntryLevel::kPte, pteval);
      const bool present = d.kind == DecodedEntry::Kind::kPresent;
      if (present) mm.flush_tlb_range(address, address + kPageSize);
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
        found->pte.store(
            swap_word(k, leaf, d.swp_bits & (SwpBit::kSoftDirty | SwpBit::kUffdWp)));
        removed = true;
      } else if (anon_exclusive && folio_try_share_anon_rmap_pte(folio, page).is_error()) {
        found->pte.store(pteval);  // pinned: put the mapping back and stop
        keep_going = false;
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
        found->pte.store(swap_word(k, leaf, bits));
        removed = true;
      }
      if (removed) mm::folio_remove_rmap_pte(folio, page);
    }
  }
  mm.invalidate_range_end(range);
  // The mapping's reference; the migration holds another, so this never frees the folio.
  if (removed) page::folio_put(folio);
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
  // TODO(THP): large folios are refused, as the kernel's FIXME does.
  if (folio.is_large()) return false;
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
  for (MigratePfn& e : src) {
    Page* page = migrate_pfn_to_page(dm, e);
    if (page == nullptr) {
      if (e.is_migrate()) ++unmapped;
      continue;
    }
    Folio folio = page::page_folio(page);
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
  const Page* fault_folio;  // head of the fault folio, or null

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
      // A large folio here failed to split (split_large_folios): skipped below.
      mpfn = MigratePfn::migrate_pfn(arch::PfnOrOffset::of_pfn(d.pfn)) | kMig;
      if (arch::has(d.prot, Prot::kWrite)) mpfn = mpfn | MigratePfnFlags::kWrite;
    } else {
      return {MigratePfn()};
    }
    if (page == nullptr || page->mapping_word() == 0 || page->is_compound()) return {MigratePfn()};

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

  // migrate_vma_split_folio: split_folio under the folio lock; the fault folio is already
  // locked and referenced by the fault path, whose reference serves as the caller's.
  void split_collected_folio(Folio folio) {
    const bool is_fault = fault_folio == folio.head();
    if (is_fault) {
      (void)mm::split_folio(k, folio);
      return;
    }
    if (!page::folio_try_get(folio)) return;
    if (page::folio_trylock(folio)) {
      (void)mm::split_folio(k, folio);
      page::folio_unlock(folio);
    }
    page::folio_put(folio);
  }

  // migrate_vma_collect_huge_pmd for a device-private PMD (a device THP) without
  // SELECT_COMPOUND: one of the caller's (SELECT_DEVICE_PRIVATE, its owner) is split, the
  // PMD into 512 device-private PTEs, then the folio (zone_device_private_split_cb gives the
  // new folios their pagemap), and collected page by page; any other is skipped. False when
  // skipped.
  bool collect_split_device_pmd(mm::EntrySlot pmd, VirtAddr addr) {
    const uint64_t word = pmd.load();
    if (!has(args.flags, MigrateVmaSelect::kDevicePrivate)) return false;
    Page* head = mm::device_private_pmd_page(k, mm::softleaf_from_pmd(k, word));
    if (head == nullptr || devmem::page_pgmap(head)->owner() != args.pgmap_owner) return false;
    mm::split_huge_pmd(mm, *args.vma, pmd, addr);
    split_collected_folio(page::page_folio(head));
    return true;
  }

  // The large-folio case of migrate_vma_collect_pmd (migrate_vma_split_folio, then rescan):
  // every PTE-mapped large system folio in [start, end) is split before the scan proper. A
  // folio that does not split stays large and its pages are skipped.
  void split_large_folios(mm::EntrySlot pmd, VirtAddr start, VirtAddr end) {
    mm::PageTable& pt = mm.page_table();
    std::vector<Folio> large;
    {
      SpinLocker guard(pt.lock());
      for (VirtAddr a = start; a < end; a += kPageSize) {
        const std::optional<mm::EntrySlot> ptep = pt.pte_offset(pmd, a);
        if (!ptep) return;
        const DecodedEntry d = k.codec().decode(EntryLevel::kPte, ptep->load());
        if (d.kind != DecodedEntry::Kind::kPresent) continue;
        Page* page = mm::vm_normal_page(k, d);
        if (page == nullptr || page->is_zone_device() || !page->is_compound()) continue;
        Folio folio = page::page_folio(page);
        if (!folio.is_anon() || std::find(large.begin(), large.end(), folio) != large.end())
          continue;
        page::folio_get(folio);  // the PTE's reference keeps it alive under the lock
        large.push_back(folio);
      }
    }
    for (Folio folio : large) {
      if (page::folio_trylock(folio)) {
        (void)mm::split_folio(k, folio);
        page::folio_unlock(folio);
      }
      page::folio_put(folio);
    }
  }

  // migrate_vma_collect_pmd over [start, end), inside one PMD.
  void collect_pmd(mm::EntrySlot pmd, VirtAddr start, VirtAddr end) {
    mm::PageTable& pt = mm.page_table();
    if (mm::pmd_trans_huge(k, pmd.load())) {
      // migrate_vma_collect_huge_pmd without MIGRATE_VMA_SELECT_COMPOUND (TODO(device THP)):
      // a system THP needs SELECT_SYSTEM; otherwise it is split (the PMD, then the folio
      // under its lock) and collected page by page. The huge zero PMD splits into zero-page
      // PTEs, which collect as holes, as the kernel's hole handling of it does.
      if (!has(args.flags, MigrateVmaSelect::kSystem)) {
        for (VirtAddr a = start; a < end; a += kPageSize) emit(MigratePfn());
        return;
      }
      collect_split_huge_pmd(pmd, start);
    } else if (mm::pmd_is_device_private_entry(k, pmd.load()) &&
               !collect_split_device_pmd(pmd, start)) {
      for (VirtAddr a = start; a < end; a += kPageSize) emit(MigratePfn());
      return;
    }
    if (!pt.pte_offset(pmd, start)) {
      // A PMD device-private or migration entry (device THP, not modelled): skip the range
      // as the kernel does when it cannot split.
      for (VirtAddr a = start; a < end; a += kPageSize) emit(MigratePfn());
      return;
    }
    if (has(args.flags, MigrateVmaSelect::kSystem)) split_large_folios(pmd, start, end);
    bool unmapped = false;
    SpinLocker guard(pt.lock());
    for (VirtAddr a = start; a < end; a += kPageSize) {
      const mm::EntrySlot ptep = *pt.pte_offset(pmd, a);
      const Collected c = collect_pte(ptep, a);
      unmapped = unmapped || c.cleared_present;
      emit(c.mpfn);
    }
    // Only flush when a present entry was changed.
    if (unmapped) mm.flush_tlb_range(start, end);
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
  // EEXIST for a PMD leaf: a THP faulted in since collection (the kernel splits only a huge
  // zero PMD here; collection already split those): not migrated.
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
  {
    SpinLocker guard(mm.page_table().lock());
    // Only a none PMD takes the folio (a huge zero PMD was split while collecting).
    if (pmd->load() == 0 && !has(vma.flags, mm::VmFlags::kUffdMissing)) {
      mapped = true;
        mm.add_rss(mm::RssMember::kAnonPages, static_cast<int64_t>(mm::kHpagePmdNr));
      mm::folio_add_new_anon_rmap(folio, vma, addr, mm::RmapExclusive::kYes,
                                  mm::RmapLevel::kPmd);
      page::folio_get(folio);  // the mapping's reference
      mm.page_table().deposit_table(addr, *table);
      pmd->store(entry);
    }
  }
  if (!mapped) {
    page::folio_put(*table);
    abort();
  }
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
    const int extra = args != nullptr && args->fault_page == page ? 1 : 0;
    if (folio_migrate_mapping(newfolio, folio, extra).is_error()) {
      src[i].clear(kMig);
    } else {
      folio_migrate_flags(newfolio, folio);
    }
  }
  if (range) mm->invalidate_range_end(*range);
  (void)k;
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
  for (uint64_t i = 0; i < npages; ++i) {
    const arch::PfnOrOffset where =
        start.is_offset()
            ? arch::PfnOrOffset::of_offset(DevPrivOffset(start.raw_index() + i))
            : arch::PfnOrOffset::of_pfn(Pfn(start.raw_index() + i));
    src[i] = migrate_device_pfn_lock(dm, where);
  }
  migrate_device_unmap(kernel, dm, src.first(npages), nullptr);
  return ok();
}

Status migrate_device_pfns(mm::Kernel& kernel, std::span<MigratePfn> src) {
  const devmem::DeviceMemory& dm = device_memory_of(kernel);
  for (MigratePfn& e : src)
    e = e.is_valid() ? migrate_device_pfn_lock(dm, e.pfn_or_offset()) : MigratePfn();
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
