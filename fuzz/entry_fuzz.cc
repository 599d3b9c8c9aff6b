// libFuzzer target: PTE/PMD words. Every 64-bit word must decode and validate without
// crashing on every arch, paging mode and swap numbering; a swap word that validates must
// re-encode to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "arch/entry.h"

namespace {

void check(const dpmm::arch::EntryCodec& codec, dpmm::arch::EntryLevel level, uint64_t word) {
  using dpmm::arch::DecodedEntry;
  const DecodedEntry d = codec.decode(level, word);
  (void)dpmm::arch::describe(d);
  const bool valid = codec.validate(level, word).is_ok();
  if (!valid || d.kind != DecodedEntry::Kind::kSwap) return;
  auto again = codec.make_swap(level, d.leaf, d.swp_bits);
  if (again.is_error() || *again != word) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dpmm::arch;
  if (size < sizeof(uint64_t)) return 0;
  uint64_t word;
  std::memcpy(&word, data, sizeof word);
  static const EntryCodec kCodecs[] = {
      EntryCodec(x86_64_params(PagingMode::kFourLevel), SwapNumberingKind::kLegacy),
      EntryCodec(x86_64_params(PagingMode::kFourLevel), SwapNumberingKind::kDpas),
      EntryCodec(x86_64_params(PagingMode::kFiveLevel), SwapNumberingKind::kDpas),
      EntryCodec(arm64_params(), SwapNumberingKind::kLegacy),
      EntryCodec(arm64_params(), SwapNumberingKind::kDpas),
  };
  for (const EntryCodec& c : kCodecs) {
    check(c, EntryLevel::kPte, word);
    check(c, EntryLevel::kPmd, word);
  }
  return 0;
}
