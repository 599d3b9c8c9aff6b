#include "arch/entry_bits.h"

#include <array>
#include <string_view>
#include <utility>

namespace dpmm::arch {
namespace {

template <typename Bits, size_t N>
std::string join_bits(Bits set, const std::array<std::pair<Bits, std::string_view>, N>& names) {
  std::string out;
  for (const auto& [bit, name] : names) {
    if (!has(set, bit)) continue;
    if (!out.empty()) out += '|';
    out += name;
  }
  return out.empty() ? "none" : out;
}

}  // namespace

std::string prot_to_string(Prot p) {
  static constexpr std::array<std::pair<Prot, std::string_view>, 10> kNames{{
      {Prot::kWrite, "write"},
      {Prot::kUser, "user"},
      {Prot::kExec, "exec"},
      {Prot::kAccessed, "accessed"},
      {Prot::kDirty, "dirty"},
      {Prot::kSpecial, "special"},
      {Prot::kSoftDirty, "soft_dirty"},
      {Prot::kUffdWp, "uffd_wp"},
      {Prot::kGlobal, "global"},
      {Prot::kProtNone, "prot_none"},
  }};
  return join_bits(p, kNames);
}

Status check_prot(Prot p) {
  if (has(p, Prot::kProtNone) &&
      has_any(p, Prot::kWrite | Prot::kUser | Prot::kExec | Prot::kGlobal)) {
    return make_error(Errno::kEINVAL, "PROT_NONE entries carry no write/user/exec/global ({})",
                      prot_to_string(p));
  }
  if (has(p, Prot::kUffdWp) && has(p, Prot::kWrite)) {
    return make_error(Errno::kEINVAL, "a uffd-wp entry is write-protected; drop write");
  }
  if (has(p, Prot::kUser) && has(p, Prot::kGlobal)) {
    return make_error(Errno::kEINVAL, "user mappings are never global");
  }
  return ok();
}

std::string swp_bits_to_string(SwpBit b) {
  static constexpr std::array<std::pair<SwpBit, std::string_view>, 3> kNames{{
      {SwpBit::kExclusive, "exclusive"},
      {SwpBit::kSoftDirty, "soft_dirty"},
      {SwpBit::kUffdWp, "uffd_wp"},
  }};
  return join_bits(b, kNames);
}

}  // namespace dpmm::arch
