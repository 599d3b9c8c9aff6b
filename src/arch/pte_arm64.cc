#include "arch/pte_arm64.h"

#include <fmt/format.h>

#include "arch/swap_pte.h"

namespace dpmm::arch::arm64 {
namespace {

constexpr uint64_t kSwpOffsetFieldMask = bits::low_mask(kSwpOffsetBits);
constexpr uint64_t kSwpTypeFieldMask = bits::low_mask(kSwpTypeBits);
// Bits no modelled descriptor sets: NS (5), address bits 48..49 (48-bit PA), the retired
// devmap bit 57, PBHA bit 59 and bit 63.
constexpr uint64_t kNeverSet = bits::bit(5) | bits::mask(48, 49) | bits::bit(57) |
                               bits::bit(59) | bits::bit(63);
// Table descriptors: next-level address, AF (FEAT_HAFT) and the hierarchical attributes.
constexpr uint64_t kTableAllowed = kValid | kTableBit | kAddrMask | kAf | bits::mask(59, 63);

bool word_is_present(uint64_t w) {
  return (w & kValid) || ((w & (kValid | kPresentInvalid)) == kPresentInvalid);
}

bool is_pmd_table(uint64_t w) { return (w & (kValid | kTableBit)) == (kValid | kTableBit); }

uint64_t addr_mask_for(EntryLevel level) {
  return level == EntryLevel::kPmd ? kPmdAddrMask : kAddrMask;
}

// The arch-neutral rules plus arm64's own: no soft-dirty tracking at all.
Status check_arm64_prot(Prot prot) {
  if (has(prot, Prot::kSoftDirty))
    return make_error(Errno::kEOPNOTSUPP, "arm64 has no soft-dirty bit");
  return check_prot(prot);
}

Result<uint64_t> encode_present(EntryLevel level, SoftleafFormat f, Pfn pfn, Prot prot) {
  TRY(check_arm64_prot(prot));
  const uint64_t max_pfn = kAddrMask >> kPageShift;
  if (pfn.raw() > f.pfn_mask() || pfn.raw() > max_pfn)
    return make_error(Errno::kERANGE, "{} is beyond the 48-bit physical address space", pfn);
  if (level == EntryLevel::kPmd && (pfn.raw() & 511))
    return make_error(Errno::kEINVAL, "{} is not 2 MiB aligned for a PMD block", pfn);
  const bool prot_none = has(prot, Prot::kProtNone);
  const bool write = has(prot, Prot::kWrite);
  const bool dirty = has(prot, Prot::kDirty);
  uint64_t w = (pfn.raw() << kPageShift) | kShared | (uint64_t{kMtNormal} << 2);
  if (level == EntryLevel::kPte) w |= kTableBit;  // a level-3 page descriptor
  if (prot_none) {
    w |= kPresentInvalid | kRdonly | kPxn | kUxn;  // PAGE_NONE
  } else {
    w |= kValid;
    if (!has(prot, Prot::kGlobal)) w |= kNg;
    if (has(prot, Prot::kUser)) {
      w |= kUser | kPxn | (has(prot, Prot::kExec) ? 0 : kUxn);
    } else {
      w |= kUxn | (has(prot, Prot::kExec) ? 0 : kPxn);
    }
    if (write) w |= kWrite;
    if (!(write && dirty)) w |= kRdonly;
  }
  if (dirty) w |= kDirty;
  if (has(prot, Prot::kAccessed)) w |= kAf;
  if (has(prot, Prot::kSpecial)) w |= kSpecial;
  if (has(prot, Prot::kUffdWp)) w |= kUffdWp;
  return w;
}

Status check_swap_leaf(EntryLevel level, Softleaf leaf, SwpBit swp) {
  if (has(swp, SwpBit::kSoftDirty))
    return make_error(Errno::kEOPNOTSUPP, "arm64 swap entries have no soft-dirty bit");
  static constexpr SwapPteField kField{"arm64", kSwpOffsetBits, "read as pte_none"};
  return check_swap_pte_leaf(kField, level, leaf, swp);
}

Result<uint64_t> encode_swap(EntryLevel level, Softleaf leaf, SwpBit swp) {
  TRY(check_swap_leaf(level, leaf, swp));
  uint64_t w = (uint64_t{leaf.swp_type()} << kSwpTypeShift) |
               (leaf.swp_offset() << kSwpOffsetShift);
  if (has(swp, SwpBit::kExclusive)) w |= kSwpExclusive;
  if (has(swp, SwpBit::kUffdWp)) w |= kSwpUffdWp;
  return w;
}

Softleaf leaf_from_swap_word(SoftleafFormat f, uint64_t w) {
  const auto type = static_cast<unsigned>((w >> kSwpTypeShift) & kSwpTypeFieldMask);
  const uint64_t offset = (w >> kSwpOffsetShift) & kSwpOffsetFieldMask;
  return MUST(swp_entry(f, type, offset), "a 5-bit type and 50-bit offset always fit");
}

SwpBit swp_bits_of(uint64_t w) {
  SwpBit b = SwpBit::kNone;
  if (w & kSwpExclusive) b |= SwpBit::kExclusive;
  if (w & kSwpUffdWp) b |= SwpBit::kUffdWp;
  return b;
}

bool is_prot_none(uint64_t w) {
  // pte_protnone(): present-invalid, not user, not user-executable.
  return !(w & kValid) && (w & kPresentInvalid) && !(w & kUser) && (w & kUxn);
}

Prot prot_of_present(uint64_t w) {
  Prot p = Prot::kNone;
  const bool valid = w & kValid;
  if (is_prot_none(w)) p |= Prot::kProtNone;
  if (w & kWrite) p |= Prot::kWrite;
  if (w & kUser) p |= Prot::kUser;
  if (!((w & kUxn) && (w & kPxn))) p |= Prot::kExec;
  if (w & kAf) p |= Prot::kAccessed;
  if ((w & kDirty) || ((w & kWrite) && !(w & kRdonly))) p |= Prot::kDirty;
  if (w & kSpecial) p |= Prot::kSpecial;
  if (w & kUffdWp) p |= Prot::kUffdWp;
  if (valid && !(w & kNg)) p |= Prot::kGlobal;
  return p;
}

DecodedEntry decode_word(EntryLevel level, SoftleafFormat f, uint64_t w) {
  DecodedEntry d;
  d.level = level;
  d.raw = w;
  d.leaf = Softleaf::none(f);
  if (w == 0) return d;
  if (!word_is_present(w)) {
    d.kind = DecodedEntry::Kind::kSwap;
    d.leaf = leaf_from_swap_word(f, w);
    d.swp_bits = swp_bits_of(w);
    return d;
  }
  if (level == EntryLevel::kPmd && is_pmd_table(w)) {
    d.kind = DecodedEntry::Kind::kTable;
    d.pfn = Pfn((w & kAddrMask) >> kPageShift);
    return d;
  }
  d.kind = DecodedEntry::Kind::kPresent;
  d.pfn = Pfn((w & addr_mask_for(level)) >> kPageShift);
  d.prot = prot_of_present(w);
  d.hw_valid = (w & kValid) != 0;
  d.attr_index = static_cast<unsigned>(bits::extract(w, 2, 4));
  d.pkey = static_cast<unsigned>(bits::extract(w, 60, 62));
  return d;
}

Status validate_present(EntryLevel level, uint64_t w) {
  const char* what = level == EntryLevel::kPmd ? "PMD block" : "PTE";
  if (w & kNeverSet)
    return make_error(Errno::kEINVAL, "{} {:#x} sets bits {:#x} that Linux never sets", what, w,
                      w & kNeverSet);
  if (level == EntryLevel::kPte && !(w & kTableBit))
    return make_error(Errno::kEINVAL, "PTE {:#x} has bit 1 clear: reserved at level 3", w);
  if (level == EntryLevel::kPmd && (w & kTableBit))
    return make_error(Errno::kEINVAL, "present-invalid PMD {:#x} has the table bit set", w);
  if (level == EntryLevel::kPmd && (w & bits::mask(12, 20)))
    return make_error(Errno::kEINVAL, "PMD block {:#x} sets address bits 12..20 (RES0)", w);
  if ((w & kShared) != kShared)
    return make_error(Errno::kEINVAL, "{} {:#x} is not inner shareable (SH != 0b11)", what, w);
  if ((w & kWrite) && (w & kUffdWp))
    return make_error(Errno::kEINVAL, "{} {:#x} is writable and uffd-wp", what, w);
  if ((w & kValid) && (w & kUser) && !(w & kNg))
    return make_error(Errno::kEINVAL, "{} {:#x} is a global user mapping", what, w);
  if (is_prot_none(w) && (w & kWrite))
    return make_error(Errno::kEINVAL, "PROT_NONE {} {:#x} has PTE_WRITE", what, w);
  return ok();
}

Status validate_swap_fields(uint64_t w) {
  const uint64_t outside = w & ~(kSwpExclusive | kSwpUffdWp |
                                 (kSwpTypeFieldMask << kSwpTypeShift) |
                                 (kSwpOffsetFieldMask << kSwpOffsetShift));
  if (outside)
    return make_error(Errno::kEINVAL, "swap entry {:#x} sets bits {:#x} outside the swap fields",
                      w, outside);
  return ok();
}

Status validate_word(EntryLevel level, uint64_t w, SoftleafFormat f) {
  if (w == 0) return ok();
  if (!word_is_present(w)) {
    TRY(validate_swap_fields(w));
    return check_swap_leaf(level, leaf_from_swap_word(f, w), swp_bits_of(w));
  }
  if (level == EntryLevel::kPmd && is_pmd_table(w)) {
    if (w & ~kTableAllowed)
      return make_error(Errno::kEINVAL, "PMD table {:#x} sets bits {:#x} a table never has", w,
                        w & ~kTableAllowed);
    if (((w & kAddrMask) >> kPageShift) > f.pfn_mask())
      return make_error(Errno::kEINVAL, "PMD table {:#x} points beyond MAX_PHYSMEM_BITS", w);
    return ok();
  }
  TRY(validate_present(level, w));
  if (((w & kAddrMask) >> kPageShift) > f.pfn_mask())
    return make_error(Errno::kEINVAL, "{:#x} maps beyond MAX_PHYSMEM_BITS", w);
  return ok();
}

}  // namespace

Result<Pte> Pte::make_present(SoftleafFormat f, Pfn pfn, Prot prot) {
  return Pte(TRY(encode_present(EntryLevel::kPte, f, pfn, prot)));
}
Result<Pte> Pte::make_swap(Softleaf leaf, SwpBit swp) {
  return Pte(TRY(encode_swap(EntryLevel::kPte, leaf, swp)));
}
bool Pte::is_present() const { return word_is_present(val_); }
Softleaf Pte::to_softleaf(SoftleafFormat f) const {
  if (!is_swap()) return Softleaf::none(f);
  return leaf_from_swap_word(f, val_);
}
DecodedEntry Pte::decode(SoftleafFormat f) const { return decode_word(EntryLevel::kPte, f, val_); }
Status Pte::validate(SoftleafFormat f) const { return validate_word(EntryLevel::kPte, val_, f); }

Result<Pmd> Pmd::make_leaf(SoftleafFormat f, Pfn pfn, Prot prot) {
  return Pmd(TRY(encode_present(EntryLevel::kPmd, f, pfn, prot)));
}
Result<Pmd> Pmd::make_table(SoftleafFormat f, Pfn table) {
  if (table.raw() > f.pfn_mask() || table.raw() > (kAddrMask >> kPageShift))
    return make_error(Errno::kERANGE, "page table at {} is beyond the 48-bit physical space",
                      table);
  return Pmd((table.raw() << kPageShift) | kValid | kTableBit);
}
Result<Pmd> Pmd::make_swap(Softleaf leaf, SwpBit swp) {
  return Pmd(TRY(encode_swap(EntryLevel::kPmd, leaf, swp)));
}
bool Pmd::is_present() const { return word_is_present(val_); }
Softleaf Pmd::to_softleaf(SoftleafFormat f) const {
  if (!is_swap()) return Softleaf::none(f);
  return leaf_from_swap_word(f, val_);
}
DecodedEntry Pmd::decode(SoftleafFormat f) const { return decode_word(EntryLevel::kPmd, f, val_); }
Status Pmd::validate(SoftleafFormat f) const { return validate_word(EntryLevel::kPmd, val_, f); }

}  // namespace dpmm::arch::arm64
