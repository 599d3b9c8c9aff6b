// Migration entries (include/linux/swapops.h / leafops.h, mm/migrate.c migration_entry_wait):
// the swap entries that stand in for a mapping while its folio migrates, at the PTE or the
// PMD level. They hold no reference and no mapcount (the migration holds the folio, locked).
//
// Numbering (series patches 6 and 9): a PFN in SWP_MIGRATION_{READ,READ_EXCLUSIVE,WRITE} for
// RAM, coherent and legacy device-private pages; a DevPrivOffset in the dpas designs'
// SWP_MIGRATION_DEVICE_* types for a device-private page. The caller picks by the page's own
// numbering (a PfnOrOffset), which is why these live here and not in the devmem layer.
#pragma once

#include <cstdint>

#include "arch/pfn_or_offset.h"
#include "arch/softleaf.h"
#include "mm/fault.h"
#include "mm/mm.h"
#include "mm/page_table.h"
#include "page/page.h"

namespace dpmm::mm {

// Which migration entry replaces a mapping: WRITE when it was writable, READ_EXCLUSIVE when
// read-only but PageAnonExclusive, else READ.
enum class MigrationKind : uint8_t { kRead, kReadExclusive, kWrite };

// The kind of an existing migration entry. REQUIRES: softleaf_is_migration(leaf).
MigrationKind migration_kind_of(arch::Softleaf leaf);

// make_{readable,readable_exclusive,writable}_migration_entry(pfn), or for an offset the
// device-private migration types (make_*_migration_entry_from_page in the series).
arch::Softleaf make_migration_entry(arch::SoftleafFormat fmt, arch::PfnOrOffset where,
                                    MigrationKind kind);

// A migration entry like `leaf` for another page or kind, its young and dirty bits kept.
// REQUIRES: softleaf_is_migration(leaf).
arch::Softleaf migration_entry_like(arch::Softleaf leaf, arch::PfnOrOffset where,
                                    MigrationKind kind);

// The page a migration entry names: by PFN through the memmap, or (an offset) through the
// device-private handler; null when unknown.
page::Page* migration_entry_page(const Kernel& k, arch::Softleaf leaf);

// migration_entry_wait / pmd_migration_entry_wait: if `slot` still holds `orig` (checked
// under the page-table lock), sleep until the migration unlocks `page`'s folio; either way the
// fault is handled and the access retries. A null page (the entry names nothing known) is
// kSigBus.
FaultResult migration_entry_wait(Mm& mm, EntrySlot slot, uint64_t orig, page::Page* page);

}  // namespace dpmm::mm
