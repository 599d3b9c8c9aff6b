// Migration of pages to and from device memory (mm/migrate_device.c, include/linux/migrate.h;
// kernel-baseline §4; the 2026 series' MIGRATE_PFN_DEVICE_PRIVATE and device-private
// migration entries).
//
// Driver pattern (both directions), mmap_lock held for read across all three calls:
//
//   MigrateVma args{.vma, .src, .dst, .start, .end, .pgmap_owner = owner,
//                   .flags = MigrateVmaSelect::..., .fault_page = vmf.page or null};
//   TRY(migrate_vma_setup(mm, args));         // collect + unmap
//   for each i < args.npages with src[i] kMigrate:
//     allocate dst (locked, refcount 1: zone_device_page_init, or alloc + folio_lock),
//     copy (or zero-fill when src has no page), dst[i] = migrate_pfn(...) | kWrite?;
//     leave dst[i] = 0 to not migrate that entry
//   migrate_vma_pages(mm, args);               // clears kMigrate per failed entry
//   <update device page tables for entries still kMigrate>
//   migrate_vma_finalize(mm, args);            // new or restored PTEs; unlock, put
//
// After setup every entry with kMigrate is either a locked, referenced, fully unmapped source
// page (migration entries in every mm that mapped it), or a hole / zero page (kMigrate
// without kValid) that migrate_vma_pages may populate. After finalize the source page of a
// migrated entry is freed (its last reference dropped), the destination is mapped where the
// source was (device-private entries for a device-private dst, present PTEs otherwise) and
// unlocked, and every entry that did not migrate has its original mapping back.
//
// Migration entries (mm/rmap.c try_to_migrate_one, mm/migrate_device.c collect):
//   legacy        SWP_MIGRATION_{READ,READ_EXCLUSIVE,WRITE} holding the PFN (also for
//                 device-private pages, whose PFN is in the physical window)
//   dpas designs  RAM and coherent pages: the same; device-private pages:
//                 SWP_MIGRATION_DEVICE_{READ,READ_EXCLUSIVE,WRITE} holding the offset
//   WRITE when the mapping was writable, READ_EXCLUSIVE when read-only but PG_anon_exclusive,
//   else READ; young/dirty kept in the entry.
// A CPU access that meets one waits on the folio lock (mm's migration_entry_wait) and retries.
//
// Large folios (THP, MIGRATE_VMA_SELECT_COMPOUND, kernel-baseline §9): with kCompound and a
// range that covers a whole PMD, a PMD-mapped THP or device THP is collected as one
// src entry MIGRATE|COMPOUND (the other 511 empty) and its PMD becomes a PMD migration entry;
// so is a whole-PMD hole (no page) and the huge zero folio. An order-9 kCompound dst is then
// mapped by one PMD (a present leaf, or a device-private PMD); small dst pages split the
// source first (migrate_vma_split_unmapped_folio: the migration PMD into 512 migration PTEs,
// the folio into 512 locked order-0 folios) or fill a hole page by page. A kCompound dst for
// a small src is not migrated. Without kCompound (or for part of a PMD) a THP is split and
// collected page by page. migrate_device_range/pfns mark a large device folio kCompound.
#pragma once

#include <cstdint>
#include <span>

#include "arch/pfn_or_offset.h"
#include "base/flags.h"
#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "migrate/migrate_pfn.h"
#include "mm/kernel.h"
#include "mm/mm.h"
#include "mm/vma.h"
#include "page/folio.h"

