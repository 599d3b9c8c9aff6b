// Softleaf: the arch-independent swap entry (the kernel's swp_entry_t, called softleaf_t by the
// leaf-entry API of include/linux/leafops.h), and every constructor and predicate over it.
//
// Layout (include/linux/swapops.h, 64-bit): the value is an xarray value of 63 bits,
//   bits 58..62  type    (SWP_TYPE_SHIFT = BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT = 63 - 5)
//   bits  0..57  offset  (SWP_OFFSET_MASK)
//   bit  63      always 0
// What the offset holds depends on the type (see SwapNumbering for the type values):
//   swap file       a swap slot (slot 0 of a file is its header and never an entry)
//   migration       |resv|D|A|PFN|: PFN in bits [0, SWP_PFN_BITS), young (A) at SWP_PFN_BITS,
//                   dirty (D) at SWP_PFN_BITS + 1, the rest zero
//   device private  legacy: the device page's PFN.  dpas: its device-private offset
//   migration device private (dpas only): the device-private offset, plus A/D as migration
//   device exclusive, hwpoison: a PFN (of a normal page)
//   PTE marker      marker bits UFFD_WP=1, POISONED=2, GUARD=4
// SWP_PFN_BITS = MAX_PHYSMEM_BITS - PAGE_SHIFT depends on the arch (x86_64: 34, or 40 with
// 5-level paging; arm64 48-bit PA: 36), so an entry carries its SoftleafFormat: the numbering
// of its design and the arch's SWP_PFN_BITS. A dpas device-private payload can only be read
// out as a DevPrivOffset: softleaf_to_pfn() refuses it.
//
// Kernel files: include/linux/swapops.h, include/linux/swap.h, include/linux/leafops.h;
// the MIGRATION_DEVICE_* types and softleaf_to_flags() from the 2026 series, patches 6-8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "arch/arch.h"
#include "arch/pfn_or_offset.h"
#include "arch/swap_numbering.h"
#include "base/flags.h"
#include "base/result.h"
#include "base/types.h"

namespace dpmm::arch {

inline constexpr unsigned kBitsPerXaValue = 63;  // BITS_PER_XA_VALUE
inline constexpr unsigned kSwpTypeShift = kBitsPerXaValue - kMaxSwapfilesShift;  // SWP_TYPE_SHIFT
inline constexpr uint64_t kSwpOffsetMask = (uint64_t{1} << kSwpTypeShift) - 1;   // SWP_OFFSET_MASK
static_assert(kSwpTypeShift == 58);

// enum softleaf_type (include/linux/leafops.h). The three MIGRATION_DEVICE_PRIVATE values are
// the series' (patch 8); where the series places them in the C enum is not modelled.
enum class SoftleafType : uint8_t {
  kNone,
  kSwap,
  kMigrationRead,
  kMigrationReadExclusive,
  kMigrationWrite,
  kMigrationDevicePrivateRead,
  kMigrationDevicePrivateReadExclusive,
  kMigrationDevicePrivateWrite,
  kDevicePrivateRead,
  kDevicePrivateWrite,
  kDeviceExclusive,
  kHwpoison,
  kMarker,
  kCount,
};

// "SOFTLEAF_DEVICE_PRIVATE_WRITE", ...
std::string_view softleaf_type_name(SoftleafType t);

// pte_marker bits (include/linux/swapops.h).
enum class PteMarker : uint8_t {
  kNone = 0,
  kUffdWp = 1 << 0,    // PTE_MARKER_UFFD_WP
  kPoisoned = 1 << 1,  // PTE_MARKER_POISONED
  kGuard = 1 << 2,     // PTE_MARKER_GUARD
};
inline constexpr uint64_t kPteMarkerMask = 0x7;  // PTE_MARKER_MASK
DPMM_FLAG_OPS(PteMarker)

// Which numbering an entry's type uses and how wide a PFN is on its arch.
struct SoftleafFormat {
  SwapNumberingKind numbering = SwapNumberingKind::kLegacy;
  uint8_t pfn_bits = 34;  // SWP_PFN_BITS

