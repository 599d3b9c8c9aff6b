// Faults on non-present, non-none PTEs (mm/memory.c do_swap_page, handle_pte_marker,
// remove_device_exclusive_entry, restore_exclusive_pte; mm/migrate.c migration_entry_wait).
#include <cassert>
#include <optional>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/fault.h"
#include "mm/migration_entry.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

using arch::EntryLevel;
using arch::Prot;
using arch::Softleaf;
using arch::SoftleafType;

FaultResult sigbus(std::string_view why) { return {FaultOutcome::kSigBus, why}; }

bool pte_same_locked(const VmFault& vmf) { return vmf.pte->load() == vmf.orig_pte; }

// The device-private branch of do_swap_page (kernel-baseline §5).
FaultResult device_private_fault(VmFault& vmf, Softleaf leaf) {
  Mm& mm = *vmf.mm;
  DevicePrivateFaultHandler* handler = mm.kernel().device_private_handler();
  if (handler == nullptr)
    return sigbus("device-private entry with no device-private handler installed");
  page::Page* page = handler->softleaf_to_page(leaf);
  if (page == nullptr) return sigbus("device-private entry names no known page");
  std::optional<page::Folio> held;
  bool locked = false;
  {
    SpinLocker guard(mm.page_table().lock());
    if (!pte_same_locked(vmf)) return FaultResult::handled();
    // Only now, with the entry confirmed under the lock, is the page known to be mapped (and
    // so not being freed and re-initialised by its driver): page_folio reads its head word
    // here, as trylock_page does in do_swap_page.
    held = page::page_folio(page);
    if (page::folio_trylock(*held)) {
      // The reference keeps the page once the page-table lock is gone.
      page::folio_get(*held);
      locked = true;
    } else if (!page::folio_try_get(*held)) {
      return FaultResult::handled();
    }
  }
  const page::Folio folio = *held;
  if (!locked) {
    // Someone (a migration) holds the page lock: wait for it, then refault
    // (migration_entry_wait_on_locked).
    page::folio_wait_locked(folio);
    page::folio_put(folio);
    return FaultResult::handled();
  }
  vmf.page = page;
  FaultResult r = handler->migrate_to_ram(vmf);
  // unlock_page/put_page of vmf->page: a split during the migration moved the lock and the
  // reference to the folio that now holds the page.
  const page::Folio now = page::page_folio(page);
  page::folio_unlock(now);
  page::folio_put(now);  // may free the device page (folio_free)
  return r;
}

// remove_device_exclusive_entry + restore_exclusive_pte: the CPU takes the page back from the
// device; counts stay (the entry already held the mapping's reference and mapcount).
FaultResult remove_device_exclusive_entry(VmFault& vmf, Softleaf leaf) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Pfn pfn = MUST(arch::softleaf_to_pfn(leaf), "device-exclusive entries hold a pfn");
  Result<page::Page*> page_or = k.pfn_to_page(pfn);
  if (page_or.is_error()) return sigbus("device-exclusive entry names no RAM page");
  page::Page* page = *page_or;
  page::Folio folio = page::page_folio(page);
  if (!page::folio_try_get(folio)) return FaultResult::handled();
  page::folio_lock(folio);
  const MmuNotifierRange range =
      mm.notifier_range(MmuNotifyEvent::kClear, vmf.address, vmf.address + kPageSize);
  mm.invalidate_range_start(range);
  {
    SpinLocker guard(mm.page_table().lock());
    if (pte_same_locked(vmf)) {
      const arch::DecodedEntry d = k.codec().decode(EntryLevel::kPte, vmf.orig_pte);
      Prot p = vmf.vma->page_prot;  // pte_mkold(mk_pte(page, vm_page_prot))
      if (arch::has(d.swp_bits, arch::SwpBit::kSoftDirty)) p = p | Prot::kSoftDirty;
      if (arch::has(d.swp_bits, arch::SwpBit::kUffdWp)) p = p | Prot::kUffdWp;
      if (has(vmf.vma->flags, VmFlags::kWrite) && !arch::has(p, Prot::kUffdWp) &&
          folio.is_anon() && page_anon_exclusive(page)) {
        if (folio.test_flag(page::PageFlag::kDirty)) p = p | Prot::kDirty;
        p = p | Prot::kWrite;
      }
      vmf.pte->store(MUST(k.codec().make_present(EntryLevel::kPte, pfn, p),
                          "a RAM pfn with a VMA protection encodes"));
    }
  }
  mm.invalidate_range_end(range);
  page::folio_unlock(folio);
  page::folio_put(folio);
  return FaultResult::handled();
}

// handle_pte_marker.
FaultResult handle_pte_marker(VmFault& vmf, Softleaf leaf) {
  const arch::PteMarker m = arch::softleaf_to_marker(leaf);
  if ((m & arch::PteMarker::kPoisoned) != arch::PteMarker::kNone)
    return sigbus("poisoned PTE marker (VM_FAULT_HWPOISON)");
  if ((m & arch::PteMarker::kGuard) != arch::PteMarker::kNone)
    return {FaultOutcome::kSigSegv, "guard-region PTE marker"};
  if ((m & arch::PteMarker::kUffdWp) != arch::PteMarker::kNone) return do_pte_missing(vmf);
  return sigbus("PTE marker with no known bit");
}

}  // namespace

FaultResult do_swap_page(VmFault& vmf) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Softleaf leaf = k.codec().softleaf_from(EntryLevel::kPte, vmf.orig_pte);
  switch (arch::softleaf_type(leaf)) {
    case SoftleafType::kMigrationRead:
    case SoftleafType::kMigrationReadExclusive:
    case SoftleafType::kMigrationWrite:
    case SoftleafType::kMigrationDevicePrivateRead:
    case SoftleafType::kMigrationDevicePrivateReadExclusive:
    case SoftleafType::kMigrationDevicePrivateWrite:
      return migration_entry_wait(mm, *vmf.pte, vmf.orig_pte, migration_entry_page(k, leaf));
    case SoftleafType::kDevicePrivateRead:
    case SoftleafType::kDevicePrivateWrite:
      return device_private_fault(vmf, leaf);
    case SoftleafType::kDeviceExclusive:
      return remove_device_exclusive_entry(vmf, leaf);
    case SoftleafType::kHwpoison:
      return sigbus("hwpoison entry (VM_FAULT_HWPOISON)");
    case SoftleafType::kMarker:
      return handle_pte_marker(vmf, leaf);
    case SoftleafType::kSwap:
      // swapin needs a swap device; phase 1 has none, so no real swap entry is ever written.
      return sigbus("swap entry, and no swap device is modelled");
    case SoftleafType::kNone:
      return sigbus("non-present PTE that is no swap entry");
    case SoftleafType::kCount:
      break;
  }
  assert(false && "unknown softleaf type");
  return sigbus("unknown softleaf type");
}

}  // namespace dpmm::mm
