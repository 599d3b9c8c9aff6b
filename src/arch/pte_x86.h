// x86_64 PTE and PMD words, bit-exact, as the kernel of v7.0 (early 2026) writes them.
//
// Present entry (arch/x86/include/asm/pgtable_types.h):
//   bit  0 P        present                   bit  7 PAT (PTE) / PSE (PMD leaf)
//   bit  1 RW       writable                  bit  8 G global; when P=0: _PAGE_PROTNONE
//   bit  2 US       user                      bit  9 SOFTW1 _PAGE_SPECIAL
//   bit  3 PWT      \ cache mode              bit 10 SOFTW2 _PAGE_UFFD_WP
//   bit  4 PCD      /                         bit 11 SOFTW3 _PAGE_SOFT_DIRTY
//   bit  5 A        accessed                  bit 12 PAT_LARGE (PMD leaf)
//   bit  6 D        dirty                     bits 12..51 PFN (PTE_PFN_MASK); 21..51 on a PMD leaf
//   bit 57 SOFTW4   unused since devmap went  bit 58 SOFTW5 _PAGE_SAVED_DIRTY (Write=0 dirty)
//   bits 59..62 protection key                bit 63 NX
// Hardware reads Write=0,Dirty=1 as a shadow-stack page, so the kernel keeps the dirtiness of a
// read-only page in _PAGE_SAVED_DIRTY instead; dpmm models no shadow-stack mappings.
//
// PROT_NONE (and NUMA hinting): P=0 with _PAGE_PROTNONE set; pte_present() is still true.
// L1TF mitigation (arch/x86/include/asm/pgtable-invert.h): in every non-zero word with P=0 the
// PFN field is stored inverted, so a speculative walk points at non-existent memory; pte_pfn()
// undoes it.
//
// Swap (non-present, non-none) entry (arch/x86/include/asm/pgtable_64.h):
//   bits 59..63 type | bits 9..58 ~offset (inverted, 50 bits) | 0 | 0 | X X X | E | F | SD | 0
//   bit 1 _PAGE_SWP_SOFT_DIRTY (= RW), bit 2 _PAGE_SWP_UFFD_WP (= US),
//   bit 3 _PAGE_SWP_EXCLUSIVE (= PWT); bits 7 and 8 must be 0 or pmd_present()/pte_present()
//   would see an entry (SWP_OFFSET_FIRST_BIT = _PAGE_BIT_PROTNONE + 1 = 9).
//
// pte_none(): nothing but A/D set (the Knights Landing erratum may set those in non-present
// entries). pmd_present(): P, PROTNONE or PSE (a PMD being split has P clear, PSE set).
#pragma once

#include <cstdint>
#include <optional>

#include "arch/decoded_entry.h"
#include "arch/entry_bits.h"
#include "arch/softleaf.h"
#include "base/bits.h"
#include "base/result.h"
#include "base/types.h"