  static constexpr SoftleafFormat for_arch(SwapNumberingKind n, const ArchParams& a) {
    return SoftleafFormat{n, static_cast<uint8_t>(a.max_physmem_bits - kPageShift)};
  }
  constexpr const SwapNumbering& swap_numbering() const { return arch::swap_numbering(numbering); }
  constexpr uint64_t pfn_mask() const { return (uint64_t{1} << pfn_bits) - 1; }  // SWP_PFN_MASK
  constexpr uint64_t mig_young() const { return uint64_t{1} << pfn_bits; }       // SWP_MIG_YOUNG
  constexpr uint64_t mig_dirty() const { return uint64_t{1} << (pfn_bits + 1); } // SWP_MIG_DIRTY
  constexpr bool operator==(const SoftleafFormat&) const = default;
};

class Softleaf {
 public:
  // The none entry (softleaf_mk_none): what a present or none PTE decodes to.
  static constexpr Softleaf none(SoftleafFormat f) { return Softleaf(f, 0); }
  // Any value whose bit 63 is clear (EINVAL otherwise); whether the kernel could have built it
  // is softleaf_validate()'s question.
  static Result<Softleaf> from_raw(SoftleafFormat f, uint64_t val);

  constexpr uint64_t raw() const { return val_; }
  constexpr SoftleafFormat format() const { return format_; }
  constexpr unsigned swp_type() const { return static_cast<unsigned>(val_ >> kSwpTypeShift); }
  constexpr uint64_t swp_offset() const { return val_ & kSwpOffsetMask; }
  constexpr bool operator==(const Softleaf&) const = default;

