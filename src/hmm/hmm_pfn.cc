#include "hmm/hmm_pfn.h"

#include <cassert>

#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "devmem/design.h"
#include "devmem/dev_pagemap.h"
#include "devmem/device_memory.h"

namespace dpmm::hmm {

Result<uint64_t> HmmPfnFormat::make_index(arch::PfnOrOffset where) const {
  if ((where.raw_index() & ~index_mask()) != 0)
    return make_error(Errno::kERANGE, "{} does not fit the hmm_pfn index field", where);
  if (where.is_pfn()) return where.raw_index();
  if (device_private == 0) {
    return make_error(Errno::kEINVAL,
                      "{} is a device-private offset, which the {} hmm_pfn layout cannot tag",
                      where, arch::numbering_name(numbering));
  }
  return where.raw_index() | device_private;
}

Result<page::Page*> hmm_pfn_to_page(const devmem::DeviceMemory& dm, uint64_t hmm_pfn) {
  const HmmPfnFormat f = hmm_pfn_format(devmem::swap_numbering_kind(dm.design()));
  if ((hmm_pfn & kHmmPfnValid) == 0)
    return make_error(Errno::kEINVAL, "hmm_pfn {:#x} is not VALID: no page", hmm_pfn);
  const arch::PfnOrOffset where = f.index(hmm_pfn);
  page::Page* page = TRY(dm.pfn_or_offset_to_page(where));
  // The series' invariant: the tag says exactly whether the value is a device-private offset.
  assert(where.is_offset() == devmem::page_has_device_private_offset(page) &&
         "hmm_pfn tag disagrees with the page it resolves to");
  return page;
}

std::string hmm_pfn_describe(HmmPfnFormat f, uint64_t hmm_pfn) {
  std::vector<std::string_view> names;
  auto add = [&](uint64_t bit, std::string_view name) {
    if ((hmm_pfn & bit) != 0) names.push_back(name);
  };
  add(kHmmPfnValid, "VALID");
  add(kHmmPfnWrite, "WRITE");
  add(kHmmPfnError, "ERROR");
  add(kHmmPfnDmaMapped, "DMA_MAPPED");
  add(kHmmPfnP2pdma, "P2PDMA");
  add(kHmmPfnP2pdmaBus, "P2PDMA_BUS");
  if (f.device_private != 0) add(f.device_private, "DEVICE_PRIVATE");
  if (names.empty()) names.push_back("0");
  return fmt::format("{} order={} {}", fmt::join(names, "|"), f.map_order(hmm_pfn),
                     f.index(hmm_pfn));
}

}  // namespace dpmm::hmm
