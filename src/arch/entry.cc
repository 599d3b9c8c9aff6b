#include "arch/entry.h"

#include "arch/pte_arm64.h"
#include "arch/pte_x86.h"

#include <type_traits>

namespace dpmm::arch {
namespace {

// Runs `fn` with the arch's Pte or Pmd class for `level`.
template <typename Fn>
decltype(auto) with_word_class(ArchKind arch, EntryLevel level, Fn&& fn) {
  if (arch == ArchKind::kX86_64) {
    return level == EntryLevel::kPte ? fn(static_cast<x86::Pte*>(nullptr))
                                     : fn(static_cast<x86::Pmd*>(nullptr));
  }
  return level == EntryLevel::kPte ? fn(static_cast<arm64::Pte*>(nullptr))
                                   : fn(static_cast<arm64::Pmd*>(nullptr));
}

}  // namespace

Result<uint64_t> EntryCodec::make_present(EntryLevel level, Pfn pfn, Prot prot) const {
  const SoftleafFormat f = format_;
  if (arch() == ArchKind::kX86_64) {
    if (level == EntryLevel::kPte) return TRY(x86::Pte::make_present(f, pfn, prot)).raw();
    return TRY(x86::Pmd::make_leaf(f, pfn, prot)).raw();
  }
  if (level == EntryLevel::kPte) return TRY(arm64::Pte::make_present(f, pfn, prot)).raw();
  return TRY(arm64::Pmd::make_leaf(f, pfn, prot)).raw();
}

Result<uint64_t> EntryCodec::make_table(Pfn table) const {
  if (arch() == ArchKind::kX86_64) return TRY(x86::Pmd::make_table(format_, table)).raw();
  return TRY(arm64::Pmd::make_table(format_, table)).raw();
}

Result<uint64_t> EntryCodec::make_swap(EntryLevel level, Softleaf leaf, SwpBit swp) const {
  if (leaf.format() != format_)
    return make_error(Errno::kEINVAL,
                      "softleaf of the {} numbering with {}-bit PFNs given to a {} codec for {} "
                      "with {}-bit PFNs",
                      numbering_name(leaf.format().numbering), leaf.format().pfn_bits,
                      numbering_name(format_.numbering), arch_name(arch()), format_.pfn_bits);
  return with_word_class(arch(), level, [&](auto* tag) -> Result<uint64_t> {
    using Word = std::remove_pointer_t<decltype(tag)>;
    return TRY(Word::make_swap(leaf, swp)).raw();
  });
}

DecodedEntry EntryCodec::decode(EntryLevel level, uint64_t word) const {
  return with_word_class(arch(), level, [&](auto* tag) {
    using Word = std::remove_pointer_t<decltype(tag)>;
    return Word::from_raw(word).decode(format_);
  });
}

std::optional<Pfn> EntryCodec::table_pfn(uint64_t word) const {
  return arch() == ArchKind::kX86_64 ? x86::Pmd::from_raw(word).table_pfn()
                                      : arm64::Pmd::from_raw(word).table_pfn();
}

Softleaf EntryCodec::softleaf_from(EntryLevel level, uint64_t word) const {
  return with_word_class(arch(), level, [&](auto* tag) {
    using Word = std::remove_pointer_t<decltype(tag)>;
    return Word::from_raw(word).to_softleaf(format_);
  });
}

Status EntryCodec::validate(EntryLevel level, uint64_t word) const {
  return with_word_class(arch(), level, [&](auto* tag) {
    using Word = std::remove_pointer_t<decltype(tag)>;
    return Word::from_raw(word).validate(format_);
  });
}

}  // namespace dpmm::arch
