#include "mm/migration_entry.h"

#include <cassert>
#include <optional>

#include "base/lock.h"
#include "mm/device_private.h"
#include "page/folio_lock.h"

namespace dpmm::mm {

MigrationKind migration_kind_of(arch::Softleaf leaf) {
  if (arch::softleaf_is_migration_write(leaf)) return MigrationKind::kWrite;
  if (arch::softleaf_is_migration_read_exclusive(leaf)) return MigrationKind::kReadExclusive;
  return MigrationKind::kRead;
}

arch::Softleaf make_migration_entry(arch::SoftleafFormat fmt, arch::PfnOrOffset where,
                                    MigrationKind kind) {
  if (where.is_offset()) {
    const DevPrivOffset off(where.raw_index());
    switch (kind) {
      case MigrationKind::kRead:
        return MUST(arch::make_readable_migration_device_private_entry(fmt, off), "fits");
      case MigrationKind::kReadExclusive:
        return MUST(arch::make_readable_exclusive_migration_device_private_entry(fmt, off),
                    "fits");
      case MigrationKind::kWrite:
        return MUST(arch::make_writable_migration_device_private_entry(fmt, off), "fits");
    }
  }
  const Pfn pfn(where.raw_index());
  switch (kind) {
    case MigrationKind::kRead:
      return MUST(arch::make_readable_migration_entry(fmt, pfn), "fits");
    case MigrationKind::kReadExclusive:
      return MUST(arch::make_readable_exclusive_migration_entry(fmt, pfn), "fits");
    case MigrationKind::kWrite:
      return MUST(arch::make_writable_migration_entry(fmt, pfn), "fits");
  }
  assert(false && "unknown MigrationKind");
  return arch::Softleaf::none(fmt);
}

arch::Softleaf migration_entry_like(arch::Softleaf leaf, arch::PfnOrOffset where,
                                    MigrationKind kind) {
  arch::Softleaf out = make_migration_entry(leaf.format(), where, kind);
  if (arch::softleaf_is_migration_young(leaf)) out = arch::make_migration_entry_young(out);
  if (arch::softleaf_is_migration_dirty(leaf)) out = arch::make_migration_entry_dirty(out);
  return out;
}

page::Page* migration_entry_page(const Kernel& k, arch::Softleaf leaf) {
  if (arch::softleaf_holds_offset(leaf)) {
    DevicePrivateFaultHandler* h = k.device_private_handler();
    return h != nullptr ? h->softleaf_to_page(leaf) : nullptr;
  }
  Result<Pfn> pfn = arch::softleaf_to_pfn(leaf);
  if (pfn.is_error()) return nullptr;
  Result<page::Page*> page = k.pfn_to_page(*pfn);
  return page.is_ok() ? *page : nullptr;
}

FaultResult migration_entry_wait(Mm& mm, EntrySlot slot, uint64_t orig, page::Page* page) {
  if (page == nullptr) return {FaultOutcome::kSigBus, "migration entry names no known page"};
  std::optional<page::Folio> folio;
  {
    SpinLocker guard(mm.page_table().lock());
    if (slot.load() != orig) return FaultResult::handled();
    page::Folio f = page::page_folio(page);
    // The migration holds a reference, so try_get fails only once it has finished and freed.
    if (!page::folio_try_get(f)) return FaultResult::handled();
    folio = f;
  }
  page::folio_wait_locked(*folio);
  page::folio_put(*folio);
  return FaultResult::handled();
}

}  // namespace dpmm::mm
