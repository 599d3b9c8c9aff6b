#include "arch/softleaf.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace dpmm::arch {
namespace {

// x86_64 4-level: MAX_PHYSMEM_BITS 46, so SWP_PFN_BITS = 34.
constexpr SoftleafFormat kLegacyX86 =
    SoftleafFormat::for_arch(SwapNumberingKind::kLegacy, x86_64_params());
constexpr SoftleafFormat kDpasX86 =
    SoftleafFormat::for_arch(SwapNumberingKind::kDpas, x86_64_params());

bool has_substr(const Error& e, std::string_view s) {
  return e.message().find(s) != std::string::npos;
}

TEST(Softleaf, FormatPfnBitsPerArch) {
  EXPECT_EQ(kLegacyX86.pfn_bits, 34);
  EXPECT_EQ(SoftleafFormat::for_arch(SwapNumberingKind::kLegacy,
                                     x86_64_params(PagingMode::kFiveLevel))
                .pfn_bits,
            40);
  EXPECT_EQ(SoftleafFormat::for_arch(SwapNumberingKind::kDpas, arm64_params()).pfn_bits, 36);
  EXPECT_EQ(kLegacyX86.mig_young(), uint64_t{1} << 34);  // SWP_MIG_YOUNG_BIT = SWP_PFN_BITS
  EXPECT_EQ(kLegacyX86.mig_dirty(), uint64_t{1} << 35);
}

TEST(Softleaf, LegacyDevicePrivateHoldsPfn) {
  // swp_entry(SWP_DEVICE_WRITE = 28, 0x12345) = 28 << 58 | 0x12345.
  const Softleaf e = make_writable_device_private_entry(kLegacyX86,
                                                        PfnOrOffset::of_pfn(Pfn(0x12345)))
                         .value();
  EXPECT_EQ(e.raw(), 0x7000000000012345u);
  EXPECT_EQ(e.swp_type(), 28u);
  EXPECT_EQ(softleaf_type(e), SoftleafType::kDevicePrivateWrite);
  EXPECT_TRUE(softleaf_is_device_private(e));
  EXPECT_TRUE(softleaf_is_device_private_write(e));
  EXPECT_FALSE(softleaf_is_migration(e));
  EXPECT_TRUE(softleaf_has_pfn(e));
  EXPECT_FALSE(softleaf_holds_offset(e));
  EXPECT_EQ(softleaf_to_pfn(e).value(), Pfn(0x12345));
  EXPECT_EQ(softleaf_to_offset(e).error().code(), Errno::kEINVAL);
  EXPECT_EQ(softleaf_describe(e), "SWP_DEVICE_WRITE pfn:0x12345");

  const Softleaf r =
      make_readable_device_private_entry(kLegacyX86, PfnOrOffset::of_pfn(Pfn(7))).value();
  EXPECT_EQ(r.raw(), (uint64_t{29} << 58) | 7);
  EXPECT_EQ(softleaf_type(r), SoftleafType::kDevicePrivateRead);
  EXPECT_FALSE(softleaf_is_device_private_write(r));
}

TEST(Softleaf, DpasDevicePrivateHoldsOffsetNeverPfn) {
  // swp_entry(SWP_DEVICE_WRITE = 25 in dpas, 0x12345) = 25 << 58 | 0x12345.
  const Softleaf e = make_writable_device_private_entry(
                         kDpasX86, PfnOrOffset::of_offset(DevPrivOffset(0x12345)))
                         .value();
  EXPECT_EQ(e.raw(), 0x6400000000012345u);
  EXPECT_TRUE(softleaf_is_device_private_write(e));
  EXPECT_TRUE(softleaf_has_pfn(e));  // the kernel's name, kept
  EXPECT_TRUE(softleaf_holds_offset(e));
  auto pfn = softleaf_to_pfn(e);
  ASSERT_TRUE(pfn.is_error());
  EXPECT_EQ(pfn.error().code(), Errno::kEINVAL);
  EXPECT_TRUE(has_substr(pfn.error(), "device-private offset"));
  EXPECT_EQ(softleaf_to_offset(e).value(), DevPrivOffset(0x12345));
  const PfnOrOffset either = softleaf_to_pfn_or_offset(e).value();
  EXPECT_TRUE(either.is_offset());
  EXPECT_EQ(either.to_pfn().error().code(), Errno::kEINVAL);
  EXPECT_EQ(softleaf_describe(e), "SWP_DEVICE_WRITE dpoff:0x12345");
}

TEST(Softleaf, DevicePrivatePayloadKindMustMatchNumbering) {
  auto legacy_offset = make_readable_device_private_entry(
      kLegacyX86, PfnOrOffset::of_offset(DevPrivOffset(1)));
  ASSERT_TRUE(legacy_offset.is_error());
  EXPECT_EQ(legacy_offset.error().code(), Errno::kEINVAL);
  auto dpas_pfn = make_writable_device_private_entry(kDpasX86, PfnOrOffset::of_pfn(Pfn(1)));
  ASSERT_TRUE(dpas_pfn.is_error());
  EXPECT_EQ(dpas_pfn.error().code(), Errno::kEINVAL);
  EXPECT_TRUE(has_substr(dpas_pfn.error(), "pfn:0x1 is a PFN"));
}

TEST(Softleaf, MigrationDevicePrivateIsAMigrationEntry) {
  const Softleaf w =
      make_writable_migration_device_private_entry(kDpasX86, DevPrivOffset(0x40)).value();
  EXPECT_EQ(w.raw(), (uint64_t{30} << 58) | 0x40);
  EXPECT_EQ(softleaf_type(w), SoftleafType::kMigrationDevicePrivateWrite);
  EXPECT_TRUE(softleaf_is_migration(w));
  EXPECT_TRUE(softleaf_is_migration_write(w));
  EXPECT_FALSE(softleaf_is_migration_read(w));
  EXPECT_TRUE(softleaf_is_migration_device_private(w));
  EXPECT_TRUE(softleaf_is_migration_device_private_write(w));
  EXPECT_FALSE(softleaf_is_device_private(w));
  EXPECT_EQ(softleaf_to_pfn(w).error().code(), Errno::kEINVAL);
  EXPECT_EQ(softleaf_to_offset(w).value(), DevPrivOffset(0x40));

  const Softleaf r =
      make_readable_migration_device_private_entry(kDpasX86, DevPrivOffset(1)).value();
  EXPECT_EQ(r.swp_type(), 28u);
  EXPECT_TRUE(softleaf_is_migration_read(r));
  EXPECT_TRUE(softleaf_is_migration_device_private_read(r));
  const Softleaf x =
      make_readable_exclusive_migration_device_private_entry(kDpasX86, DevPrivOffset(1)).value();
  EXPECT_EQ(x.swp_type(), 29u);
  EXPECT_TRUE(softleaf_is_migration_read_exclusive(x));
  EXPECT_TRUE(softleaf_is_migration_device_private_read_exclusive(x));

  auto legacy = make_writable_migration_device_private_entry(kLegacyX86, DevPrivOffset(1));
  ASSERT_TRUE(legacy.is_error());
  EXPECT_EQ(legacy.error().code(), Errno::kEINVAL);
}

TEST(Softleaf, MigrationYoungDirtyBits) {
  // legacy SWP_MIGRATION_WRITE = 27; young at bit 34, dirty at bit 35 on 4-level x86:
  // 27 << 58 | 1 << 35 | 1 << 34 | 0x10 = 0x6c00000c00000010.
  Softleaf e = make_writable_migration_entry(kLegacyX86, Pfn(0x10)).value();
  EXPECT_FALSE(softleaf_is_migration_young(e));
  e = make_migration_entry_dirty(make_migration_entry_young(e));
  EXPECT_EQ(e.raw(), 0x6c00000c00000010u);
  EXPECT_TRUE(softleaf_is_migration_young(e));
  EXPECT_TRUE(softleaf_is_migration_dirty(e));
  EXPECT_EQ(softleaf_to_flags(e), (uint64_t{3} << 34));
  EXPECT_EQ(softleaf_to_pfn(e).value(), Pfn(0x10));  // A/D masked off by SWP_PFN_MASK
  EXPECT_EQ(softleaf_describe(e), "SWP_MIGRATION_WRITE pfn:0x10 young dirty");
  EXPECT_TRUE(softleaf_validate(e).is_ok());

  EXPECT_EQ(make_readable_migration_entry(kDpasX86, Pfn(1)).value().swp_type(), 22u);
  EXPECT_EQ(make_readable_exclusive_migration_entry(kDpasX86, Pfn(1)).value().swp_type(), 23u);
  EXPECT_TRUE(softleaf_is_migration_read_exclusive(
      make_readable_exclusive_migration_entry(kLegacyX86, Pfn(1)).value()));
}

TEST(Softleaf, OtherPfnEntriesAndMarkers) {
  const Softleaf x = make_device_exclusive_entry(kDpasX86, Pfn(9)).value();
  EXPECT_EQ(x.swp_type(), 27u);
  EXPECT_TRUE(softleaf_is_device_exclusive(x));
  EXPECT_EQ(softleaf_to_pfn(x).value(), Pfn(9));  // a normal page, even in dpas
  const Softleaf h = make_hwpoison_entry(kLegacyX86, Pfn(3)).value();
  EXPECT_EQ(h.raw(), (uint64_t{24} << 58) | 3);
  EXPECT_TRUE(softleaf_is_hwpoison(h));

  const Softleaf m = make_pte_marker_entry(kLegacyX86, PteMarker::kGuard).value();
  EXPECT_EQ(m.raw(), (uint64_t{31} << 58) | 4);
  EXPECT_TRUE(softleaf_is_marker(m));
  EXPECT_FALSE(softleaf_has_pfn(m));
  EXPECT_EQ(softleaf_to_marker(m), PteMarker::kGuard);
  EXPECT_EQ(softleaf_to_pfn(m).error().code(), Errno::kEINVAL);
  EXPECT_EQ(softleaf_describe(make_pte_marker_entry(kDpasX86, PteMarker::kUffdWp |
                                                                 PteMarker::kPoisoned)
                                  .value()),
            "SWP_PTE_MARKER UFFD_WP POISONED");

  const Softleaf s = make_swap_entry(kDpasX86, 20, 0x40).value();
  EXPECT_EQ(softleaf_type(s), SoftleafType::kSwap);
  EXPECT_TRUE(softleaf_is_swap(s));
  EXPECT_EQ(softleaf_describe(s), "swapfile:20 slot 0x40");

  const Softleaf none = Softleaf::none(kLegacyX86);
  EXPECT_EQ(softleaf_type(none), SoftleafType::kNone);
  EXPECT_EQ(softleaf_describe(none), "none");
  EXPECT_EQ(softleaf_to_pfn_or_offset(none).error().code(), Errno::kEINVAL);
}

TEST(Softleaf, EncodersRefuseWhatDoesNotFit) {
  auto wide = make_writable_migration_entry(kLegacyX86, Pfn(uint64_t{1} << 34));
  ASSERT_TRUE(wide.is_error());
  EXPECT_EQ(wide.error().code(), Errno::kERANGE);
  EXPECT_TRUE(has_substr(wide.error(), "0x400000000"));
  EXPECT_TRUE(has_substr(wide.error(), "SWP_PFN_BITS = 34"));
  EXPECT_EQ(make_writable_device_private_entry(
                kDpasX86, PfnOrOffset::of_offset(DevPrivOffset(uint64_t{1} << 34)))
                .error()
                .code(),
            Errno::kERANGE);
  EXPECT_EQ(swp_entry(kLegacyX86, 32, 1).error().code(), Errno::kEINVAL);
  EXPECT_EQ(swp_entry(kLegacyX86, 1, uint64_t{1} << 58).error().code(), Errno::kERANGE);
  auto not_file = make_swap_entry(kLegacyX86, 24, 1);
  ASSERT_TRUE(not_file.is_error());
  EXPECT_EQ(not_file.error().code(), Errno::kEINVAL);
  EXPECT_TRUE(has_substr(not_file.error(), "MAX_SWAPFILES 24"));
  EXPECT_EQ(make_swap_entry(kDpasX86, 21, 1).error().code(), Errno::kEINVAL);
  EXPECT_EQ(make_swap_entry(kDpasX86, 0, 0).error().code(), Errno::kEINVAL);  // header slot
  EXPECT_EQ(make_pte_marker_entry(kLegacyX86, PteMarker::kNone).error().code(), Errno::kEINVAL);
  EXPECT_EQ(make_pte_marker_entry(kLegacyX86, static_cast<PteMarker>(8)).error().code(),
            Errno::kEINVAL);
  EXPECT_EQ(Softleaf::from_raw(kLegacyX86, uint64_t{1} << 63).error().code(), Errno::kEINVAL);
}

TEST(Softleaf, ValidateRefusesWhatTheKernelNeverBuilds) {
  // Migration entry with a reserved bit above D set.
  const Softleaf resv = Softleaf::from_raw(kLegacyX86, (uint64_t{27} << 58) | (uint64_t{1} << 36))
                            .value();
  EXPECT_EQ(softleaf_validate(resv).error().code(), Errno::kEINVAL);
  // Device-private entry wider than SWP_PFN_BITS (the A/D bits do not apply to it).
  const Softleaf dev = Softleaf::from_raw(kLegacyX86, (uint64_t{28} << 58) | (uint64_t{1} << 34))
                           .value();
  EXPECT_EQ(softleaf_validate(dev).error().code(), Errno::kEINVAL);
  const Softleaf marker = Softleaf::from_raw(kLegacyX86, (uint64_t{31} << 58) | 8).value();
  EXPECT_EQ(softleaf_validate(marker).error().code(), Errno::kEINVAL);
  const Softleaf header = Softleaf::from_raw(kLegacyX86, uint64_t{3} << 58).value();
  EXPECT_EQ(softleaf_validate(header).error().code(), Errno::kEINVAL);
}

TEST(Softleaf, TypeNames) {
  EXPECT_EQ(softleaf_type_name(SoftleafType::kDevicePrivateWrite), "SOFTLEAF_DEVICE_PRIVATE_WRITE");
  EXPECT_EQ(softleaf_type_name(SoftleafType::kMigrationDevicePrivateReadExclusive),
            "SOFTLEAF_MIGRATION_DEVICE_PRIVATE_READ_EXCLUSIVE");
}

// Every type value maps to the softleaf type the numbering says.
TEST(Softleaf, EveryTypeValueClassifies) {
  for (const SoftleafFormat f : {kLegacyX86, kDpasX86}) {
    const SwapNumbering& n = f.swap_numbering();
    for (unsigned t = 0; t < kSwapTypeCount; ++t) {
      const SoftleafType st = softleaf_type(swp_entry(f, t, 1).value());
      if (t < n.max_swapfiles) {
        EXPECT_EQ(st, SoftleafType::kSwap);
      } else {
        EXPECT_NE(st, SoftleafType::kSwap);
        EXPECT_NE(st, SoftleafType::kNone) << t;
      }
    }
  }
}

RC_GTEST_PROP(Softleaf, DevicePrivatePayloadRoundTrips, (uint64_t raw)) {
  const uint64_t index = raw & kLegacyX86.pfn_mask();
  const Softleaf l = MUST(
      make_readable_device_private_entry(kLegacyX86, PfnOrOffset::of_pfn(Pfn(index))), "fits");
  RC_ASSERT(softleaf_to_pfn(l).value() == Pfn(index));
  const Softleaf d = MUST(make_writable_device_private_entry(
                              kDpasX86, PfnOrOffset::of_offset(DevPrivOffset(index))),
                          "fits");
  RC_ASSERT(softleaf_to_offset(d).value() == DevPrivOffset(index));
  RC_ASSERT(softleaf_to_pfn(d).is_error());
}

}  // namespace
}  // namespace dpmm::arch
