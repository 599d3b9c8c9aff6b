#include "arch/pte_x86.h"

#include <gtest/gtest.h>

namespace dpmm::arch::x86 {
namespace {

constexpr SoftleafFormat kLegacy =
    SoftleafFormat::for_arch(SwapNumberingKind::kLegacy, x86_64_params());
constexpr SoftleafFormat kDpas =
    SoftleafFormat::for_arch(SwapNumberingKind::kDpas, x86_64_params());

TEST(X86Pte, DevicePrivateSwapGolden) {
  // Legacy SWP_DEVICE_WRITE = 28, offset = pfn 0x12345:
  //   type:   28 << 59                          = 0xe000000000000000
  //   offset: (~0x12345 & (2^50 - 1)) << 9
  //         = 0x3fffffffedcba << 9              = 0x07fffffffdb97400
  //   pte                                       = 0xe7fffffffdb97400
  const Softleaf e =
      make_writable_device_private_entry(kLegacy, PfnOrOffset::of_pfn(Pfn(0x12345))).value();
  const Pte pte = Pte::make_swap(e, SwpBit::kNone).value();
  EXPECT_EQ(pte.raw(), 0xe7fffffffdb97400u);
  EXPECT_TRUE(pte.is_swap());
  EXPECT_EQ(pte.to_softleaf(kLegacy), e);

  // dpas SWP_DEVICE_WRITE = 25 = 0b11001: 25 << 59 = 0xc800000000000000, same offset field.
  const Softleaf d = make_writable_device_private_entry(
                         kDpas, PfnOrOffset::of_offset(DevPrivOffset(0x12345)))
                         .value();
  EXPECT_EQ(Pte::make_swap(d, SwpBit::kNone).value().raw(), 0xcffffffffdb97400u);
}

TEST(X86Pte, MigrationAndMarkerGolden) {
  // SWP_MIGRATION_WRITE 27, offset 0x10 | young(1<<34) | dirty(1<<35) = 0xc00000010:
  //   27 << 59 = 0xd800000000000000; (~0xc00000010 & (2^50-1)) << 9 = 0x07ffe7ffffffde00.
  Softleaf m = make_writable_migration_entry(kLegacy, Pfn(0x10)).value();
  m = make_migration_entry_dirty(make_migration_entry_young(m));
  EXPECT_EQ(Pte::make_swap(m, SwpBit::kNone).value().raw(), 0xdfffe7ffffffde00u);
  // SWP_PTE_MARKER 31, GUARD = 4: 31 << 59 = 0xf800...; ~4 leaves field bit 11 clear.
  const Softleaf g = make_pte_marker_entry(kLegacy, PteMarker::kGuard).value();
  EXPECT_EQ(Pte::make_swap(g, SwpBit::kNone).value().raw(), 0xfffffffffffff600u);
}

TEST(X86Pte, SwapSoftwareBitsAtTheirPositions) {
  const Softleaf e = make_swap_entry(kLegacy, 1, 1).value();
  const uint64_t base = Pte::make_swap(e, SwpBit::kNone).value().raw();
  EXPECT_EQ(Pte::make_swap(e, SwpBit::kSoftDirty).value().raw(), base | 0x2);  // bit 1 = RW
  EXPECT_EQ(Pte::make_swap(e, SwpBit::kUffdWp).value().raw(), base | 0x4);     // bit 2 = US
  EXPECT_EQ(Pte::make_swap(e, SwpBit::kExclusive).value().raw(), base | 0x8);  // bit 3 = PWT
  const Pte all = Pte::make_swap(e, kAllSwpBits).value();
  const DecodedEntry d = all.decode(kLegacy);
  EXPECT_EQ(d.kind, DecodedEntry::Kind::kSwap);
  EXPECT_EQ(d.swp_bits, kAllSwpBits);
  EXPECT_EQ(d.leaf, e);  // the software bits never leak into the softleaf
  EXPECT_TRUE(all.validate(kLegacy).is_ok());
}

TEST(X86Pte, PresentGolden) {
  // P|RW|US|A|D = 0x67, NX (no exec) = bit 63, pfn 0x1234 << 12.
  const Pte p = Pte::make_present(kLegacy, Pfn(0x1234), Prot::kWrite | Prot::kUser |
                                                            Prot::kAccessed | Prot::kDirty)
                    .value();
  EXPECT_EQ(p.raw(), 0x8000000001234067u);
  EXPECT_TRUE(p.is_present());
  EXPECT_EQ(p.to_softleaf(kLegacy), Softleaf::none(kLegacy));
  const DecodedEntry d = p.decode(kLegacy);
  EXPECT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(d.pfn, Pfn(0x1234));
  EXPECT_TRUE(d.hw_valid);
  EXPECT_EQ(describe(d), "present pfn:0x1234 write|user|accessed|dirty");

  // Read-only dirty: SAVED_DIRTY (bit 58), not D, so it is not a shadow-stack PTE.
  const Pte ro = Pte::make_present(kLegacy, Pfn(1), Prot::kUser | Prot::kDirty | Prot::kExec)
                     .value();
  EXPECT_EQ(ro.raw(), (uint64_t{1} << 58) | 0x1000 | 0x5);
  EXPECT_EQ(ro.decode(kLegacy).prot, Prot::kUser | Prot::kDirty | Prot::kExec);
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(1), Prot::kSpecial | Prot::kSoftDirty |
                                                   Prot::kUffdWp | Prot::kExec)
                .value()
                .raw(),
            0x1000u | 0x1 | (1u << 9) | (1u << 11) | (1u << 10));
}

