// /proc/pid/pagemap entries (fs/proc/task_mmu.c pte_to_pagemap_entry;
// Documentation/admin-guide/mm/pagemap.rst), as a reader with CAP_SYS_ADMIN sees them (PFNs
// shown).
//
//   bits 0..54  PFN of a present page, or for a swap entry type (bits 0..4) and offset
//               (bits 5..54; the PFN alone for PFN-carrying entries, the raw payload for a dpas
//               device-private offset)
//   bit 55      PM_SOFT_DIRTY
//   bit 56      PM_MMAP_EXCLUSIVE: present and mapped exactly once
//   bit 57      PM_UFFD_WP
//   bit 58      PM_GUARD_REGION (guard marker)
//   bit 61      PM_FILE: a present page that is not anonymous
//   bit 62      PM_SWAP
//   bit 63      PM_PRESENT
#pragma once

#include <cstdint>

#include "base/bits.h"
#include "base/types.h"
#include "mm/mm.h"

namespace dpmm::mm {

inline constexpr unsigned kPmPframeBits = 55;
inline constexpr uint64_t kPmPframeMask = bits::low_mask(kPmPframeBits);
inline constexpr uint64_t kPmSoftDirty = bits::bit(55);
inline constexpr uint64_t kPmMmapExclusive = bits::bit(56);
inline constexpr uint64_t kPmUffdWp = bits::bit(57);
inline constexpr uint64_t kPmGuardRegion = bits::bit(58);
inline constexpr uint64_t kPmFile = bits::bit(61);
inline constexpr uint64_t kPmSwap = bits::bit(62);
inline constexpr uint64_t kPmPresent = bits::bit(63);

// The pagemap word for `addr`. Takes mmap_lock for read (EXCLUDES it). 0 for an address with
// no entry. A PMD leaf shows the frame of the 4 KiB subpage at `addr` (pagemap_pmd_range).
uint64_t pagemap_entry(Mm& mm, VirtAddr addr);

}  // namespace dpmm::mm
