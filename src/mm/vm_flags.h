// VmFlags: vma->vm_flags as an enum-class bit set, with the values of include/linux/mm.h
// (64-bit), and the derivations mmap and mprotect make from them:
//   calc_vm_prot_bits / calc_vm_flag_bits  (include/linux/mman.h)
//   vm_get_page_prot                       (mm/mmap.c, the arch's protection_map)
#pragma once

#include <cstdint>
#include <string>

#include "base/flags.h"
#include "arch/entry_bits.h"
#include "mm/mman.h"

namespace dpmm::mm {

enum class VmFlags : uint64_t {
  kNone = 0,
  kRead = 0x1,                 // VM_READ
  kWrite = 0x2,                // VM_WRITE
  kExec = 0x4,                 // VM_EXEC
  kShared = 0x8,               // VM_SHARED
  kMayRead = 0x10,             // VM_MAYREAD
  kMayWrite = 0x20,            // VM_MAYWRITE
  kMayExec = 0x40,             // VM_MAYEXEC
  kMayShare = 0x80,            // VM_MAYSHARE
  kGrowsDown = 0x100,          // VM_GROWSDOWN
  kUffdMissing = 0x200,        // VM_UFFD_MISSING
  kPfnMap = 0x400,             // VM_PFNMAP
  kUffdWp = 0x1000,            // VM_UFFD_WP
  kLocked = 0x2000,            // VM_LOCKED
  kIo = 0x4000,                // VM_IO
  kSeqRead = 0x8000,           // VM_SEQ_READ
  kRandRead = 0x10000,         // VM_RAND_READ
  kDontCopy = 0x20000,         // VM_DONTCOPY
  kDontExpand = 0x40000,       // VM_DONTEXPAND
  kLockOnFault = 0x80000,      // VM_LOCKONFAULT
  kAccount = 0x100000,         // VM_ACCOUNT
  kNoReserve = 0x200000,       // VM_NORESERVE
  kHugetlb = 0x400000,         // VM_HUGETLB
  kSync = 0x800000,            // VM_SYNC
  kWipeOnFork = 0x2000000,     // VM_WIPEONFORK
  kDontDump = 0x4000000,       // VM_DONTDUMP
  kMixedMap = 0x10000000,      // VM_MIXEDMAP
  kHugePage = 0x20000000,      // VM_HUGEPAGE
  kNoHugePage = 0x40000000,    // VM_NOHUGEPAGE
  kMergeable = 0x80000000,     // VM_MERGEABLE
};

DPMM_FLAG_OPS(VmFlags)

inline constexpr VmFlags kVmAccessFlags = VmFlags::kRead | VmFlags::kWrite | VmFlags::kExec;
inline constexpr VmFlags kVmMayFlags = VmFlags::kMayRead | VmFlags::kMayWrite | VmFlags::kMayExec;

// calc_vm_prot_bits: PROT_READ/WRITE/EXEC -> VM_READ/WRITE/EXEC.
VmFlags calc_vm_prot_bits(MmapProt prot);
// calc_vm_flag_bits for the flags modelled: MAP_GROWSDOWN -> VM_GROWSDOWN, MAP_LOCKED ->
// VM_LOCKED, MAP_SYNC -> VM_SYNC.
VmFlags calc_vm_flag_bits(MmapFlags flags);

// vm_get_page_prot: the protection a PTE of a VMA with these flags starts with. Private
// writable mappings get no write bit (__P010 = PAGE_COPY: the first write faults and COWs);
// shared writable ones do (__S010 = PAGE_SHARED); a VMA with none of read, write and exec
// gets PAGE_NONE (present to the kernel, not to the MMU). Every user protection carries
// kUser; exec follows VM_EXEC (x86 NX, arm64 UXN otherwise).
arch::Prot vm_get_page_prot(VmFlags flags);

// vma_is_accessible: any of VM_READ, VM_WRITE, VM_EXEC.
constexpr bool vma_flags_accessible(VmFlags f) { return has_any(f, kVmAccessFlags); }

// "rw-p"-style summary as /proc/pid/maps prints it, then the other flag names:
// "rw-p mr mw me ac".
std::string vm_flags_to_string(VmFlags f);

}  // namespace dpmm::mm