TEST(X86Pte, ProtNoneIsInvertedForL1tf) {
  // PAGE_NONE = PROTNONE (bit 8) | A = 0x120; P clear, so the PFN field holds ~(0x1234 << 12)
  // within bits 12..51: 0x000ffffffedcb000.
  const Pte p = Pte::make_present(kLegacy, Pfn(0x1234), Prot::kProtNone | Prot::kAccessed).value();
  EXPECT_EQ(p.raw(), 0x000ffffffedcb120u);
  EXPECT_TRUE(p.is_present());
  const DecodedEntry d = p.decode(kLegacy);
  EXPECT_EQ(d.pfn, Pfn(0x1234));  // pte_pfn() undoes the inversion
  EXPECT_FALSE(d.hw_valid);
  EXPECT_EQ(d.prot, Prot::kProtNone | Prot::kAccessed);
  EXPECT_TRUE(p.validate(kLegacy).is_ok());
}

TEST(X86Pte, NoneIgnoresKnightsLandingAccessedDirty) {
  EXPECT_TRUE(Pte::from_raw(0).is_none());
  EXPECT_TRUE(Pte::from_raw(0x60).is_none());  // A|D only
  EXPECT_EQ(Pte::from_raw(0x60).decode(kLegacy).kind, DecodedEntry::Kind::kNone);
  EXPECT_FALSE(Pte::from_raw(0x61).is_none());
}

TEST(X86Pte, PresentRefusals) {
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(uint64_t{1} << 34), Prot::kUser).error().code(),
            Errno::kERANGE);
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(1), Prot::kWrite | Prot::kUffdWp).error().code(),
            Errno::kEINVAL);
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(1), Prot::kProtNone | Prot::kUser).error().code(),
            Errno::kEINVAL);
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(1), Prot::kUser | Prot::kGlobal).error().code(),
            Errno::kEINVAL);
  // 5-level paging widens the PFN to 40 bits.
  const SoftleafFormat five =
      SoftleafFormat::for_arch(SwapNumberingKind::kLegacy, x86_64_params(PagingMode::kFiveLevel));
  EXPECT_TRUE(Pte::make_present(five, Pfn(uint64_t{1} << 34), Prot::kUser).is_ok());
}

TEST(X86Pte, SwapRefusals) {
  EXPECT_EQ(Pte::make_swap(Softleaf::none(kLegacy), SwpBit::kNone).error().code(), Errno::kEINVAL);
  const Softleaf wide = make_swap_entry(kLegacy, 2, uint64_t{1} << 50).value();
  auto r = Pte::make_swap(wide, SwpBit::kNone);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kERANGE);
  EXPECT_NE(r.error().message().find("50-bit"), std::string::npos);
}

