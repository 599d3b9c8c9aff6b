// Arch-neutral descriptions of what a page-table entry says, as enum-class bit sets:
//   Prot    the protection and state of a present entry (x86 and arm64 encode it differently)
//   SwpBit  the software bits a non-present (swap) entry carries beside its softleaf
// Each arch's codec maps these to its own bits and refuses what it cannot express.
#pragma once

#include <cstdint>
#include <string>

#include "base/flags.h"
#include "base/result.h"

namespace dpmm::arch {

enum class Prot : uint16_t {
  kNone = 0,
  kWrite = 1 << 0,
  kUser = 1 << 1,       // user (EL0) accessible
  kExec = 1 << 2,
  kAccessed = 1 << 3,   // young
  kDirty = 1 << 4,
  kSpecial = 1 << 5,    // pte_special: no struct page to refcount
  kSoftDirty = 1 << 6,  // x86 only; arm64 has no soft-dirty tracking
  kUffdWp = 1 << 7,     // userfaultfd write-protected; never together with kWrite
  kGlobal = 1 << 8,     // x86 G / arm64 nG clear: kernel mappings only
  // Present to the kernel but not to the MMU: PROT_NONE and NUMA-hinting entries
  // (x86 _PAGE_PROTNONE, arm64 PTE_PRESENT_INVALID). Excludes kWrite, kUser, kExec, kGlobal.
  kProtNone = 1 << 9,
};

DPMM_FLAG_OPS(Prot)
inline constexpr Prot kAllProt = static_cast<Prot>((1u << 10) - 1);

// "write|user|accessed"; "none" for the empty set.
std::string prot_to_string(Prot p);

// The rules every arch's present entry obeys, whatever its bits: a PROT_NONE entry carries no
// write, user, exec or global bit; a uffd-wp entry is not writable; a user mapping is never
// global. EINVAL naming the rule. Arch-specific refusals (arm64 soft-dirty) are the arch's.
Status check_prot(Prot p);

enum class SwpBit : uint8_t {
  kNone = 0,
  kExclusive = 1 << 0,  // pte_swp_exclusive: remembers PG_anon_exclusive; PTEs only
  kSoftDirty = 1 << 1,  // pte_swp_soft_dirty: x86 only
  kUffdWp = 1 << 2,     // pte_swp_uffd_wp
};

DPMM_FLAG_OPS(SwpBit)
inline constexpr SwpBit kAllSwpBits = static_cast<SwpBit>(0x7);

std::string swp_bits_to_string(SwpBit b);  // "exclusive|uffd_wp"; "none"

// Which level of the page table a word sits at.
enum class EntryLevel : uint8_t { kPte, kPmd };

}  // namespace dpmm::arch
