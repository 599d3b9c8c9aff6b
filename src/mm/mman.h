// mmap(2)/mprotect(2) arguments: PROT_* and MAP_* with the values of
// include/uapi/asm-generic/mman-common.h and include/uapi/asm-generic/mman.h (x86_64 and arm64
// use the generic values for every flag modelled here).
#pragma once

#include <cstdint>
#include <string>

#include "base/flags.h"

namespace dpmm::mm {

enum class MmapProt : uint32_t {
  kNone = 0x0,   // PROT_NONE
  kRead = 0x1,   // PROT_READ
  kWrite = 0x2,  // PROT_WRITE
  kExec = 0x4,   // PROT_EXEC
};

enum class MmapFlags : uint32_t {
  kNone = 0,
  kShared = 0x01,                 // MAP_SHARED
  kPrivate = 0x02,                // MAP_PRIVATE
  kSharedValidate = 0x03,         // MAP_SHARED_VALIDATE
  kTypeMask = 0x0f,               // MAP_TYPE
  kFixed = 0x10,                  // MAP_FIXED
  kAnonymous = 0x20,              // MAP_ANONYMOUS
  kGrowsDown = 0x0100,            // MAP_GROWSDOWN
  kDenyWrite = 0x0800,            // MAP_DENYWRITE (ignored by the kernel)
  kExecutable = 0x1000,           // MAP_EXECUTABLE (ignored by the kernel)
  kLocked = 0x2000,               // MAP_LOCKED
  kNoReserve = 0x4000,            // MAP_NORESERVE
  kPopulate = 0x8000,             // MAP_POPULATE
  kNonBlock = 0x10000,            // MAP_NONBLOCK
  kStack = 0x20000,               // MAP_STACK
  kHugetlb = 0x40000,             // MAP_HUGETLB
  kSync = 0x80000,                // MAP_SYNC
  kFixedNoreplace = 0x100000,     // MAP_FIXED_NOREPLACE
};

DPMM_FLAG_OPS(MmapProt)

DPMM_FLAG_OPS(MmapFlags)

// Every PROT_* bit mprotect accepts here (PROT_GROWSDOWN/UP are not modelled).
inline constexpr MmapProt kAllMmapProt = MmapProt::kRead | MmapProt::kWrite | MmapProt::kExec;

// LEGACY_MAP_MASK (include/linux/mman.h): the flags MAP_SHARED_VALIDATE accepts without
// further checks; MAP_SYNC is validated separately.
inline constexpr MmapFlags kLegacyMapMask =
    MmapFlags::kShared | MmapFlags::kPrivate | MmapFlags::kFixed | MmapFlags::kAnonymous |
    MmapFlags::kDenyWrite | MmapFlags::kExecutable |
    MmapFlags::kGrowsDown | MmapFlags::kLocked | MmapFlags::kNoReserve | MmapFlags::kPopulate |
    MmapFlags::kNonBlock | MmapFlags::kStack | MmapFlags::kHugetlb;

// mremap(2) flags (include/uapi/linux/mman.h).
enum class MremapFlags : uint32_t {
  kNone = 0,
  kMayMove = 1,    // MREMAP_MAYMOVE
  kFixed = 2,      // MREMAP_FIXED
  kDontUnmap = 4,  // MREMAP_DONTUNMAP
};
DPMM_FLAG_OPS(MremapFlags)

// madvise(2) advice values modelled (include/uapi/asm-generic/mman-common.h). Not a flag set:
// one value per call.
enum class Madvise : int {
  kNormal = 0,       // MADV_NORMAL
  kRandom = 1,       // MADV_RANDOM
  kSequential = 2,   // MADV_SEQUENTIAL
  kWillNeed = 3,     // MADV_WILLNEED
  kDontNeed = 4,     // MADV_DONTNEED
  kFree = 8,         // MADV_FREE
  kHugePage = 14,    // MADV_HUGEPAGE
  kNoHugePage = 15,  // MADV_NOHUGEPAGE
  kCollapse = 25,    // MADV_COLLAPSE
};
// "MADV_DONTNEED", ...; "MADV_(n)" for a value not modelled.
std::string madvise_name(Madvise advice);

std::string prot_to_string(MmapProt p);     // "PROT_READ|PROT_WRITE", "PROT_NONE"
std::string map_flags_to_string(MmapFlags f);  // "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"

}  // namespace dpmm::mm