TEST(X86Pte, ValidateRefusals) {
  const Pte good = Pte::make_swap(make_swap_entry(kLegacy, 1, 5).value(), SwpBit::kNone).value();
  // Bit 4 (PCD) is outside every swap field.
  EXPECT_EQ(Pte::from_raw(good.raw() | 0x10).validate(kLegacy).error().code(), Errno::kEINVAL);
  // Type 0, offset 0 (the swap header) decodes to the none softleaf.
  EXPECT_EQ(Pte::from_raw(0x07fffffffffffe00).validate(kLegacy).error().code(), Errno::kEINVAL);
  const uint64_t present = 0x8000000001234067;
  EXPECT_TRUE(Pte::from_raw(present).validate(kLegacy).is_ok());
  EXPECT_EQ(Pte::from_raw(present | (uint64_t{1} << 52)).validate(kLegacy).error().code(),
            Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(present | (uint64_t{1} << 57)).validate(kLegacy).error().code(),
            Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(present | kUffdWp).validate(kLegacy).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(present | kSavedDirty).validate(kLegacy).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw((present & ~kRw)).validate(kLegacy).error().code(),
            Errno::kEINVAL);  // Write=0, Dirty=1
  EXPECT_EQ(Pte::from_raw(uint64_t{1} << 46 | 0x1).validate(kLegacy).error().code(),
            Errno::kEINVAL);  // pfn beyond MAX_PHYSMEM_BITS 46
  EXPECT_EQ(Pte::from_raw(0x000ffffffedcb120 | kRw).validate(kLegacy).error().code(),
            Errno::kEINVAL);  // PROT_NONE with RW
}

TEST(X86Pmd, LeafTableAndSwap) {
  // PMD leaf pfn 0x200 (2 MiB at 2 MiB): P|RW|US|A|D|PSE = 0xe7, NX.
  const Pmd leaf = Pmd::make_leaf(kLegacy, Pfn(0x200), Prot::kWrite | Prot::kUser |
                                                           Prot::kAccessed | Prot::kDirty)
                       .value();
  EXPECT_EQ(leaf.raw(), 0x80000000002000e7u);
  EXPECT_EQ(leaf.decode(kLegacy).pfn, Pfn(0x200));
  EXPECT_TRUE(leaf.validate(kLegacy).is_ok());
  EXPECT_EQ(Pmd::make_leaf(kLegacy, Pfn(0x201), Prot::kUser).error().code(), Errno::kEINVAL);

  // PROT_NONE PMD: PROTNONE|PSE|A = 0x1a0, pfn inverted within bits 21..51 only.
  const Pmd none = Pmd::make_leaf(kLegacy, Pfn(0x200), Prot::kProtNone | Prot::kAccessed).value();
  EXPECT_EQ(none.raw(), 0x000fffffffc001a0u);
  EXPECT_EQ(none.decode(kLegacy).pfn, Pfn(0x200));
  EXPECT_TRUE(none.validate(kLegacy).is_ok());
  EXPECT_EQ(Pmd::from_raw(leaf.raw() | (uint64_t{1} << 13)).validate(kLegacy).error().code(),
            Errno::kEINVAL);  // reserved bits 13..20

  const Pmd table = Pmd::make_table(kLegacy, Pfn(0x42)).value();
  EXPECT_EQ(table.raw(), 0x42067u);
  EXPECT_EQ(table.decode(kLegacy).kind, DecodedEntry::Kind::kTable);
  EXPECT_EQ(table.decode(kLegacy).pfn, Pfn(0x42));
  EXPECT_TRUE(table.validate(kLegacy).is_ok());

  // A PMD being split: P and PROTNONE clear, PSE set: still pmd_present().
  EXPECT_TRUE(Pmd::from_raw(0x80).is_present());
  EXPECT_FALSE(Pte::from_raw(0x80).is_present());

  const Softleaf dev =
      make_readable_device_private_entry(kLegacy, PfnOrOffset::of_pfn(Pfn(0x400))).value();
  const Pmd swap = Pmd::make_swap(dev, SwpBit::kSoftDirty).value();
  EXPECT_EQ(swap.to_softleaf(kLegacy), dev);
  EXPECT_TRUE(swap.validate(kLegacy).is_ok());
  EXPECT_EQ(Pmd::make_swap(dev, SwpBit::kExclusive).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pmd::make_swap(make_pte_marker_entry(kLegacy, PteMarker::kGuard).value(),
                           SwpBit::kNone)
                .error()
                .code(),
            Errno::kEINVAL);
}

}  // namespace
}  // namespace dpmm::arch::x86
