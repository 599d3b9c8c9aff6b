// The seam between the fault path and device-private memory (layer 5, devmem).
//
// A device-private page is not reachable by the CPU: a PTE of one is a swap entry
// (SWP_DEVICE_READ / SWP_DEVICE_WRITE, softleaf.h) holding the page's PFN (legacy) or its
// device-private offset (dpas). Only the device-memory layer can turn such an entry into a
// descriptor and reach the page's pagemap, so it installs one handler per Kernel
// (Kernel::set_device_private_handler) and the mm layer calls it:
//
//   softleaf_to_page  the descriptor behind a device-private entry or a dpas device-private
//                     migration entry (softleaf_to_page / softleaf_to_folio for those types);
//                     null when the entry names no page the handler knows.
//   migrate_to_ram    page_pgmap(vmf.page)->ops->migrate_to_ram(vmf): called exactly as
//                     do_swap_page calls it (kernel-baseline §5): mmap_lock held for read, the
//                     page-table lock NOT held, vmf.page locked and referenced by the caller,
//                     which unlocks and puts it afterwards. The handler migrates at least
//                     vmf.page back to RAM and returns kHandled, or kOom/kSigBus.
//
// With no handler installed, a device-private fault ends in kSigBus ("no device-private
// handler"), and zap of such an entry only clears it.
#pragma once

#include <optional>

#include "arch/softleaf.h"
#include "base/result.h"
#include "page/folio.h"
#include "page/page.h"

namespace dpmm::mm {

struct VmFault;
struct FaultResult;

class DevicePrivateFaultHandler {
 public:
  virtual ~DevicePrivateFaultHandler() = default;
  virtual page::Page* softleaf_to_page(arch::Softleaf entry) = 0;
  virtual FaultResult migrate_to_ram(VmFault& vmf) = 0;
  // zone_device_private_split_cb (mm/huge_memory.c): split_folio (and folio_split_unmapped)
  // of a ZONE_DEVICE folio calls this for each new folio `tail` after the first (its compound
  // head word, which held the pgmap, was cleared), then once with nullopt. The devmem layer
  // gives each new folio its pagemap (or the driver's folio_split op); the default (RAM-backed
  // fakes in mm tests) does nothing.
  virtual void folio_split(page::Folio orig, std::optional<page::Folio> tail) {
    (void)orig;
    (void)tail;
  }
  // GUP FOLL_LONGTERM (mm/gup.c migrate_longterm_unpinnable_folios): move a device-coherent
  // folio, which may not stay pinned for long, to system memory
  // (migrate_device_coherent_folio). The caller passes one reference on `folio`, which this
  // consumes whatever the outcome (the migration's finalize drops it). EBUSY when the folio
  // could not be migrated. The default (no migration layer) drops the reference and refuses.
  virtual Status migrate_longterm_unpinnable(page::Folio folio) {
    page::folio_put(folio);
    return make_error(Errno::kEOPNOTSUPP,
                      "no migration layer to move a device-coherent folio out before a "
                      "long-term pin");
  }
};

}  // namespace dpmm::mm