namespace dpmm::migrate {

// enum migrate_vma_direction.
enum class MigrateVmaSelect : uint8_t {
  kNone = 0,
  kSystem = 1,          // MIGRATE_VMA_SELECT_SYSTEM: RAM pages, the zero page, holes
  kDevicePrivate = 2,   // MIGRATE_VMA_SELECT_DEVICE_PRIVATE: pages of pgmap_owner's pagemaps
  kDeviceCoherent = 4,  // MIGRATE_VMA_SELECT_DEVICE_COHERENT: same, coherent pagemaps
  kCompound = 8,        // MIGRATE_VMA_SELECT_COMPOUND: whole THPs and holes at PMD granularity
};
DPMM_FLAG_OPS(MigrateVmaSelect)

// struct migrate_vma.
struct MigrateVma {
  const mm::Vma* vma = nullptr;
  // (end - start) >> PAGE_SHIFT entries each. src is filled by setup (the driver must not
  // change it); dst by the driver.
  std::span<MigratePfn> src;
  std::span<MigratePfn> dst;
  uint64_t cpages = 0;  // out: entries collected and still migrating after unmap
  uint64_t npages = 0;  // out: entries filled in src
  VirtAddr start;
  VirtAddr end;
  // Device-private / coherent pages are selected only when their pgmap->owner is this; also
  // the owner of the MMU_NOTIFY_MIGRATE ranges, so the driver can skip its own invalidations.
  const void* pgmap_owner = nullptr;
  MigrateVmaSelect flags{};
  // vmf.page when called from migrate_to_ram: locked and referenced by the fault path; it is
  // never unlocked here.
  page::Page* fault_page = nullptr;
};

// migrate_vma_setup: validate, collect (migrate_vma_collect) and unmap
// (migrate_device_unmap). Returns ok even when nothing was collected (cpages == 0).
//   EINVAL  no vma; hugetlb vma; VM_SPECIAL (VM_IO|VM_DONTEXPAND|VM_PFNMAP|VM_MIXEDMAP) vma;
//           no page in [start, end) (end <= start); start outside [vm_start, vm_end);
//           end <= vm_start or end > vm_end; src or dst shorter than the range; fault_page
//           not device-private or not locked
// REQUIRES: mmap_lock held (read) from setup to finalize; args.vma is a VMA of `mm`.
Status migrate_vma_setup(mm::Mm& mm, MigrateVma& args) REQUIRES_SHARED(mm.mmap_lock());

// migrate_vma_pages: moves each migrating entry's mapping/index/flags to its dst page, or
// inserts dst into a hole / over the zero page; clears kMigrate for every entry that cannot
// migrate (no dst, a kCompound dst for a small src, a dst of the wrong kind, unexpected
// references, an insert that found the PTE changed).
void migrate_vma_pages(mm::Mm& mm, MigrateVma& args) REQUIRES_SHARED(mm.mmap_lock());

// migrate_vma_finalize: replaces every migration entry by the dst page (migrated) or the src
// page (not migrated) in every mm that had one (remove_migration_ptes), unlocks and puts src
// and dst (the fault page stays locked), frees the migrated source pages.
void migrate_vma_finalize(mm::Mm& mm, MigrateVma& args) REQUIRES_SHARED(mm.mmap_lock());

// migrate_device_range (series patch 3: mpfn-based): collects the allocated pages of the
// device range [start, start + npages) (tagged offset or PFN) into src: each referenced,
// trylocked page becomes migrate_pfn(...) | kMigrate, free pages and lock contention give 0.
// Then unmaps them from every mm through the rmap (try_to_migrate). The driver then fills
// dst with locked system pages, copies, and calls migrate_device_pages and
// migrate_device_finalize. No mmap_lock needed.
//   EINVAL  src shorter than npages
Status migrate_device_range(mm::Kernel& kernel, std::span<MigratePfn> src,
                            arch::PfnOrOffset start, uint64_t npages);
// migrate_device_pfns: the same over src pre-filled with migrate_pfn values (any order).
Status migrate_device_pfns(mm::Kernel& kernel, std::span<MigratePfn> src);
// migrate_device_pages / migrate_device_finalize: migrate_vma_pages / _finalize without a
// vma (no hole insertion). REQUIRES: src.size() == dst.size().
void migrate_device_pages(mm::Kernel& kernel, std::span<MigratePfn> src,
                          std::span<MigratePfn> dst);
void migrate_device_finalize(mm::Kernel& kernel, std::span<MigratePfn> src,
                             std::span<MigratePfn> dst);

// migrate_device_coherent_folio (mm/migrate_device.c; GUP FOLL_LONGTERM's helper): migrates
// one device-coherent folio to a new system page.
//   EBUSY  the folio could not be locked, unmapped or migrated, or no system page was free
// REQUIRES: the caller holds a reference on `folio`.
Status migrate_device_coherent_folio(mm::Kernel& kernel, page::Folio folio);

}  // namespace dpmm::migrate
