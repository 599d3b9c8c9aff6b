#include "phys/iores.h"

#include <cctype>

#include <fmt/format.h>

namespace dpmm::phys {

std::string format_flags(IoresourceFlags f) {
  static constexpr struct {
    IoresourceFlags bit;
    const char* name;
  } kNames[] = {
      {IoresourceFlags::kIo, "IO"},          {IoresourceFlags::kMem, "MEM"},
      {IoresourceFlags::kPrefetch, "PREFETCH"}, {IoresourceFlags::kMem64, "MEM_64"},
      {IoresourceFlags::kWindow, "WINDOW"},  {IoresourceFlags::kMuxed, "MUXED"},
      {IoresourceFlags::kSysRam, "SYSRAM"},  {IoresourceFlags::kExclusive, "EXCLUSIVE"},
      {IoresourceFlags::kDisabled, "DISABLED"}, {IoresourceFlags::kUnset, "UNSET"},
      {IoresourceFlags::kBusy, "BUSY"},
  };
  std::string out;
  uint32_t rest = raw(f);
  for (const auto& n : kNames) {
    if (!has(f, n.bit)) continue;
    if (!out.empty()) out += '|';
    out += n.name;
    rest &= ~raw(n.bit);
  }
  if (rest != 0) {
    if (!out.empty()) out += '|';
    out += fmt::format("{:#x}", rest);
  }
  return out.empty() ? "0" : out;
}

std::string_view iores_desc_name(IoresDesc d) {
  switch (d) {
    case IoresDesc::kNone: return "IORES_DESC_NONE";
    case IoresDesc::kCrashKernel: return "IORES_DESC_CRASH_KERNEL";
    case IoresDesc::kAcpiTables: return "IORES_DESC_ACPI_TABLES";
    case IoresDesc::kAcpiNvStorage: return "IORES_DESC_ACPI_NV_STORAGE";
    case IoresDesc::kPersistentMemory: return "IORES_DESC_PERSISTENT_MEMORY";
    case IoresDesc::kPersistentMemoryLegacy: return "IORES_DESC_PERSISTENT_MEMORY_LEGACY";
    case IoresDesc::kDevicePrivateMemory: return "IORES_DESC_DEVICE_PRIVATE_MEMORY";
    case IoresDesc::kReserved: return "IORES_DESC_RESERVED";
    case IoresDesc::kSoftReserved: return "IORES_DESC_SOFT_RESERVED";
    case IoresDesc::kCxl: return "IORES_DESC_CXL";
  }
  return "IORES_DESC_?";
}

std::string_view region_intersection_name(RegionIntersection r) {
  switch (r) {
    case RegionIntersection::kDisjoint: return "REGION_DISJOINT";
    case RegionIntersection::kIntersects: return "REGION_INTERSECTS";
    case RegionIntersection::kMixed: return "REGION_MIXED";
  }
  return "REGION_?";
}

namespace {

// "0000:00:1f.3": a PCI device name as dev_name() prints it (domain:bus:slot.function).
bool is_pci_device_name(std::string_view n) {
  if (n.size() != 12) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    if (i == 4 || i == 7) {
      if (c != ':') return false;
    } else if (i == 10) {
      if (c != '.') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

}  // namespace

IomemClass classify_iomem_name(std::string_view name) {
  using F = IoresourceFlags;
  const F ram_busy = F::kSystemRam | F::kBusy;
  if (name == "System RAM" || name == "Kernel code" || name == "Kernel rodata" ||
      name == "Kernel data" || name == "Kernel bss") {
    return {ram_busy, IoresDesc::kNone};
  }
  if (name == "Crash kernel") return {ram_busy, IoresDesc::kCrashKernel};
  if (name == "Reserved") return {F::kMem, IoresDesc::kReserved};
  if (name == "Soft Reserved") return {F::kMem, IoresDesc::kSoftReserved};
  if (name == "Persistent Memory") return {F::kMem, IoresDesc::kPersistentMemory};
  if (name == "Persistent Memory (legacy)") return {F::kMem, IoresDesc::kPersistentMemoryLegacy};
  if (name == "ACPI Tables") return {F::kMem | F::kBusy, IoresDesc::kAcpiTables};
  if (name == "ACPI Non-volatile Storage") return {F::kMem | F::kBusy, IoresDesc::kAcpiNvStorage};
  if (name.starts_with("PCI Bus ")) return {F::kMem | F::kWindow, IoresDesc::kNone};
  if (is_pci_device_name(name)) return {F::kMem, IoresDesc::kNone};
  return {F::kMem | F::kBusy, IoresDesc::kNone};
}

}  // namespace dpmm::phys
