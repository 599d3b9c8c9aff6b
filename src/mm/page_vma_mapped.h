// page_vma_mapped_walk (mm/page_vma_mapped.c): does this (vma, address) map the given page,
// and through which PTE?
//
// A PTE matches when (check_pte):
//   kMigration set     a migration entry naming the page (RAM migration entries by PFN; with
//                      kDevicePrivate too, dpas MIGRATION_DEVICE_PRIVATE entries by offset);
//                      present PTEs never match
//   kMigration clear   a present PTE of the page's PFN, or a device-private or
//                      device-exclusive entry naming the page
// Entries are compared by arch::PfnOrOffset (softleaf_to_pfn_or_offset), tag included, so a
// dpas offset never matches a PFN that happens to have the same number.
//
// Seam for the device-memory layer: PvmwFlags::kDevicePrivate is the 2026 series'
// PVMW_DEVICE_PRIVATE. The devmem layer sets it, with the folio's DevPrivOffset as the
// target, when it walks a dpas device-private folio (whose entries hold offsets, not PFNs);
// every other walk passes a PFN target and leaves it clear.
//
// A PMD leaf maps every page of its THP: a walk for any of them (kMigration clear) matches
// it, with `level` kPmd, `pte` the PMD slot and `address` the leaf's 2 MiB-aligned start (the
// kernel's pvmw->pmd with pvmw->pte NULL). Likewise a PMD migration entry matches a kMigration
// walk for any page of the THP it names.
#pragma once

#include <cstdint>
#include <optional>

#include "base/flags.h"
#include "arch/entry_bits.h"
#include "arch/pfn_or_offset.h"
#include "base/types.h"
#include "mm/mm.h"
#include "mm/page_table.h"

namespace dpmm::mm {

enum class PvmwFlags : uint8_t {
  kNone = 0,
  kMigration = 1 << 0,      // PVMW_MIGRATION
  kDevicePrivate = 1 << 1,  // PVMW_DEVICE_PRIVATE (the dpas series): target is an offset
};
DPMM_FLAG_OPS(PvmwFlags)

// What a successful walk found (pvmw->pte, the entry read under the lock, pvmw->address).
struct PageVmaMapped {
  EntrySlot pte;
  uint64_t entry = 0;
  VirtAddr address;
  arch::EntryLevel level = arch::EntryLevel::kPte;
};

// page_vma_mapped_walk for one page at `address` of `vma` in `mm`. The caller holds the
// page-table lock (the kernel's walk returns with it held), so a match stays valid while the
// caller changes the entry. nullopt when no table, an address outside the VMA, or no match.
std::optional<PageVmaMapped> page_vma_mapped_walk(Mm& mm, const Vma& vma, VirtAddr address,
                                                  arch::PfnOrOffset target, PvmwFlags flags)
    REQUIRES(mm.page_table().lock());

}  // namespace dpmm::mm
