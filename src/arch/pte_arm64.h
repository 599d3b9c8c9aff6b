// arm64 (4 KiB granule, 48-bit PA, no LPA2) PTE and PMD descriptors, bit-exact, as mainline
// of v7.0 (early 2026) writes them: after the PTE_PRESENT_INVALID rework (6.10: PROT_NONE is
// "present-invalid", overlaying nG) and uffd-wp support (6.10), and after the devmap bit went
// (6.17; bit 57 is unowned).
//
// Stage-1 descriptor (arch/arm64/include/asm/pgtable-hwdef.h, pgtable-prot.h):
//   bit  0 VALID                   bits 12..47 output address (48-bit PA; 48..49 RES0 here)
//   bit  1 TABLE / page (PTE: 1; PMD block: 0; PMD table: 1)
//   bits 2..4 AttrIndx             bit 50 GP (BTI guarded)
//   bit  6 AP[1] PTE_USER          bit 51 DBM = PTE_WRITE
//   bit  7 AP[2] PTE_RDONLY        bit 52 CONT       bit 53 PXN      bit 54 UXN
//   bits 8..9 SH (0b11 inner)      bit 55 PTE_DIRTY (sw)   bit 56 PTE_SPECIAL (sw)
//   bit 10 AF                      bit 58 PTE_UFFD_WP (sw) bits 60..62 POIndex
//   bit 11 nG; when VALID=0: PTE_PRESENT_INVALID
// Dirty state with hardware DBM: writable-clean is RDONLY=1,WRITE=1; writable-dirty is
// RDONLY=0,WRITE=1; a read-only dirty page keeps PTE_DIRTY. pte_dirty() = PTE_DIRTY ||
// (WRITE && !RDONLY).
// present-invalid (pte_present() true, MMU faults): VALID=0, PTE_PRESENT_INVALID=1. PROT_NONE
// is present-invalid with USER=0 and UXN=1 (pte_protnone); PAGE_NONE also sets RDONLY, PXN.
// A PMD block keeps bit 1 clear (pmd_mkhuge), so a PROT_NONE PMD has bits[1:0] = 00.
//
// Swap entry (arch/arm64/include/asm/pgtable.h), PTE and PMD alike:
//   bits 0-1 zero | bit 2 PTE_SWP_EXCLUSIVE | bit 3 PTE_SWP_UFFD_WP | bits 6-10 type |
//   bit 11 zero (PTE_PRESENT_INVALID) | bits 12-61 offset (50 bits)
// arm64 has no soft-dirty tracking (no HAVE_ARCH_SOFT_DIRTY): neither present nor swap entries
// can carry it; asking for it is EOPNOTSUPP.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/decoded_entry.h"
#include "arch/entry_bits.h"
#include "arch/softleaf.h"
#include "base/bits.h"
#include "base/result.h"
#include "base/types.h"

