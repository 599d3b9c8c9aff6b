#include "mm/vm_flags.h"

#include <utility>

namespace dpmm::mm {

VmFlags calc_vm_prot_bits(MmapProt prot) {
  VmFlags f = VmFlags::kNone;
  if (has(prot, MmapProt::kRead)) f |= VmFlags::kRead;
  if (has(prot, MmapProt::kWrite)) f |= VmFlags::kWrite;
  if (has(prot, MmapProt::kExec)) f |= VmFlags::kExec;
  return f;
}

VmFlags calc_vm_flag_bits(MmapFlags flags) {
  VmFlags f = VmFlags::kNone;
  if (has(flags, MmapFlags::kGrowsDown)) f |= VmFlags::kGrowsDown;
  if (has(flags, MmapFlags::kLocked)) f |= VmFlags::kLocked;
  if (has(flags, MmapFlags::kSync)) f |= VmFlags::kSync;
  return f;
}

arch::Prot vm_get_page_prot(VmFlags flags) {
  if (!vma_flags_accessible(flags)) return arch::Prot::kProtNone;
  arch::Prot p = arch::Prot::kUser;
  if (has(flags, VmFlags::kWrite) && has(flags, VmFlags::kShared)) p |= arch::Prot::kWrite;
  if (has(flags, VmFlags::kExec)) p |= arch::Prot::kExec;
  return p;
}

std::string vm_flags_to_string(VmFlags f) {
  // Two-letter names of fs/proc/task_mmu.c show_smap_vma_flags.
  static constexpr std::pair<VmFlags, const char*> kNames[] = {
      {VmFlags::kRead, "rd"},        {VmFlags::kWrite, "wr"},      {VmFlags::kExec, "ex"},
      {VmFlags::kShared, "sh"},      {VmFlags::kMayRead, "mr"},    {VmFlags::kMayWrite, "mw"},
      {VmFlags::kMayExec, "me"},     {VmFlags::kMayShare, "ms"},   {VmFlags::kGrowsDown, "gd"},
      {VmFlags::kPfnMap, "pf"},      {VmFlags::kLocked, "lo"},     {VmFlags::kIo, "io"},
      {VmFlags::kDontCopy, "dc"},    {VmFlags::kDontExpand, "de"}, {VmFlags::kAccount, "ac"},
      {VmFlags::kNoReserve, "nr"},   {VmFlags::kHugetlb, "ht"},    {VmFlags::kSync, "sf"},
      {VmFlags::kWipeOnFork, "wf"},  {VmFlags::kDontDump, "dd"},   {VmFlags::kMixedMap, "mm"},
      {VmFlags::kHugePage, "hg"},    {VmFlags::kNoHugePage, "nh"}, {VmFlags::kMergeable, "mg"},
  };
  std::string out;
  out += has(f, VmFlags::kRead) ? 'r' : '-';
  out += has(f, VmFlags::kWrite) ? 'w' : '-';
  out += has(f, VmFlags::kExec) ? 'x' : '-';
  out += has(f, VmFlags::kMayShare) ? 's' : 'p';
  for (const auto& [bit, name] : kNames) {
    if (has(f, bit)) out += std::string(" ") + name;
  }
  return out;
}

}  // namespace dpmm::mm
