// The hmm_pfns word (include/linux/hmm.h, 64-bit): what hmm_range_fault reads as a request and
// writes back as an answer, one word per page of the range.
//
// Layout, by swap numbering (the kernel without the 2026 series = legacy; with it = dpas):
//
//   bit        legacy                      dpas (series patch 12)
//   63         HMM_PFN_VALID               HMM_PFN_VALID
//   62         HMM_PFN_WRITE               HMM_PFN_WRITE
//   61         HMM_PFN_ERROR               HMM_PFN_ERROR
//   60         HMM_PFN_DMA_MAPPED          HMM_PFN_DMA_MAPPED       (sticky: in -> out)
//   59         HMM_PFN_P2PDMA              HMM_PFN_P2PDMA           (sticky)
//   58         HMM_PFN_P2PDMA_BUS          HMM_PFN_P2PDMA_BUS       (sticky)
//   57         map order (bit 4)           HMM_PFN_DEVICE_PRIVATE   (1 << (BITS_PER_LONG - 7))
//   53..57     map order (5 bits)          -
//   52..56     -                           map order (5 bits)
//   0..52/51   PFN                         PFN, or a device-private offset when DEVICE_PRIVATE
//
// HMM_PFN_ORDER_SHIFT is BITS_PER_LONG - 11 = 53 in legacy and BITS_PER_LONG - 12 = 52 with the
// series; HMM_PFN_FLAGS (hmm_pfn_flags_mask) is every bit from the order shift up.
// Requests: HMM_PFN_REQ_FAULT = VALID (the answer must be VALID or hmm_range_fault fails),
// HMM_PFN_REQ_WRITE = WRITE (must come with REQ_FAULT). Drivers write raw uint64_t request
// words, as in the kernel.
//
// Under dpas, an owned device-private page is answered with its device-private offset and
// DEVICE_PRIVATE set; every other page with its PFN. Under legacy the device-private page has a
// PFN in its physical window and no tag exists. hmm_pfn_to_page() checks that the tag matches
// what the value resolves to (the series' point: an offset never reaches pfn_to_page).
#pragma once

#include <cstdint>
#include <string>

#include "arch/pfn_or_offset.h"
#include "arch/swap_numbering.h"
#include "base/result.h"
#include "page/page.h"

namespace dpmm::devmem {
class DeviceMemory;
}  // namespace dpmm::devmem

namespace dpmm::hmm {

// enum hmm_pfn_flags: the bits both numberings share.
inline constexpr uint64_t kHmmPfnValid = uint64_t{1} << 63;      // HMM_PFN_VALID
inline constexpr uint64_t kHmmPfnWrite = uint64_t{1} << 62;      // HMM_PFN_WRITE
inline constexpr uint64_t kHmmPfnError = uint64_t{1} << 61;      // HMM_PFN_ERROR
inline constexpr uint64_t kHmmPfnDmaMapped = uint64_t{1} << 60;  // HMM_PFN_DMA_MAPPED
inline constexpr uint64_t kHmmPfnP2pdma = uint64_t{1} << 59;     // HMM_PFN_P2PDMA
inline constexpr uint64_t kHmmPfnP2pdmaBus = uint64_t{1} << 58;  // HMM_PFN_P2PDMA_BUS
inline constexpr uint64_t kHmmPfnReqFault = kHmmPfnValid;        // HMM_PFN_REQ_FAULT
inline constexpr uint64_t kHmmPfnReqWrite = kHmmPfnWrite;        // HMM_PFN_REQ_WRITE
// HMM_PFN_INOUT_FLAGS (mm/hmm.c): carried from the request word into the answer.
inline constexpr uint64_t kHmmPfnInoutFlags = kHmmPfnDmaMapped | kHmmPfnP2pdma | kHmmPfnP2pdmaBus;
// HMM_PFN_DEVICE_PRIVATE (the series, patch 12). Legacy has no such bit: there bit 57 is the
// top bit of the map order.
inline constexpr uint64_t kHmmPfnDevicePrivate = uint64_t{1} << 57;

// The numbering-dependent part of the layout.
struct HmmPfnFormat {
  arch::SwapNumberingKind numbering = arch::SwapNumberingKind::kLegacy;
  unsigned order_shift = 53;     // HMM_PFN_ORDER_SHIFT
  uint64_t device_private = 0;   // HMM_PFN_DEVICE_PRIVATE, 0 where the numbering has none

  // HMM_PFN_FLAGS: every flag and order bit.
  constexpr uint64_t hmm_pfn_flags_mask() const { return ~((uint64_t{1} << order_shift) - 1); }
  // The PFN / offset field.
  constexpr uint64_t index_mask() const { return ~hmm_pfn_flags_mask(); }
  // hmm_pfn_flags_order: the order field for a mapping of 2^order pages.
  constexpr uint64_t order_bits(unsigned order) const {
    return static_cast<uint64_t>(order & 0x1F) << order_shift;
  }
  // hmm_pfn_to_map_order: the order of the CPU mapping the answer came from (0 for a PTE,
  // 9 for a PMD).
  constexpr unsigned map_order(uint64_t hmm_pfn) const {
    return static_cast<unsigned>((hmm_pfn >> order_shift) & 0x1F);
  }
  // The tagged page index of a VALID answer: an offset when DEVICE_PRIVATE is set, else a PFN.
  constexpr arch::PfnOrOffset index(uint64_t hmm_pfn) const {
    const uint64_t i = hmm_pfn & index_mask();
    return (hmm_pfn & device_private) != 0 ? arch::PfnOrOffset::of_offset(DevPrivOffset(i))
                                           : arch::PfnOrOffset::of_pfn(Pfn(i));
  }
  // The answer's index field and tag for a page at `where` (no VALID/WRITE/order bits).
  //   EINVAL  an offset under a numbering without DEVICE_PRIVATE (legacy cannot tag one)
  //   ERANGE  the index does not fit below the order field
  Result<uint64_t> make_index(arch::PfnOrOffset where) const;

  constexpr bool operator==(const HmmPfnFormat&) const = default;
};

inline constexpr HmmPfnFormat kHmmPfnLegacy{arch::SwapNumberingKind::kLegacy, 53, 0};
inline constexpr HmmPfnFormat kHmmPfnDpas{arch::SwapNumberingKind::kDpas, 52,
                                          kHmmPfnDevicePrivate};

constexpr HmmPfnFormat hmm_pfn_format(arch::SwapNumberingKind numbering) {
  switch (numbering) {
    case arch::SwapNumberingKind::kLegacy: return kHmmPfnLegacy;
    case arch::SwapNumberingKind::kDpas: return kHmmPfnDpas;
  }
  return kHmmPfnLegacy;
}

// hmm_pfn_to_map_order.
constexpr unsigned hmm_pfn_to_map_order(HmmPfnFormat f, uint64_t hmm_pfn) {
  return f.map_order(hmm_pfn);
}

// hmm_pfn_to_page: the descriptor of a VALID answer, in the numbering of `dm`'s design.
// Asserts (debug builds) that a DEVICE_PRIVATE-tagged value resolves to a device-private page
// with an offset and that an untagged one never does.
//   EINVAL  the word is not VALID
//   ENOENT / EFAULT  nothing is at that offset / PFN (device_private_offset_to_page,
//           pfn_to_page)
Result<page::Page*> hmm_pfn_to_page(const devmem::DeviceMemory& dm, uint64_t hmm_pfn);

// "VALID|WRITE order=0 pfn:0x1234" style text for messages and tests.
std::string hmm_pfn_describe(HmmPfnFormat f, uint64_t hmm_pfn);

}  // namespace dpmm::hmm
