#include "migrate/migrate_pfn.h"

#include <cassert>

#include "devmem/dev_pagemap.h"
#include "devmem/device_memory.h"

namespace dpmm::migrate {

arch::PfnOrOffset MigratePfn::pfn_or_offset() const {
  assert(is_valid() && "pfn_or_offset of a MigratePfn without MIGRATE_PFN_VALID");
  const uint64_t index = v_ >> kMigratePfnShift;
  if (has(MigratePfnFlags::kDevicePrivate)) return arch::PfnOrOffset::of_offset(DevPrivOffset(index));
  return arch::PfnOrOffset::of_pfn(Pfn(index));
}

page::Page* migrate_pfn_to_page(const devmem::DeviceMemory& dm, MigratePfn mpfn) {
  if (!mpfn.is_valid()) return nullptr;
  const arch::PfnOrOffset where = mpfn.pfn_or_offset();
  assert((where.is_pfn() || devmem::uses_device_private_space(dm.design())) &&
         "MIGRATE_PFN_DEVICE_PRIVATE in the legacy design, which has no device-private offsets");
  Result<page::Page*> page = dm.pfn_or_offset_to_page(where);
  // A tagged value must be a registered offset; an untagged one a descriptor of the memmap.
  // A mismatch is the bug the series' tag exists to catch.
  assert(page.is_ok() && "migrate_pfn_to_page: the value names no page (offset/PFN confusion?)");
  if (page.is_error()) return nullptr;
  assert(devmem::page_has_device_private_offset(*page) == where.is_offset() &&
         "migrate_pfn_to_page: the tag disagrees with the page it names");
  return *page;
}

MigratePfn migrate_pfn_from_page(const devmem::DeviceMemory& dm, const page::Page* page) {
  return MigratePfn::migrate_pfn(dm.page_to_pfn_or_offset(page));
}

}  // namespace dpmm::migrate