namespace dpmm::arch::x86 {

inline constexpr uint64_t kPresent = bits::bit(0);     // _PAGE_PRESENT
inline constexpr uint64_t kRw = bits::bit(1);          // _PAGE_RW
inline constexpr uint64_t kUser = bits::bit(2);        // _PAGE_USER
inline constexpr uint64_t kPwt = bits::bit(3);         // _PAGE_PWT
inline constexpr uint64_t kPcd = bits::bit(4);         // _PAGE_PCD
inline constexpr uint64_t kAccessed = bits::bit(5);    // _PAGE_ACCESSED
inline constexpr uint64_t kDirty = bits::bit(6);       // _PAGE_DIRTY
inline constexpr uint64_t kPat = bits::bit(7);         // _PAGE_PAT (4 KiB PTE)
inline constexpr uint64_t kPse = bits::bit(7);         // _PAGE_PSE (PMD leaf)
inline constexpr uint64_t kGlobal = bits::bit(8);      // _PAGE_GLOBAL
inline constexpr uint64_t kProtNone = bits::bit(8);    // _PAGE_PROTNONE (when P=0)
inline constexpr uint64_t kSpecial = bits::bit(9);     // _PAGE_SPECIAL
inline constexpr uint64_t kUffdWp = bits::bit(10);     // _PAGE_UFFD_WP
inline constexpr uint64_t kSoftDirty = bits::bit(11);  // _PAGE_SOFT_DIRTY
inline constexpr uint64_t kPatLarge = bits::bit(12);   // _PAGE_PAT_LARGE
inline constexpr uint64_t kSoftw4 = bits::bit(57);     // _PAGE_SOFTW4: no owner in v7.0
inline constexpr uint64_t kSavedDirty = bits::bit(58); // _PAGE_SAVED_DIRTY
inline constexpr uint64_t kPkeyMask = bits::mask(59, 62);
inline constexpr uint64_t kNx = bits::bit(63);         // _PAGE_NX
inline constexpr uint64_t kKnlErratumMask = kDirty | kAccessed;  // _PAGE_KNL_ERRATUM_MASK
inline constexpr uint64_t kPfnMask = bits::mask(12, 51);         // PTE_PFN_MASK
inline constexpr uint64_t kPmdPfnMask = bits::mask(21, 51);      // PHYSICAL_PMD_PAGE_MASK
inline constexpr uint64_t kPageTable = kPresent | kRw | kUser | kAccessed | kDirty;  // _PAGE_TABLE

inline constexpr uint64_t kSwpSoftDirty = kRw;   // _PAGE_SWP_SOFT_DIRTY
inline constexpr uint64_t kSwpUffdWp = kUser;    // _PAGE_SWP_UFFD_WP
inline constexpr uint64_t kSwpExclusive = kPwt;  // _PAGE_SWP_EXCLUSIVE
inline constexpr unsigned kSwpTypeBits = 5;        // SWP_TYPE_BITS
inline constexpr unsigned kSwpOffsetFirstBit = 9;  // SWP_OFFSET_FIRST_BIT = _PAGE_BIT_PROTNONE + 1
inline constexpr unsigned kSwpOffsetShift = kSwpOffsetFirstBit + kSwpTypeBits;  // SWP_OFFSET_SHIFT
inline constexpr unsigned kSwpOffsetBits = 64 - kSwpOffsetShift;  // 50 offset bits
static_assert(kSwpOffsetBits == 50);

class Pte {
 public:
  static constexpr Pte from_raw(uint64_t v) { return Pte(v); }
  static constexpr Pte none() { return Pte(0); }
  // pfn_pte(pfn, prot). ERANGE for a PFN beyond MAX_PHYSMEM_BITS (f.pfn_bits); EINVAL for
  // kProtNone with write/user/exec/global, kUffdWp with kWrite, kUser with kGlobal.
  static Result<Pte> make_present(SoftleafFormat f, Pfn pfn, Prot prot);
  // swp_entry_to_pte(leaf) plus its software bits. EINVAL for the none leaf or a leaf that
  // fails softleaf_validate; ERANGE for an offset wider than the 50-bit field.
  static Result<Pte> make_swap(Softleaf leaf, SwpBit swp);

  constexpr uint64_t raw() const { return val_; }
  bool is_none() const;
  bool is_present() const;
  bool is_swap() const { return !is_none() && !is_present(); }
  // softleaf_from_pte: none for a present or none PTE.
  Softleaf to_softleaf(SoftleafFormat f) const;
  DecodedEntry decode(SoftleafFormat f) const;
  // Ok when the kernel could have written this word; EINVAL with the reason otherwise.
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
  // A 2 MiB leaf (PSE): as Pte::make_present, and EINVAL unless pfn is 512-page aligned.
  static Result<Pmd> make_leaf(SoftleafFormat f, Pfn pfn, Prot prot);
  // A pointer to a page of PTEs (_PAGE_TABLE).
  static Result<Pmd> make_table(SoftleafFormat f, Pfn table);
  // swp_entry_to_pmd: only migration and device-private leaves (pmd_is_valid_softleaf), no
  // exclusive bit (a PMD keeps exclusivity in the migration type).
  static Result<Pmd> make_swap(Softleaf leaf, SwpBit swp);

  constexpr uint64_t raw() const { return val_; }
  bool is_none() const;
  bool is_present() const;  // leaf or table
  bool is_swap() const { return !is_none() && !is_present(); }
  Softleaf to_softleaf(SoftleafFormat f) const;  // softleaf_from_pmd
  DecodedEntry decode(SoftleafFormat f) const;
  Status validate(SoftleafFormat f) const;
  // The page of PTEs a table entry (present, not PSE) points at; nullopt for any other word.
  // Exactly decode()'s kTable case, without building a DecodedEntry: the page-table walk's
  // fast path.
  constexpr std::optional<Pfn> table_pfn() const {
    if ((val_ & (kPresent | kPse)) != kPresent) return std::nullopt;
    return Pfn((val_ & kPfnMask) >> kPageShift);
  }
  constexpr bool operator==(const Pmd&) const = default;

 private:
  explicit constexpr Pmd(uint64_t v) : val_(v) {}
  uint64_t val_;
};
static_assert(sizeof(Pmd) == 8);

}  // namespace dpmm::arch::x86
