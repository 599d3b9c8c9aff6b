#include "mm/page_vma_mapped.h"

#include <cassert>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/huge_memory.h"

namespace dpmm::mm {
namespace {

// check_pte: the page index the entry names, if it is of a kind this walk looks for.
std::optional<arch::PfnOrOffset> entry_target(const arch::DecodedEntry& d, PvmwFlags flags) {
  if (has(flags, PvmwFlags::kMigration)) {
    if (d.kind != arch::DecodedEntry::Kind::kSwap || !arch::softleaf_is_migration(d.leaf))
      return std::nullopt;
    Result<arch::PfnOrOffset> where = arch::softleaf_to_pfn_or_offset(d.leaf);
    return where.is_ok() ? std::optional(*where) : std::nullopt;
  }
  switch (d.kind) {
    case arch::DecodedEntry::Kind::kPresent:
      return arch::PfnOrOffset::of_pfn(d.pfn);
    case arch::DecodedEntry::Kind::kSwap: {
      // Un-addressable ZONE_DEVICE memory and device-exclusive pages.
      if (!arch::softleaf_is_device_private(d.leaf) && !arch::softleaf_is_device_exclusive(d.leaf))
        return std::nullopt;
      Result<arch::PfnOrOffset> where = arch::softleaf_to_pfn_or_offset(d.leaf);
      return where.is_ok() ? std::optional(*where) : std::nullopt;
    }
    case arch::DecodedEntry::Kind::kNone:
    case arch::DecodedEntry::Kind::kTable:
      return std::nullopt;
  }
  return std::nullopt;
}

// check_pmd for a PMD swap entry `leaf` (device-private or migration) naming a THP's head:
// a match when `target` is one of its 512 pages, in the same numbering.
std::optional<PageVmaMapped> match_pmd(EntrySlot pmd, uint64_t word, arch::Softleaf leaf,
                                       arch::PfnOrOffset target, VirtAddr page) {
  const arch::PfnOrOffset head =
      MUST(arch::softleaf_to_pfn_or_offset(leaf), "device-private and migration entries hold one");
  const uint64_t t = target.raw_index();
  if (head.tag() != target.tag() || t < head.raw_index() || t >= head.raw_index() + kHpagePmdNr)
    return std::nullopt;
  return PageVmaMapped{pmd, word, page.align_down(kHpagePmdSize), arch::EntryLevel::kPmd};
}

}  // namespace

std::optional<PageVmaMapped> page_vma_mapped_walk(Mm& mm, const Vma& vma, VirtAddr address,
                                                  arch::PfnOrOffset target, PvmwFlags flags) {
  assert(target.is_offset() == has(flags, PvmwFlags::kDevicePrivate) &&
         "PVMW_DEVICE_PRIVATE walks take an offset target, all others a PFN");
  if (!vma.contains(address)) return std::nullopt;
  const VirtAddr page = address.page_base();
  const std::optional<EntrySlot> pmd = mm.page_table().walk_pmd(page);
  if (pmd && has(flags, PvmwFlags::kMigration)) {
    const uint64_t word = pmd->load();
    if (pmd_is_migration_entry(mm.kernel(), word)) {
      // A THP under migration: the entry names the head (PFN, or dpas offset).
      return match_pmd(*pmd, word, softleaf_from_pmd(mm.kernel(), word), target, page);
    }
  } else if (pmd) {
    const uint64_t word = pmd->load();
    if (pmd_is_device_private_entry(mm.kernel(), word)) {
      // A device-private THP: the PMD names the head by PFN (legacy) or offset (dpas).
      return match_pmd(*pmd, word, softleaf_from_pmd(mm.kernel(), word), target, page);
    }
    const std::optional<arch::DecodedEntry> d =
        target.is_pfn() ? pmd_trans_huge(mm.kernel(), word) : std::nullopt;
    if (d) {
      const uint64_t t = target.raw_index();
      if (t < d->pfn.raw() || t >= d->pfn.raw() + kHpagePmdNr) return std::nullopt;
      return PageVmaMapped{*pmd, word, page.align_down(kHpagePmdSize), arch::EntryLevel::kPmd};
    }
  }
  const std::optional<EntrySlot> pte = mm.page_table().walk_pte(page);
  if (!pte) return std::nullopt;
  const uint64_t word = pte->load();
  if (word == 0) return std::nullopt;
  const arch::DecodedEntry d = mm.kernel().codec().decode(arch::EntryLevel::kPte, word);
  const std::optional<arch::PfnOrOffset> named = entry_target(d, flags);
  if (!named || *named != target) return std::nullopt;
  return PageVmaMapped{*pte, word, page};
}

}  // namespace dpmm::mm
