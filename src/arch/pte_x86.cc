#include "arch/pte_x86.h"

#include <fmt/format.h>

#include "arch/swap_pte.h"

namespace dpmm::arch::x86 {
namespace {

constexpr uint64_t kSwpOffsetFieldMask = bits::low_mask(kSwpOffsetBits);
constexpr uint64_t kPtePatOrPse = bits::bit(7);

// protnone_mask(): all ones for a non-zero word with P clear (pgtable-invert.h).
constexpr uint64_t protnone_mask(uint64_t val) {
  return (val != 0 && !(val & kPresent)) ? ~uint64_t{0} : 0;
}

uint64_t pfn_mask_for(EntryLevel level) {
  return level == EntryLevel::kPmd ? kPmdPfnMask : kPfnMask;
}

bool word_is_none(uint64_t w) { return (w & ~kKnlErratumMask) == 0; }

bool word_is_present(EntryLevel level, uint64_t w) {
  const uint64_t present_bits =
      kPresent | kProtNone | (level == EntryLevel::kPmd ? kPse : uint64_t{0});
  return (w & present_bits) != 0;
}

bool is_pmd_table(uint64_t w) { return (w & kPresent) && !(w & kPse); }

// pfn_pte()/pfn_pmd(): flags from prot, PFN inverted when the word is non-present.
Result<uint64_t> encode_present(EntryLevel level, SoftleafFormat f, Pfn pfn, Prot prot) {
  TRY(check_prot(prot));
  if (pfn.raw() > f.pfn_mask())
    return make_error(Errno::kERANGE, "{} is beyond MAX_PHYSMEM_BITS ({}-bit PFNs)", pfn,
                      f.pfn_bits);
  if (level == EntryLevel::kPmd && (pfn.raw() & 511))
    return make_error(Errno::kEINVAL, "{} is not 2 MiB aligned for a PMD leaf", pfn);
  const bool prot_none = has(prot, Prot::kProtNone);
  uint64_t flags = prot_none ? kProtNone : kPresent;
  if (has(prot, Prot::kWrite)) flags |= kRw;
  if (has(prot, Prot::kUser)) flags |= kUser;
  if (has(prot, Prot::kAccessed)) flags |= kAccessed;
  // A read-only page's dirtiness goes to SAVED_DIRTY so as not to look like shadow stack.
  if (has(prot, Prot::kDirty)) flags |= has(prot, Prot::kWrite) ? kDirty : kSavedDirty;
  if (!has(prot, Prot::kExec) && !prot_none) flags |= kNx;
  if (has(prot, Prot::kSpecial)) flags |= kSpecial;
  if (has(prot, Prot::kSoftDirty)) flags |= kSoftDirty;
  if (has(prot, Prot::kUffdWp)) flags |= kUffdWp;
  if (has(prot, Prot::kGlobal)) flags |= kGlobal;
  if (level == EntryLevel::kPmd) flags |= kPse;
  const uint64_t addr = ((pfn.raw() << kPageShift) ^ protnone_mask(flags)) & pfn_mask_for(level);
  return addr | flags;
}

Status check_swap_leaf(EntryLevel level, Softleaf leaf, SwpBit swp) {
  static constexpr SwapPteField kField{"x86", kSwpOffsetBits, "be slot 0 of swap file 0"};
  return check_swap_pte_leaf(kField, level, leaf, swp);
}

// __swp_entry(): type at the top, the offset inverted just above bit 8.
Result<uint64_t> encode_swap(EntryLevel level, Softleaf leaf, SwpBit swp) {
  TRY(check_swap_leaf(level, leaf, swp));
  uint64_t w = (uint64_t{leaf.swp_type()} << (64 - kSwpTypeBits)) |
               ((~leaf.swp_offset() & kSwpOffsetFieldMask) << kSwpOffsetFirstBit);
  if (has(swp, SwpBit::kSoftDirty)) w |= kSwpSoftDirty;
  if (has(swp, SwpBit::kUffdWp)) w |= kSwpUffdWp;
  if (has(swp, SwpBit::kExclusive)) w |= kSwpExclusive;
  return w;
}

Softleaf leaf_from_swap_word(SoftleafFormat f, uint64_t w) {
  const unsigned type = static_cast<unsigned>(w >> (64 - kSwpTypeBits));
  const uint64_t offset = (~w >> kSwpOffsetFirstBit) & kSwpOffsetFieldMask;
  return MUST(swp_entry(f, type, offset), "a 5-bit type and 50-bit offset always fit");
}

SwpBit swp_bits_of(uint64_t w) {
  SwpBit b = SwpBit::kNone;
  if (w & kSwpSoftDirty) b |= SwpBit::kSoftDirty;
  if (w & kSwpUffdWp) b |= SwpBit::kUffdWp;
  if (w & kSwpExclusive) b |= SwpBit::kExclusive;
  return b;
}

Prot prot_of_present(uint64_t w) {
  Prot p = Prot::kNone;
  const bool hw_present = w & kPresent;
  const bool prot_none = !hw_present && (w & kProtNone);
  if (prot_none) p |= Prot::kProtNone;
  if (w & kRw) p |= Prot::kWrite;
  if (w & kUser) p |= Prot::kUser;
  if (!prot_none && !(w & kNx)) p |= Prot::kExec;
  if (w & kAccessed) p |= Prot::kAccessed;
  if (w & (kDirty | kSavedDirty)) p |= Prot::kDirty;  // _PAGE_DIRTY_BITS
  if (w & kSpecial) p |= Prot::kSpecial;
  if (w & kSoftDirty) p |= Prot::kSoftDirty;
  if (w & kUffdWp) p |= Prot::kUffdWp;
  if (hw_present && (w & kGlobal)) p |= Prot::kGlobal;
  return p;
}

DecodedEntry decode_word(EntryLevel level, SoftleafFormat f, uint64_t w) {
  DecodedEntry d;
  d.level = level;
  d.raw = w;
  d.leaf = Softleaf::none(f);
  if (word_is_none(w)) return d;
  if (!word_is_present(level, w)) {
    d.kind = DecodedEntry::Kind::kSwap;
    d.leaf = leaf_from_swap_word(f, w);
    d.swp_bits = swp_bits_of(w);
    return d;
  }
  if (level == EntryLevel::kPmd && is_pmd_table(w)) {
    d.kind = DecodedEntry::Kind::kTable;
    d.pfn = Pfn((w & kPfnMask) >> kPageShift);
    return d;
  }
  d.kind = DecodedEntry::Kind::kPresent;
  d.pfn = Pfn(((w ^ protnone_mask(w)) & pfn_mask_for(level)) >> kPageShift);
  d.prot = prot_of_present(w);
  d.hw_valid = (w & kPresent) != 0;
  const uint64_t pat_bit = level == EntryLevel::kPmd ? kPatLarge : kPtePatOrPse;
  d.attr_index = ((w & pat_bit) ? 4u : 0u) | ((w & kPcd) ? 2u : 0u) | ((w & kPwt) ? 1u : 0u);
  d.pkey = static_cast<unsigned>(bits::extract(w, 59, 62));
  return d;
}

Status validate_table(uint64_t w, SoftleafFormat f) {
  // pmd_bad(): a table is P|RW|D with US and A free; nothing else may be set.
  const uint64_t flags = w & ~kPfnMask;
  if ((flags & (kPresent | kRw | kDirty)) != (kPresent | kRw | kDirty))
    return make_error(Errno::kEINVAL, "PMD table {:#x} lacks P, RW or D (pmd_bad)", w);
  if (flags & ~kPageTable)
    return make_error(Errno::kEINVAL, "PMD table {:#x} sets bits {:#x} beyond _PAGE_TABLE", w,
                      flags & ~kPageTable);
  if (((w & kPfnMask) >> kPageShift) > f.pfn_mask())
    return make_error(Errno::kEINVAL, "PMD table {:#x} points beyond MAX_PHYSMEM_BITS", w);
  return ok();
}

Status validate_present(EntryLevel level, uint64_t w, SoftleafFormat f) {
  const char* what = level == EntryLevel::kPmd ? "PMD leaf" : "PTE";
  if (w & bits::mask(52, 57))
    return make_error(Errno::kEINVAL, "{} {:#x} sets bits 52..57, which Linux never uses", what,
                      w);
  const uint64_t pfn = ((w ^ protnone_mask(w)) & pfn_mask_for(level)) >> kPageShift;
  if (pfn > f.pfn_mask())
    return make_error(Errno::kEINVAL, "{} {:#x} maps pfn:{:#x}, beyond MAX_PHYSMEM_BITS", what,
                      w, pfn);
  if (level == EntryLevel::kPmd && (w & bits::mask(13, 20)))
    return make_error(Errno::kEINVAL, "PMD leaf {:#x} sets reserved bits 13..20", w);
  if ((w & kRw) && (w & kSavedDirty))
    return make_error(Errno::kEINVAL, "{} {:#x} is writable with SAVED_DIRTY set", what, w);
  if (!(w & kRw) && (w & kDirty))
    return make_error(Errno::kEINVAL,
                      "{} {:#x} is Write=0,Dirty=1: the shadow-stack encoding, unmodelled", what,
                      w);
  if ((w & kRw) && (w & kUffdWp))
    return make_error(Errno::kEINVAL, "{} {:#x} is writable and uffd-wp", what, w);
  if ((w & kUser) && (w & kPresent) && (w & kGlobal))
    return make_error(Errno::kEINVAL, "{} {:#x} is a global user mapping", what, w);
  const bool prot_none = !(w & kPresent) && (w & kProtNone);
  if (prot_none && (w & (kRw | kUser | kNx)))
    return make_error(Errno::kEINVAL, "PROT_NONE {} {:#x} sets RW, US or NX", what, w);
  return ok();
}

Status validate_swap(EntryLevel level, uint64_t w, SoftleafFormat f) {
  if (w & bits::mask(4, 8))
    return make_error(Errno::kEINVAL, "swap entry {:#x} sets bits 4..8 outside the swap fields",
                      w);
  return check_swap_leaf(level, leaf_from_swap_word(f, w), swp_bits_of(w));
}

Status validate_word(EntryLevel level, uint64_t w, SoftleafFormat f) {
  if (word_is_none(w)) return ok();
  if (!word_is_present(level, w)) return validate_swap(level, w, f);
  if (level == EntryLevel::kPmd && is_pmd_table(w)) return validate_table(w, f);
  return validate_present(level, w, f);
}

}  // namespace

Result<Pte> Pte::make_present(SoftleafFormat f, Pfn pfn, Prot prot) {
  return Pte(TRY(encode_present(EntryLevel::kPte, f, pfn, prot)));
}
Result<Pte> Pte::make_swap(Softleaf leaf, SwpBit swp) {
  return Pte(TRY(encode_swap(EntryLevel::kPte, leaf, swp)));
}
bool Pte::is_none() const { return word_is_none(val_); }
bool Pte::is_present() const { return word_is_present(EntryLevel::kPte, val_); }
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
  if (table.raw() > f.pfn_mask())
    return make_error(Errno::kERANGE, "page table at {} is beyond MAX_PHYSMEM_BITS", table);
  return Pmd((table.raw() << kPageShift) | kPageTable);
}
Result<Pmd> Pmd::make_swap(Softleaf leaf, SwpBit swp) {
  return Pmd(TRY(encode_swap(EntryLevel::kPmd, leaf, swp)));
}
bool Pmd::is_none() const { return word_is_none(val_); }
bool Pmd::is_present() const { return word_is_present(EntryLevel::kPmd, val_); }
Softleaf Pmd::to_softleaf(SoftleafFormat f) const {
  if (!is_swap()) return Softleaf::none(f);
  return leaf_from_swap_word(f, val_);
}
DecodedEntry Pmd::decode(SoftleafFormat f) const { return decode_word(EntryLevel::kPmd, f, val_); }
Status Pmd::validate(SoftleafFormat f) const { return validate_word(EntryLevel::kPmd, val_, f); }

}  // namespace dpmm::arch::x86
