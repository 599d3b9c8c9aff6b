// Page flag bits and the fields packed into the top of a page's flags word.
//
// Bit numbers follow enum pageflags of a current x86_64/arm64 kernel built with CONFIG_MMU and
// CONFIG_MEMORY_FAILURE, without PG_young/PG_idle/PG_arch_2/PG_arch_3
// (include/linux/page-flags.h). The aliases are the kernel's: one bit, several meanings,
// chosen by who owns the page.
//
// Flags word layout (include/linux/page-flags-layout.h, classic SPARSEMEM variant, which keeps
// the section number in the word because dpmm's memmap is a table of sections rather than one
// virtually contiguous vmemmap; see memmap.h):
//
//   63          39 38      33 32    30 29      22 21            0
//  +--------------+----------+--------+----------+---------------+
//  |   SECTION    |   NODE   |  ZONE  | (unused) |  PG_* flags   |
//  +--------------+----------+--------+----------+---------------+
//
// On the first tail page of a large folio the low byte holds the folio order instead
// (folio->_flags_1 in include/linux/mm_types.h; folio_order() in include/linux/mm.h), which is
// why no "second page" flag may use bits 0-7.
#pragma once

#include <cstdint>

#include "base/bits.h"

namespace dpmm::page {

enum class PageFlag : uint8_t {
  kLocked = 0,        // PG_locked: folio lock (folio_lock.h); head page only
  kWriteback = 1,     // PG_writeback
  kReferenced = 2,    // PG_referenced
  kUptodate = 3,      // PG_uptodate
  kDirty = 4,         // PG_dirty
  kLru = 5,           // PG_lru: on an LRU list
  kHead = 6,          // PG_head: head page of a large folio ("must be in bit 6")
  kWaiters = 7,       // PG_waiters: someone sleeps on this folio's wait queue ("must be bit 7")
  kActive = 8,        // PG_active
  kWorkingset = 9,    // PG_workingset
  kOwnerPriv1 = 10,   // PG_owner_priv_1
  kOwner2 = 11,       // PG_owner_2
  kArch1 = 12,        // PG_arch_1
  kReserved = 13,     // PG_reserved: never given to the allocator (holes, firmware)
  kPrivate = 14,      // PG_private: `private` holds owner data
  kPrivate2 = 15,     // PG_private_2
  kReclaim = 16,      // PG_reclaim
  kSwapBacked = 17,   // PG_swapbacked: anon/shmem, backed by RAM or swap
  kUnevictable = 18,  // PG_unevictable
  kDropBehind = 19,   // PG_dropbehind
  kMlocked = 20,      // PG_mlocked
  kHwPoison = 21,     // PG_hwpoison
  kCount = 22,        // __NR_PAGEFLAGS

  // Aliases (same bit as above).
  kReadahead = kReclaim,          // PG_readahead
  kSwapCache = kOwnerPriv1,       // PG_swapcache: anon/shmem page in the swap cache
  kChecked = kOwnerPriv1,         // PG_checked (filesystems)
  kAnonExclusive = kOwner2,       // PG_anon_exclusive: anon page mapped exclusively by one mm
  kMappedToDisk = kOwner2,        // PG_mappedtodisk (file pages)
  kIsolated = kReclaim,           // PG_isolated
  kReported = kUptodate,          // PG_reported (buddy pages only)
  // Flags kept in the first tail page's flags word (folio->_flags_1).
  kHasHwPoisoned = kActive,       // PG_has_hwpoisoned
  kLargeRmappable = kWorkingset,  // PG_large_rmappable
  kPartiallyMapped = kReclaim,    // PG_partially_mapped
};

constexpr uint64_t page_flag_mask(PageFlag f) { return bits::bit(static_cast<unsigned>(f)); }

// Both PG_locked and PG_waiters must sit in the first byte: the kernel clears the one and tests
// the other with a single byte operation (folio_unlock in mm/filemap.c).
static_assert(static_cast<unsigned>(PageFlag::kWaiters) == 7);
static_assert(static_cast<unsigned>(PageFlag::kHead) == 6);

// Field positions in the flags word (see the layout above).
inline constexpr unsigned kNrPageFlags = static_cast<unsigned>(PageFlag::kCount);
inline constexpr unsigned kSectionsWidth = 25;  // 52 - 27: the largest modelled section number
inline constexpr unsigned kNodesWidth = 6;      // NODES_SHIFT: up to 64 nodes
inline constexpr unsigned kZonesWidth = 3;      // ZONES_SHIFT: order_base_2(MAX_NR_ZONES)
inline constexpr unsigned kSectionsPgShift = 64 - kSectionsWidth;     // 39
inline constexpr unsigned kNodesPgShift = kSectionsPgShift - kNodesWidth;  // 33
inline constexpr unsigned kZonesPgShift = kNodesPgShift - kZonesWidth;     // 30
static_assert(kZonesPgShift >= kNrPageFlags, "page flags overlap the zone field");

inline constexpr uint64_t kPageFlagsMask = bits::low_mask(kNrPageFlags);
// The low byte of the first tail page's flags: the folio order.
inline constexpr uint64_t kFolioOrderMask = 0xff;

// Page types live in the top byte of page->page_type, which shares storage with _mapcount; a
// page with a type has no mapcount (include/linux/page-flags.h, enum pagetype).
enum class PageType : uint8_t {
  kBuddy = 0xf0,    // PGTY_buddy: a free block in the buddy allocator; order in `private`
  kHugetlb = 0xf4,  // PGTY_hugetlb: head page of a hugetlb folio (mm/hstate.h), in use or in
                    // the pool; its mappings are counted by the folio's entire mapcount only
};
inline constexpr unsigned kPageTypeShift = 24;
// page_type value of a page with no type: all ones, i.e. _mapcount == -1.
inline constexpr uint32_t kNoPageType = 0xffffffffu;

}  // namespace dpmm::page
