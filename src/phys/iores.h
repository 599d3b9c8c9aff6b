// Resource flags and descriptors as the kernel's struct resource carries them.
//
// Values are the kernel's (include/linux/ioport.h), so a flags word prints as the kernel's
// would. /proc/iomem does not print flags or descriptors; classify_iomem_name() infers them
// from the names that the kernel's own producers (arch/x86/kernel/e820.c, kernel/resource.c,
// kernel/crash_core.c, the PCI core) give their resources.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/flags.h"

namespace dpmm::phys {

// struct resource::flags. A flag set, not a state: combine with | and test with has().
enum class IoresourceFlags : uint32_t {
  kNone = 0,
  kIo = 0x00000100,         // IORESOURCE_IO
  kMem = 0x00000200,        // IORESOURCE_MEM
  kPrefetch = 0x00002000,   // IORESOURCE_PREFETCH
  kMem64 = 0x00100000,      // IORESOURCE_MEM_64
  kWindow = 0x00200000,     // IORESOURCE_WINDOW: forwarded by a bridge
  kMuxed = 0x00400000,      // IORESOURCE_MUXED: software-muxed, waiters sleep
  kSysRam = 0x01000000,     // IORESOURCE_SYSRAM (an extended type)
  kExclusive = 0x08000000,  // IORESOURCE_EXCLUSIVE
  kDisabled = 0x10000000,   // IORESOURCE_DISABLED
  kUnset = 0x20000000,      // IORESOURCE_UNSET
  kBusy = 0x80000000,       // IORESOURCE_BUSY: a driver claimed it
  kSystemRam = 0x01000200,  // IORESOURCE_SYSTEM_RAM = MEM | SYSRAM
};

// IORESOURCE_TYPE_BITS and IORESOURCE_EXT_TYPE_BITS.
inline constexpr uint32_t kIoresourceTypeBits = 0x00001f00;
inline constexpr uint32_t kIoresourceExtTypeBits = 0x01000000;

DPMM_FLAG_OPS(IoresourceFlags)
constexpr uint32_t raw(IoresourceFlags f) { return static_cast<uint32_t>(f); }
// resource_type() | resource_ext_type(): what __request_region copies from its parent.
constexpr IoresourceFlags type_bits(IoresourceFlags f) {
  return static_cast<IoresourceFlags>(raw(f) & (kIoresourceTypeBits | kIoresourceExtTypeBits));
}

// "MEM|SYSRAM|BUSY"; unknown bits print as hex.
std::string format_flags(IoresourceFlags f);

// struct resource::desc (include/linux/ioport.h, enum IORES_DESC_*).
enum class IoresDesc : uint8_t {
  kNone = 0,
  kCrashKernel = 1,
  kAcpiTables = 2,
  kAcpiNvStorage = 3,
  kPersistentMemory = 4,
  kPersistentMemoryLegacy = 5,
  kDevicePrivateMemory = 6,
  kReserved = 7,
  kSoftReserved = 8,
  kCxl = 9,
};

std::string_view iores_desc_name(IoresDesc d);  // "IORES_DESC_DEVICE_PRIVATE_MEMORY"

// What region_intersects() answers (include/linux/mm.h: REGION_DISJOINT/INTERSECTS/MIXED).
enum class RegionIntersection : uint8_t { kDisjoint = 0, kIntersects = 1, kMixed = 2 };

std::string_view region_intersection_name(RegionIntersection r);  // "REGION_MIXED"

struct IomemClass {
  IoresourceFlags flags;
  IoresDesc desc;
};

// Flags and descriptor a resource with this /proc/iomem name carries in the kernel:
//   "System RAM", "Kernel code|rodata|data|bss"  SYSTEM_RAM|BUSY           (kernel/resource.c,
//                                                                         arch/x86/kernel/setup.c)
//   "Crash kernel"                               SYSTEM_RAM|BUSY, CRASH_KERNEL
//   "Reserved"                                   MEM, RESERVED           (e820: not marked busy)
//   "Soft Reserved"                              MEM, SOFT_RESERVED
//   "Persistent Memory"                          MEM, PERSISTENT_MEMORY
//   "Persistent Memory (legacy)"                 MEM, PERSISTENT_MEMORY_LEGACY
//   "ACPI Tables" / "ACPI Non-volatile Storage"  MEM|BUSY, ACPI_TABLES / ACPI_NV_STORAGE
//   "PCI Bus ..."                                MEM|WINDOW              (a bridge window)
//   a PCI device "dddd:bb:dd.f"                  MEM                     (a BAR; drivers nest)
//   anything else                                MEM|BUSY                (a driver's claim)
// Exact for the names listed; a guess for the rest, since /proc/iomem prints no flags.
IomemClass classify_iomem_name(std::string_view name);

}  // namespace dpmm::phys
