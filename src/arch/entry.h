// EntryCodec: build, decode and validate PTE/PMD words without caring which arch they are for.
//
// A codec is fixed to one arch (its bit layout and MAX_PHYSMEM_BITS) and one swap numbering
// (the design's). Upper layers and the CLI hold one per simulated machine and pass raw words;
// the per-arch classes (pte_x86.h, pte_arm64.h) hold the bit-level truth.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/arch.h"
#include "arch/decoded_entry.h"
#include "arch/entry_bits.h"
#include "arch/softleaf.h"
#include "base/result.h"
#include "base/types.h"

namespace dpmm::arch {

class EntryCodec {
 public:
  EntryCodec(const ArchParams& params, SwapNumberingKind numbering)
      : params_(params), format_(SoftleafFormat::for_arch(numbering, params)) {}

  ArchKind arch() const { return params_.kind; }
  const ArchParams& params() const { return params_; }
  // The format every softleaf given to or got from this codec uses.
  SoftleafFormat format() const { return format_; }

  // A present leaf: a PTE, or a 2 MiB PMD leaf. Errors as the arch's make_present/make_leaf
  // (ERANGE pfn too wide, EINVAL bad combination or misaligned PMD pfn, EOPNOTSUPP
  // soft-dirty on arm64).
  Result<uint64_t> make_present(EntryLevel level, Pfn pfn, Prot prot) const;
  // A PMD pointing at a page of PTEs.
  Result<uint64_t> make_table(Pfn table) const;
  // A swap entry. EINVAL when leaf.format() is not this codec's format, else as the arch's
  // make_swap.
  Result<uint64_t> make_swap(EntryLevel level, Softleaf leaf, SwpBit swp) const;

  // Never fails: any 64-bit word decodes.
  DecodedEntry decode(EntryLevel level, uint64_t word) const;
  // The table a PMD (or upper-level) word points at: decode(kPmd, word).pfn when that is a
  // kTable, else nullopt; the walk's fast path, a few bit operations.
  std::optional<Pfn> table_pfn(uint64_t word) const;
  // softleaf_from_pte / softleaf_from_pmd: none unless the word is a swap entry.
  Softleaf softleaf_from(EntryLevel level, uint64_t word) const;
  // Ok when the kernel could have written this word at this level; EINVAL with the reason.
  Status validate(EntryLevel level, uint64_t word) const;

 private:
  ArchParams params_;
  SoftleafFormat format_;
};

}  // namespace dpmm::arch
