#include "arch/softleaf.h"

#include <cassert>

#include <fmt/format.h>

namespace dpmm::arch {
namespace {

bool is_any_of(Softleaf e, std::initializer_list<SoftleafType> types) {
  const SoftleafType t = softleaf_type(e);
  for (SoftleafType x : types) {
    if (x == t) return true;
  }
  return false;
}

Status check_pfn_fits(SoftleafFormat f, uint64_t index, std::string_view what) {
  if (index > f.pfn_mask())
    return make_error(Errno::kERANGE, "{} {:#x} does not fit SWP_PFN_BITS = {} (max {:#x})", what,
                      index, f.pfn_bits, f.pfn_mask());
  return ok();
}

Result<Softleaf> make_pfn_entry(SoftleafFormat f, unsigned type, Pfn pfn) {
  TRY(check_pfn_fits(f, pfn.raw(), "pfn"));
  return swp_entry(f, type, pfn.raw());
}

Result<Softleaf> make_offset_entry(SoftleafFormat f, unsigned type, DevPrivOffset o) {
  TRY(check_pfn_fits(f, o.raw(), "device-private offset"));
  return swp_entry(f, type, o.raw());
}

Result<Softleaf> make_device_private(SoftleafFormat f, unsigned type, PfnOrOffset where) {
  if (f.numbering == SwapNumberingKind::kLegacy) {
    const Pfn pfn = TRY(where.to_pfn());
    return make_pfn_entry(f, type, pfn);
  }
  const DevPrivOffset o = TRY(where.to_offset());
  return make_offset_entry(f, type, o);
}

Result<Softleaf> make_migration_device(SoftleafFormat f, const std::optional<unsigned>& type,
                                       DevPrivOffset o, std::string_view name) {
  if (!type)
    return make_error(Errno::kEINVAL,
                      "{} exists only in the dpas numbering; legacy migrates device pages under "
                      "the plain migration types",
                      name);
  return make_offset_entry(f, *type, o);
}

}  // namespace

std::string_view softleaf_type_name(SoftleafType t) {
  switch (t) {
    case SoftleafType::kNone: return "SOFTLEAF_NONE";
    case SoftleafType::kSwap: return "SOFTLEAF_SWAP";
    case SoftleafType::kMigrationRead: return "SOFTLEAF_MIGRATION_READ";
    case SoftleafType::kMigrationReadExclusive: return "SOFTLEAF_MIGRATION_READ_EXCLUSIVE";
    case SoftleafType::kMigrationWrite: return "SOFTLEAF_MIGRATION_WRITE";
    case SoftleafType::kMigrationDevicePrivateRead:
      return "SOFTLEAF_MIGRATION_DEVICE_PRIVATE_READ";
    case SoftleafType::kMigrationDevicePrivateReadExclusive:
      return "SOFTLEAF_MIGRATION_DEVICE_PRIVATE_READ_EXCLUSIVE";
    case SoftleafType::kMigrationDevicePrivateWrite:
      return "SOFTLEAF_MIGRATION_DEVICE_PRIVATE_WRITE";
    case SoftleafType::kDevicePrivateRead: return "SOFTLEAF_DEVICE_PRIVATE_READ";
    case SoftleafType::kDevicePrivateWrite: return "SOFTLEAF_DEVICE_PRIVATE_WRITE";
    case SoftleafType::kDeviceExclusive: return "SOFTLEAF_DEVICE_EXCLUSIVE";
    case SoftleafType::kHwpoison: return "SOFTLEAF_HWPOISON";
    case SoftleafType::kMarker: return "SOFTLEAF_MARKER";
    case SoftleafType::kCount: break;
  }
  return "SOFTLEAF_?";
}

Result<Softleaf> Softleaf::from_raw(SoftleafFormat f, uint64_t val) {
  if (val >> kBitsPerXaValue)
    return make_error(Errno::kEINVAL, "softleaf {:#x} has bit 63 set; entries are {}-bit values",
                      val, kBitsPerXaValue);
  return Softleaf(f, val);
}

Result<Softleaf> swp_entry(SoftleafFormat f, unsigned type, uint64_t offset) {
  if (type >= kSwapTypeCount)
    return make_error(Errno::kEINVAL, "swap type {} does not fit the {}-bit type field (max {})",
                      type, kMaxSwapfilesShift, kSwapTypeCount - 1);
  if (offset > kSwpOffsetMask)
    return make_error(Errno::kERANGE, "swap offset {:#x} exceeds SWP_OFFSET_MASK {:#x}", offset,
                      kSwpOffsetMask);
  return Softleaf(f, (uint64_t{type} << kSwpTypeShift) | offset);
}

Result<Softleaf> make_swap_entry(SoftleafFormat f, unsigned type, uint64_t offset) {
  const SwapNumbering& n = f.swap_numbering();
  if (type >= n.max_swapfiles)
    return make_error(Errno::kEINVAL, "swap type {} is not a swap file: {} has MAX_SWAPFILES {}",
                      type, numbering_name(n.kind), n.max_swapfiles);
  if (offset == 0)
    return make_error(Errno::kEINVAL, "slot 0 of swap file {} is its header, never an entry",
                      type);
  return swp_entry(f, type, offset);
}

Result<Softleaf> make_readable_device_private_entry(SoftleafFormat f, PfnOrOffset where) {
  return make_device_private(f, f.swap_numbering().device_read, where);
}
Result<Softleaf> make_writable_device_private_entry(SoftleafFormat f, PfnOrOffset where) {
  return make_device_private(f, f.swap_numbering().device_write, where);
}
Result<Softleaf> make_device_exclusive_entry(SoftleafFormat f, Pfn pfn) {
  return make_pfn_entry(f, f.swap_numbering().device_exclusive, pfn);
}
Result<Softleaf> make_readable_migration_entry(SoftleafFormat f, Pfn pfn) {
  return make_pfn_entry(f, f.swap_numbering().migration_read, pfn);
}
Result<Softleaf> make_readable_exclusive_migration_entry(SoftleafFormat f, Pfn pfn) {
  return make_pfn_entry(f, f.swap_numbering().migration_read_exclusive, pfn);
}
Result<Softleaf> make_writable_migration_entry(SoftleafFormat f, Pfn pfn) {
  return make_pfn_entry(f, f.swap_numbering().migration_write, pfn);
}
Result<Softleaf> make_readable_migration_device_private_entry(SoftleafFormat f, DevPrivOffset o) {
  return make_migration_device(f, f.swap_numbering().migration_device_read, o,
                               "SWP_MIGRATION_DEVICE_READ");
}
Result<Softleaf> make_readable_exclusive_migration_device_private_entry(SoftleafFormat f,
                                                                       DevPrivOffset o) {
  return make_migration_device(f, f.swap_numbering().migration_device_read_exclusive, o,
                               "SWP_MIGRATION_DEVICE_READ_EXCLUSIVE");
}
Result<Softleaf> make_writable_migration_device_private_entry(SoftleafFormat f, DevPrivOffset o) {
  return make_migration_device(f, f.swap_numbering().migration_device_write, o,
                               "SWP_MIGRATION_DEVICE_WRITE");
}
Result<Softleaf> make_hwpoison_entry(SoftleafFormat f, Pfn pfn) {
  return make_pfn_entry(f, f.swap_numbering().hwpoison, pfn);
}

Result<Softleaf> make_pte_marker_entry(SoftleafFormat f, PteMarker marker) {
  const uint64_t bits = static_cast<uint8_t>(marker);
  if (bits == 0) return make_error(Errno::kEINVAL, "a PTE marker needs at least one marker bit");
  if (bits & ~kPteMarkerMask)
    return make_error(Errno::kEINVAL, "PTE marker {:#x} has bits outside PTE_MARKER_MASK {:#x}",
                      bits, kPteMarkerMask);
  return swp_entry(f, f.swap_numbering().pte_marker, bits);
}

Softleaf make_migration_entry_young(Softleaf e) {
  assert(softleaf_is_migration(e) && "young bit only exists in migration entries");
  return MUST(swp_entry(e.format(), e.swp_type(), e.swp_offset() | e.format().mig_young()),
              "the young bit lies inside the offset field");
}

Softleaf make_migration_entry_dirty(Softleaf e) {
  assert(softleaf_is_migration(e) && "dirty bit only exists in migration entries");
  return MUST(swp_entry(e.format(), e.swp_type(), e.swp_offset() | e.format().mig_dirty()),
              "the dirty bit lies inside the offset field");
}

SoftleafType softleaf_type(Softleaf e) {
  if (softleaf_is_none(e)) return SoftleafType::kNone;
  const SwapNumbering& n = e.format().swap_numbering();
  const unsigned t = e.swp_type();
  if (t < n.max_swapfiles) return SoftleafType::kSwap;
  if (t == n.hwpoison) return SoftleafType::kHwpoison;
  if (t == n.migration_read) return SoftleafType::kMigrationRead;
  if (t == n.migration_read_exclusive) return SoftleafType::kMigrationReadExclusive;
  if (t == n.migration_write) return SoftleafType::kMigrationWrite;
  if (t == n.device_write) return SoftleafType::kDevicePrivateWrite;
  if (t == n.device_read) return SoftleafType::kDevicePrivateRead;
  if (t == n.device_exclusive) return SoftleafType::kDeviceExclusive;
  if (t == n.migration_device_read) return SoftleafType::kMigrationDevicePrivateRead;
  if (t == n.migration_device_read_exclusive)
    return SoftleafType::kMigrationDevicePrivateReadExclusive;
  if (t == n.migration_device_write) return SoftleafType::kMigrationDevicePrivateWrite;
  if (t == n.pte_marker) return SoftleafType::kMarker;
  // The kernel warns and reports none for an unknown type; every value is assigned in both
  // numberings, so only a value with bit 63 set could get here, and from_raw refuses those.
  return SoftleafType::kNone;
}

bool softleaf_is_swap(Softleaf e) { return softleaf_type(e) == SoftleafType::kSwap; }
bool softleaf_is_migration_read(Softleaf e) {
  return is_any_of(e, {SoftleafType::kMigrationRead, SoftleafType::kMigrationDevicePrivateRead});
}
bool softleaf_is_migration_read_exclusive(Softleaf e) {
  return is_any_of(e, {SoftleafType::kMigrationReadExclusive,
                       SoftleafType::kMigrationDevicePrivateReadExclusive});
}
bool softleaf_is_migration_write(Softleaf e) {
  return is_any_of(e,
                   {SoftleafType::kMigrationWrite, SoftleafType::kMigrationDevicePrivateWrite});
}
bool softleaf_is_migration(Softleaf e) {
  return softleaf_is_migration_read(e) || softleaf_is_migration_read_exclusive(e) ||
         softleaf_is_migration_write(e);
}
bool softleaf_is_migration_device_private_read(Softleaf e) {
  return softleaf_type(e) == SoftleafType::kMigrationDevicePrivateRead;
}
bool softleaf_is_migration_device_private_read_exclusive(Softleaf e) {
  return softleaf_type(e) == SoftleafType::kMigrationDevicePrivateReadExclusive;
}
bool softleaf_is_migration_device_private_write(Softleaf e) {
  return softleaf_type(e) == SoftleafType::kMigrationDevicePrivateWrite;
}
bool softleaf_is_migration_device_private(Softleaf e) {
  return is_any_of(e, {SoftleafType::kMigrationDevicePrivateRead,
                       SoftleafType::kMigrationDevicePrivateReadExclusive,
                       SoftleafType::kMigrationDevicePrivateWrite});
}
bool softleaf_is_device_private(Softleaf e) {
  return is_any_of(e, {SoftleafType::kDevicePrivateRead, SoftleafType::kDevicePrivateWrite});
}
bool softleaf_is_device_private_write(Softleaf e) {
  return softleaf_type(e) == SoftleafType::kDevicePrivateWrite;
}
bool softleaf_is_device_exclusive(Softleaf e) {
  return softleaf_type(e) == SoftleafType::kDeviceExclusive;
}
bool softleaf_is_hwpoison(Softleaf e) { return softleaf_type(e) == SoftleafType::kHwpoison; }
bool softleaf_is_marker(Softleaf e) { return softleaf_type(e) == SoftleafType::kMarker; }

bool softleaf_has_pfn(Softleaf e) {
  return softleaf_is_migration(e) || softleaf_is_device_private(e) ||
         softleaf_is_device_exclusive(e) || softleaf_is_hwpoison(e);
}

bool softleaf_holds_offset(Softleaf e) {
  if (e.format().numbering != SwapNumberingKind::kDpas) return false;
  return softleaf_is_device_private(e) || softleaf_is_migration_device_private(e);
}

Result<Pfn> softleaf_to_pfn(Softleaf e) {
  if (!softleaf_has_pfn(e))
    return make_error(Errno::kEINVAL, "{} carries no PFN", softleaf_describe(e));
  if (softleaf_holds_offset(e))
    return make_error(Errno::kEINVAL,
                      "{} holds a device-private offset; pfn_to_page() on it would find an "
                      "unrelated page",
                      softleaf_describe(e));
  return Pfn(e.swp_offset() & e.format().pfn_mask());
}

Result<DevPrivOffset> softleaf_to_offset(Softleaf e) {
  if (!softleaf_holds_offset(e))
    return make_error(Errno::kEINVAL, "{} holds no device-private offset", softleaf_describe(e));
  return DevPrivOffset(e.swp_offset() & e.format().pfn_mask());
}

Result<PfnOrOffset> softleaf_to_pfn_or_offset(Softleaf e) {
  if (softleaf_holds_offset(e)) return PfnOrOffset::of_offset(TRY(softleaf_to_offset(e)));
  return PfnOrOffset::of_pfn(TRY(softleaf_to_pfn(e)));
}

uint64_t softleaf_to_flags(Softleaf e) {
  assert(softleaf_is_migration(e) && "A/D flags only exist in migration entries");
  return e.swp_offset() & (e.format().mig_young() | e.format().mig_dirty());
}
bool softleaf_is_migration_young(Softleaf e) {
  return (softleaf_to_flags(e) & e.format().mig_young()) != 0;
}
bool softleaf_is_migration_dirty(Softleaf e) {
  return (softleaf_to_flags(e) & e.format().mig_dirty()) != 0;
}

PteMarker softleaf_to_marker(Softleaf e) {
  assert(softleaf_is_marker(e) && "not a PTE marker");
  return static_cast<PteMarker>(e.swp_offset() & kPteMarkerMask);
}

Status softleaf_validate(Softleaf e) {
  const SoftleafFormat f = e.format();
  const uint64_t off = e.swp_offset();
  switch (softleaf_type(e)) {
    case SoftleafType::kNone:
      return ok();
    case SoftleafType::kSwap:
      if (off == 0)
        return make_error(Errno::kEINVAL, "swap slot 0 of swap file {} is its header",
                          e.swp_type());
      return ok();
    case SoftleafType::kMigrationRead:
    case SoftleafType::kMigrationReadExclusive:
    case SoftleafType::kMigrationWrite:
    case SoftleafType::kMigrationDevicePrivateRead:
    case SoftleafType::kMigrationDevicePrivateReadExclusive:
    case SoftleafType::kMigrationDevicePrivateWrite: {
      const uint64_t allowed = f.pfn_mask() | f.mig_young() | f.mig_dirty();
      if (off & ~allowed)
        return make_error(Errno::kEINVAL,
                          "{} offset {:#x} sets reserved bits {:#x} above the A/D bits",
                          type_name(f.swap_numbering(), e.swp_type()), off, off & ~allowed);
      return ok();
    }
    case SoftleafType::kDevicePrivateRead:
    case SoftleafType::kDevicePrivateWrite:
    case SoftleafType::kDeviceExclusive:
    case SoftleafType::kHwpoison:
      if (off & ~f.pfn_mask())
        return make_error(Errno::kEINVAL, "{} offset {:#x} is wider than SWP_PFN_BITS = {}",
                          type_name(f.swap_numbering(), e.swp_type()), off, f.pfn_bits);
      return ok();
    case SoftleafType::kMarker:
      if (off == 0 || (off & ~kPteMarkerMask))
        return make_error(Errno::kEINVAL, "PTE marker bits {:#x} are empty or outside {:#x}",
                          off, kPteMarkerMask);
      return ok();
    case SoftleafType::kCount:
      break;
  }
  return make_error(Errno::kEINVAL, "softleaf {:#x} has no known type", e.raw());
}

std::string softleaf_describe(Softleaf e) {
  if (softleaf_is_none(e)) return "none";
  const std::string name = type_name(e.format().swap_numbering(), e.swp_type());
  const uint64_t off = e.swp_offset();
  if (softleaf_is_swap(e)) return fmt::format("{} slot {:#x}", name, off);
  if (softleaf_is_marker(e)) {
    const auto m = static_cast<uint8_t>(off & kPteMarkerMask);
    std::string s = name;
    if (m & static_cast<uint8_t>(PteMarker::kUffdWp)) s += " UFFD_WP";
    if (m & static_cast<uint8_t>(PteMarker::kPoisoned)) s += " POISONED";
    if (m & static_cast<uint8_t>(PteMarker::kGuard)) s += " GUARD";
    return s;
  }
  const uint64_t index = off & e.format().pfn_mask();
  std::string s = softleaf_holds_offset(e) ? fmt::format("{} dpoff:{:#x}", name, index)
                                           : fmt::format("{} pfn:{:#x}", name, index);
  if (softleaf_is_migration(e)) {
    if (off & e.format().mig_young()) s += " young";
    if (off & e.format().mig_dirty()) s += " dirty";
  }
  return s;
}

}  // namespace dpmm::arch
