#include "mm/mman.h"

#include <utility>

namespace dpmm::mm {

std::string prot_to_string(MmapProt p) {
  if (p == MmapProt::kNone) return "PROT_NONE";
  std::string out;
  auto add = [&](MmapProt bit, const char* name) {
    if (!has(p, bit)) return;
    if (!out.empty()) out += '|';
    out += name;
  };
  add(MmapProt::kRead, "PROT_READ");
  add(MmapProt::kWrite, "PROT_WRITE");
  add(MmapProt::kExec, "PROT_EXEC");
  const uint32_t rest = static_cast<uint32_t>(p) & ~static_cast<uint32_t>(kAllMmapProt);
  if (rest != 0) out += (out.empty() ? "" : "|") + std::to_string(rest);
  return out;
}

std::string madvise_name(Madvise advice) {
  switch (advice) {
    case Madvise::kNormal: return "MADV_NORMAL";
    case Madvise::kRandom: return "MADV_RANDOM";
    case Madvise::kSequential: return "MADV_SEQUENTIAL";
    case Madvise::kWillNeed: return "MADV_WILLNEED";
    case Madvise::kDontNeed: return "MADV_DONTNEED";
    case Madvise::kFree: return "MADV_FREE";
    case Madvise::kHugePage: return "MADV_HUGEPAGE";
    case Madvise::kNoHugePage: return "MADV_NOHUGEPAGE";
    case Madvise::kCollapse: return "MADV_COLLAPSE";
  }
  return "MADV_(" + std::to_string(static_cast<int>(advice)) + ")";
}

std::string map_flags_to_string(MmapFlags f) {
  static constexpr std::pair<MmapFlags, const char*> kNames[] = {
      {MmapFlags::kFixed, "MAP_FIXED"},         {MmapFlags::kAnonymous, "MAP_ANONYMOUS"},
      {MmapFlags::kGrowsDown, "MAP_GROWSDOWN"}, {MmapFlags::kDenyWrite, "MAP_DENYWRITE"},
      {MmapFlags::kExecutable, "MAP_EXECUTABLE"}, {MmapFlags::kLocked, "MAP_LOCKED"},
      {MmapFlags::kNoReserve, "MAP_NORESERVE"}, {MmapFlags::kPopulate, "MAP_POPULATE"},
      {MmapFlags::kNonBlock, "MAP_NONBLOCK"},   {MmapFlags::kStack, "MAP_STACK"},
      {MmapFlags::kHugetlb, "MAP_HUGETLB"},     {MmapFlags::kSync, "MAP_SYNC"},
      {MmapFlags::kFixedNoreplace, "MAP_FIXED_NOREPLACE"},
  };
  std::string out;
  switch (static_cast<uint32_t>(f & MmapFlags::kTypeMask)) {
    case 0x01: out = "MAP_SHARED"; break;
    case 0x02: out = "MAP_PRIVATE"; break;
    case 0x03: out = "MAP_SHARED_VALIDATE"; break;
    case 0x00: out = "MAP_TYPE(0)"; break;
    default: out = "MAP_TYPE(" + std::to_string(static_cast<uint32_t>(f & MmapFlags::kTypeMask)) + ")";
  }
  for (const auto& [bit, name] : kNames) {
    if (has(f, bit)) out += std::string("|") + name;
  }
  return out;
}

}  // namespace dpmm::mm