namespace dpmm::arch::arm64 {

inline constexpr uint64_t kValid = bits::bit(0);            // PTE_VALID
inline constexpr uint64_t kTableBit = bits::bit(1);         // PTE_TABLE_BIT (page at level 3)
inline constexpr uint64_t kAttrIndxMask = bits::mask(2, 4); // PTE_ATTRINDX_MASK
inline constexpr uint64_t kUser = bits::bit(6);             // PTE_USER, AP[1]
inline constexpr uint64_t kRdonly = bits::bit(7);           // PTE_RDONLY, AP[2]
inline constexpr uint64_t kShared = bits::mask(8, 9);       // PTE_SHARED, SH = 0b11
inline constexpr uint64_t kAf = bits::bit(10);              // PTE_AF
inline constexpr uint64_t kNg = bits::bit(11);              // PTE_NG
inline constexpr uint64_t kPresentInvalid = kNg;            // PTE_PRESENT_INVALID (!VALID)
inline constexpr uint64_t kAddrMask = bits::mask(12, 47);   // output address, 48-bit PA
inline constexpr uint64_t kPmdAddrMask = bits::mask(21, 47);
inline constexpr uint64_t kGp = bits::bit(50);              // PTE_GP
inline constexpr uint64_t kWrite = bits::bit(51);           // PTE_WRITE = PTE_DBM
inline constexpr uint64_t kCont = bits::bit(52);            // PTE_CONT
inline constexpr uint64_t kPxn = bits::bit(53);             // PTE_PXN
inline constexpr uint64_t kUxn = bits::bit(54);             // PTE_UXN
inline constexpr uint64_t kDirty = bits::bit(55);           // PTE_DIRTY
inline constexpr uint64_t kSpecial = bits::bit(56);         // PTE_SPECIAL
inline constexpr uint64_t kUffdWp = bits::bit(58);          // PTE_UFFD_WP
inline constexpr uint64_t kPoIndexMask = bits::mask(60, 62); // PTE_PO_IDX_0..2
inline constexpr unsigned kMtNormal = 0;  // MT_NORMAL (arch/arm64/include/asm/memory.h)

inline constexpr uint64_t kSwpExclusive = bits::bit(2);  // PTE_SWP_EXCLUSIVE
inline constexpr uint64_t kSwpUffdWp = bits::bit(3);     // PTE_SWP_UFFD_WP
inline constexpr unsigned kSwpTypeShift = 6;             // __SWP_TYPE_SHIFT
inline constexpr unsigned kSwpTypeBits = 5;              // __SWP_TYPE_BITS
inline constexpr unsigned kSwpOffsetShift = 12;          // __SWP_OFFSET_SHIFT
inline constexpr unsigned kSwpOffsetBits = 50;           // __SWP_OFFSET_BITS

class Pte {
 public:
  static constexpr Pte from_raw(uint64_t v) { return Pte(v); }
  static constexpr Pte none() { return Pte(0); }
  // pfn_pte(pfn, prot) for a normal-memory page (AttrIndx MT_NORMAL, inner shareable).
  // EOPNOTSUPP for kSoftDirty; ERANGE for a PFN beyond 48-bit PA; EINVAL for kProtNone with
  // write/user/exec/global, kUffdWp with kWrite, kUser with kGlobal.
  static Result<Pte> make_present(SoftleafFormat f, Pfn pfn, Prot prot);
  // swp_entry_to_pte(leaf) plus software bits: EOPNOTSUPP for kSoftDirty; EINVAL for the none
  // leaf or one failing softleaf_validate; ERANGE for an offset wider than 50 bits.
  static Result<Pte> make_swap(Softleaf leaf, SwpBit swp);

  constexpr uint64_t raw() const { return val_; }
  bool is_none() const { return val_ == 0; }
  bool is_present() const;  // valid or present-invalid
  bool is_swap() const { return !is_none() && !is_present(); }
  Softleaf to_softleaf(SoftleafFormat f) const;  // softleaf_from_pte
  DecodedEntry decode(SoftleafFormat f) const;
  Status validate(SoftleafFormat f) const;
  constexpr bool operator==(const Pte&) const = default;

 private:
  explicit constexpr Pte(uint64_t v) : val_(v) {}
  uint64_t val_;
};
static_assert(sizeof(Pte) == 8);

class Pmd {
 public:
  static constexpr Pmd from_raw(uint64_t v) { return Pmd(v); }
  static constexpr Pmd none() { return Pmd(0); }
  // A 2 MiB block: as Pte::make_present with bit 1 clear; EINVAL unless 512-page aligned.
  static Result<Pmd> make_leaf(SoftleafFormat f, Pfn pfn, Prot prot);
  // A table descriptor (PMD_TYPE_TABLE) pointing at a page of PTEs.
  static Result<Pmd> make_table(SoftleafFormat f, Pfn table);
  // swp_entry_to_pmd: only migration and device-private leaves, no exclusive bit.
  static Result<Pmd> make_swap(Softleaf leaf, SwpBit swp);

  constexpr uint64_t raw() const { return val_; }
  bool is_none() const { return val_ == 0; }
  bool is_present() const;
  bool is_swap() const { return !is_none() && !is_present(); }
  Softleaf to_softleaf(SoftleafFormat f) const;  // softleaf_from_pmd
  DecodedEntry decode(SoftleafFormat f) const;
  Status validate(SoftleafFormat f) const;
  // The page of PTEs a table descriptor (valid, bit 1 set) points at; nullopt for any other
  // word. Exactly decode()'s kTable case, without building a DecodedEntry: the page-table
  // walk's fast path.
  constexpr std::optional<Pfn> table_pfn() const {
    if ((val_ & (kValid | kTableBit)) != (kValid | kTableBit)) return std::nullopt;
    return Pfn((val_ & kAddrMask) >> kPageShift);
  }
  constexpr bool operator==(const Pmd&) const = default;

 private:
  explicit constexpr Pmd(uint64_t v) : val_(v) {}
  uint64_t val_;
};
static_assert(sizeof(Pmd) == 8);

}  // namespace dpmm::arch::arm64
