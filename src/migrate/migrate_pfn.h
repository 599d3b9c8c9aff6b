// MigratePfn: one entry of migrate_vma's src[] / dst[] arrays and of migrate_device_range's
// arrays (include/linux/migrate.h, MIGRATE_PFN_*; the 2026 series' MIGRATE_PFN_DEVICE_PRIVATE).
//
// Layout of the 64-bit word:
//
//   63                                   6   5   4   3   2   1   0
//  +--------------------------------------+---+---+---+---+---+---+
//  |      page index (PFN or offset)      |DP |CMP| W | - | M | V |
//  +--------------------------------------+---+---+---+---+---+---+
//
//   V   kValid          MIGRATE_PFN_VALID: the index field names a page
//   M   kMigrate        MIGRATE_PFN_MIGRATE: collected for migration; after
//                       migrate_vma_pages, the per-entry success bit
//   -   (bit 2)         was MIGRATE_PFN_LOCKED, removed in 5.17; never set
//   W   kWrite          MIGRATE_PFN_WRITE: the source mapping was writable / dst should be
//   CMP kCompound       MIGRATE_PFN_COMPOUND: a PMD-sized folio (dpmm: THP not yet modelled)
//   DP  kDevicePrivate  MIGRATE_PFN_DEVICE_PRIVATE (series patch 4): the index is a
//                       device-private offset, not a PFN. Set iff the page lives in the device
//                       private address space (dpas designs); legacy never sets it.
//   index               MIGRATE_PFN_SHIFT = 6
//
// A src entry with kMigrate and without kValid is a hole or zero page that may be populated.
// An index never leaves this type untagged: pfn_or_offset() returns arch::PfnOrOffset.
#pragma once

#include <cstdint>

#include "arch/pfn_or_offset.h"
#include "base/flags.h"
#include "page/page.h"

namespace dpmm::devmem {
class DeviceMemory;
}  // namespace dpmm::devmem

namespace dpmm::migrate {

enum class MigratePfnFlags : uint64_t {
  kNone = 0,
  kValid = 1 << 0,          // MIGRATE_PFN_VALID
  kMigrate = 1 << 1,        // MIGRATE_PFN_MIGRATE
  kWrite = 1 << 3,          // MIGRATE_PFN_WRITE
  kCompound = 1 << 4,       // MIGRATE_PFN_COMPOUND
  kDevicePrivate = 1 << 5,  // MIGRATE_PFN_DEVICE_PRIVATE
};
DPMM_FLAG_OPS(MigratePfnFlags)

inline constexpr unsigned kMigratePfnShift = 6;  // MIGRATE_PFN_SHIFT
inline constexpr uint64_t kMigratePfnFlagsMask = (uint64_t{1} << kMigratePfnShift) - 1;

class MigratePfn {
 public:
  // 0: no page, not migrating.
  constexpr MigratePfn() = default;
  // migrate_pfn(pfn): VALID, the index, and kDevicePrivate when `where` is an offset.
  static constexpr MigratePfn migrate_pfn(arch::PfnOrOffset where) {
    uint64_t v = (where.raw_index() << kMigratePfnShift) |
                 static_cast<uint64_t>(MigratePfnFlags::kValid);
    if (where.is_offset()) v |= static_cast<uint64_t>(MigratePfnFlags::kDevicePrivate);
    return MigratePfn(v);
  }
  static constexpr MigratePfn from_raw(uint64_t v) { return MigratePfn(v); }
  // Flags only, no page (a hole collected for migration: MigratePfn::of(kMigrate)).
  static constexpr MigratePfn of(MigratePfnFlags f) { return MigratePfn(static_cast<uint64_t>(f)); }

  constexpr uint64_t raw() const { return v_; }
  constexpr MigratePfnFlags flags() const {
    return static_cast<MigratePfnFlags>(v_ & kMigratePfnFlagsMask);
  }
  // Every bit of `f` set.
  constexpr bool has(MigratePfnFlags f) const { return dpmm::migrate::has(flags(), f); }
  constexpr bool is_valid() const { return has(MigratePfnFlags::kValid); }
  constexpr bool is_migrate() const { return has(MigratePfnFlags::kMigrate); }
  constexpr void set(MigratePfnFlags f) { v_ |= static_cast<uint64_t>(f); }
  constexpr void clear(MigratePfnFlags f) { v_ &= ~static_cast<uint64_t>(f); }
  constexpr MigratePfn operator|(MigratePfnFlags f) const {
    return MigratePfn(v_ | static_cast<uint64_t>(f));
  }
  // The tagged page index. REQUIRES: is_valid() (asserted).
  arch::PfnOrOffset pfn_or_offset() const;

  constexpr bool operator==(const MigratePfn&) const = default;

 private:
  explicit constexpr MigratePfn(uint64_t v) : v_(v) {}
  uint64_t v_ = 0;
};
static_assert(sizeof(MigratePfn) == 8, "one unsigned long per entry, as the kernel's arrays");

// migrate_pfn_to_page: the page an entry names, or null when it is not VALID. The tag decides
// the lookup: kDevicePrivate through the device private address space, otherwise the memmap.
// Asserts (the series' point) when the tag and the page disagree: a tagged value in legacy,
// a tagged value no pagemap holds, an untagged value that names no descriptor or names a
// dpas device-private page.
page::Page* migrate_pfn_to_page(const devmem::DeviceMemory& dm, MigratePfn mpfn);

// migrate_pfn_from_page (series patch 1/4): migrate_pfn of the page's PFN, or of its offset
// with kDevicePrivate for a dpas device-private page.
MigratePfn migrate_pfn_from_page(const devmem::DeviceMemory& dm, const page::Page* page);

}  // namespace dpmm::migrate