 private:
  friend Result<Softleaf> swp_entry(SoftleafFormat, unsigned, uint64_t);
  constexpr Softleaf(SoftleafFormat f, uint64_t v) : val_(v), format_(f) {}
  uint64_t val_;
  SoftleafFormat format_;
};
static_assert(sizeof(Softleaf) == 16, "the raw word plus its 2-byte format, padded");

// swp_entry(type, offset) with its fields checked instead of masked: EINVAL for a type >= 32,
// ERANGE for an offset wider than SWP_OFFSET_MASK. No meaning is checked here.
Result<Softleaf> swp_entry(SoftleafFormat f, unsigned type, uint64_t offset);

// --- Constructors (include/linux/swapops.h). Each refuses a payload its field cannot hold
// (ERANGE naming value and limit) and a payload of the wrong kind for the numbering (EINVAL).

// A real swap slot: EINVAL unless type < MAX_SWAPFILES, and for slot 0 (the swap header).
Result<Softleaf> make_swap_entry(SoftleafFormat f, unsigned type, uint64_t offset);

// Device-private entries hold a Pfn in legacy numbering and a DevPrivOffset in dpas numbering;
// the other kind is EINVAL.
Result<Softleaf> make_readable_device_private_entry(SoftleafFormat f, PfnOrOffset where);
Result<Softleaf> make_writable_device_private_entry(SoftleafFormat f, PfnOrOffset where);
// A normal (anonymous) page lent exclusively to a device: always a PFN.
Result<Softleaf> make_device_exclusive_entry(SoftleafFormat f, Pfn pfn);

Result<Softleaf> make_readable_migration_entry(SoftleafFormat f, Pfn pfn);
Result<Softleaf> make_readable_exclusive_migration_entry(SoftleafFormat f, Pfn pfn);
Result<Softleaf> make_writable_migration_entry(SoftleafFormat f, Pfn pfn);
// dpas only (EINVAL in legacy, where a device page migrates under the plain types by PFN).
Result<Softleaf> make_readable_migration_device_private_entry(SoftleafFormat f, DevPrivOffset o);
Result<Softleaf> make_readable_exclusive_migration_device_private_entry(SoftleafFormat f,
                                                                       DevPrivOffset o);
Result<Softleaf> make_writable_migration_device_private_entry(SoftleafFormat f, DevPrivOffset o);

Result<Softleaf> make_hwpoison_entry(SoftleafFormat f, Pfn pfn);
// EINVAL for no marker bit or a bit outside PTE_MARKER_MASK.
Result<Softleaf> make_pte_marker_entry(SoftleafFormat f, PteMarker marker);

// Set the migration young/dirty bits. REQUIRES: softleaf_is_migration(e). Both modelled arches
// have room for them: migration_entry_supports_ad() holds when the arch swap offset (50 bits on
// both) is wider than SWP_PFN_BITS + 2. [from memory, mm/swapfile.c: the kernel derives it from
// the maximum swap file size, which x86's L1TF mitigation can shrink; not modelled.]
Softleaf make_migration_entry_young(Softleaf e);
Softleaf make_migration_entry_dirty(Softleaf e);

// --- Predicates (include/linux/leafops.h names).
SoftleafType softleaf_type(Softleaf e);
constexpr bool softleaf_is_none(Softleaf e) { return e.raw() == 0; }
bool softleaf_is_swap(Softleaf e);
// Is-a semantics (series patch 8): the migration predicates are also true for the
// device-private migration variants.
bool softleaf_is_migration(Softleaf e);
bool softleaf_is_migration_read(Softleaf e);
bool softleaf_is_migration_read_exclusive(Softleaf e);
bool softleaf_is_migration_write(Softleaf e);
bool softleaf_is_migration_device_private(Softleaf e);
bool softleaf_is_migration_device_private_read(Softleaf e);
bool softleaf_is_migration_device_private_read_exclusive(Softleaf e);
bool softleaf_is_migration_device_private_write(Softleaf e);
bool softleaf_is_device_private(Softleaf e);  // READ or WRITE, not the migration variants
bool softleaf_is_device_private_write(Softleaf e);
bool softleaf_is_device_exclusive(Softleaf e);
bool softleaf_is_hwpoison(Softleaf e);
bool softleaf_is_marker(Softleaf e);
// Kernel name kept: true for migration, device-private, device-exclusive and hwpoison entries,
// also when (dpas) the payload is a device-private offset rather than a PFN.
bool softleaf_has_pfn(Softleaf e);
// True when the payload is a device-private offset: dpas device-private and migration
// device-private entries.
bool softleaf_holds_offset(Softleaf e);

// The PFN (swp_offset & SWP_PFN_MASK). EINVAL when the entry has no PFN or holds a
// device-private offset.
Result<Pfn> softleaf_to_pfn(Softleaf e);
// The device-private offset. EINVAL unless softleaf_holds_offset(e).
Result<DevPrivOffset> softleaf_to_offset(Softleaf e);
// Either, tagged. EINVAL when the entry has neither.
Result<PfnOrOffset> softleaf_to_pfn_or_offset(Softleaf e);
// The migration young/dirty bits as they sit in the offset (series patch 6).
// REQUIRES: softleaf_is_migration(e).
uint64_t softleaf_to_flags(Softleaf e);
bool softleaf_is_migration_young(Softleaf e);  // REQUIRES: softleaf_is_migration(e)
bool softleaf_is_migration_dirty(Softleaf e);  // REQUIRES: softleaf_is_migration(e)
PteMarker softleaf_to_marker(Softleaf e);      // REQUIRES: softleaf_is_marker(e)

// Ok when the kernel could have built `e`: reserved offset bits zero, payload within
// SWP_PFN_BITS, marker bits within PTE_MARKER_MASK and not empty, swap slot not 0.
// EINVAL naming the offending field otherwise.
Status softleaf_validate(Softleaf e);

// "SWP_DEVICE_WRITE pfn:0x12345", "SWP_MIGRATION_WRITE pfn:0x10 young dirty",
// "swapfile:3 slot 0x40", "SWP_PTE_MARKER GUARD", "none".
std::string softleaf_describe(Softleaf e);

}  // namespace dpmm::arch
