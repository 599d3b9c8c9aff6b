#include "arch/pte_arm64.h"

#include <gtest/gtest.h>

namespace dpmm::arch::arm64 {
namespace {

// arm64 48-bit PA: SWP_PFN_BITS = 36.
constexpr SoftleafFormat kLegacy =
    SoftleafFormat::for_arch(SwapNumberingKind::kLegacy, arm64_params());
constexpr SoftleafFormat kDpas = SoftleafFormat::for_arch(SwapNumberingKind::kDpas, arm64_params());

TEST(Arm64Pte, DevicePrivateSwapGolden) {
  // type << 6 | offset << 12 (no inversion on arm64):
  //   legacy SWP_DEVICE_WRITE 28: 0x700 | 0x12345000 = 0x12345700
  //   dpas   SWP_DEVICE_WRITE 25: 0x640 | 0x12345000 = 0x12345640
  const Softleaf l =
      make_writable_device_private_entry(kLegacy, PfnOrOffset::of_pfn(Pfn(0x12345))).value();
  const Pte pl = Pte::make_swap(l, SwpBit::kNone).value();
  EXPECT_EQ(pl.raw(), 0x12345700u);
  EXPECT_TRUE(pl.is_swap());
  EXPECT_EQ(pl.to_softleaf(kLegacy), l);
  const Softleaf d = make_writable_device_private_entry(
                         kDpas, PfnOrOffset::of_offset(DevPrivOffset(0x12345)))
                         .value();
  EXPECT_EQ(Pte::make_swap(d, SwpBit::kNone).value().raw(), 0x12345640u);
  // Exclusive is bit 2, uffd-wp bit 3.
  EXPECT_EQ(Pte::make_swap(l, SwpBit::kExclusive | SwpBit::kUffdWp).value().raw(), 0x1234570cu);
}

TEST(Arm64Pte, MigrationDeviceGolden) {
  // dpas SWP_MIGRATION_DEVICE_WRITE 30, offset 0x77 | dirty (bit 37 = SWP_PFN_BITS + 1):
  //   30 << 6 = 0x780; (0x77 | 1 << 37) << 12 = 0x2000000077000.
  const Softleaf m = make_migration_entry_dirty(
      make_writable_migration_device_private_entry(kDpas, DevPrivOffset(0x77)).value());
  EXPECT_EQ(Pte::make_swap(m, SwpBit::kNone).value().raw(), 0x2000000077780u);
}

TEST(Arm64Pte, NoSoftDirty) {
  const Softleaf e = make_swap_entry(kLegacy, 1, 1).value();
  EXPECT_EQ(Pte::make_swap(e, SwpBit::kSoftDirty).error().code(), Errno::kEOPNOTSUPP);
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(1), Prot::kSoftDirty).error().code(),
            Errno::kEOPNOTSUPP);
}

TEST(Arm64Pte, PresentGolden) {
  // PAGE_SHARED made dirty and young: VALID|page(0x3) | USER 0x40 | SH 0x300 | AF 0x400 |
  // nG 0x800 = 0xf43; WRITE(51)|PXN(53)|UXN(54)|DIRTY(55) = 0x00e8000000000000; RDONLY clear
  // because writable and dirty.
  const Pte p = Pte::make_present(kLegacy, Pfn(0x1234), Prot::kWrite | Prot::kUser |
                                                            Prot::kAccessed | Prot::kDirty)
                    .value();
  EXPECT_EQ(p.raw(), 0x00e8000001234f43u);
  const DecodedEntry d = p.decode(kLegacy);
  EXPECT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(d.pfn, Pfn(0x1234));
  EXPECT_EQ(d.prot, Prot::kWrite | Prot::kUser | Prot::kAccessed | Prot::kDirty);
  EXPECT_TRUE(d.hw_valid);
  EXPECT_TRUE(p.validate(kLegacy).is_ok());

  // Writable clean (RDONLY|WRITE): pte_dirty() false; hardware DBM dirtying clears RDONLY.
  const Pte clean = Pte::make_present(kLegacy, Pfn(2), Prot::kWrite | Prot::kUser).value();
  EXPECT_TRUE(clean.raw() & kRdonly);
  const Pte hw_dirty = Pte::from_raw(clean.raw() & ~kRdonly);
  EXPECT_EQ(hw_dirty.decode(kLegacy).prot, Prot::kWrite | Prot::kUser | Prot::kDirty);

  // User exec: UXN clear, PXN set.
  const Pte x = Pte::make_present(kLegacy, Pfn(3), Prot::kUser | Prot::kExec).value();
  EXPECT_FALSE(x.raw() & kUxn);
  EXPECT_TRUE(x.raw() & kPxn);
}

TEST(Arm64Pte, ProtNoneIsPresentInvalid) {
  // PAGE_NONE: (page 0x3 & ~VALID) | AF 0x400 | SH 0x300 | PRESENT_INVALID(nG) 0x800 |
  // RDONLY 0x80 | PXN | UXN = 0x0060000000000f82 plus the address.
  const Pte p = Pte::make_present(kLegacy, Pfn(0x1234), Prot::kProtNone | Prot::kAccessed).value();
  EXPECT_EQ(p.raw(), 0x0060000001234f82u);
  EXPECT_TRUE(p.is_present());
  const DecodedEntry d = p.decode(kLegacy);
  EXPECT_FALSE(d.hw_valid);
  EXPECT_EQ(d.prot, Prot::kProtNone | Prot::kAccessed);
  EXPECT_EQ(d.pfn, Pfn(0x1234));
  EXPECT_TRUE(p.validate(kLegacy).is_ok());
  // Without nG the same invalid word is a swap entry, not present.
  EXPECT_FALSE(Pte::from_raw(p.raw() & ~kNg).is_present());
}

TEST(Arm64Pte, Refusals) {
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(uint64_t{1} << 36), Prot::kUser).error().code(),
            Errno::kERANGE);
  EXPECT_EQ(Pte::make_present(kLegacy, Pfn(1), Prot::kUffdWp | Prot::kWrite).error().code(),
            Errno::kEINVAL);
  const uint64_t good = 0x00e8000001234f43;
  EXPECT_EQ(Pte::from_raw(good & ~kTableBit).validate(kLegacy).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(good & ~bits::bit(8)).validate(kLegacy).error().code(),
            Errno::kEINVAL);  // SH = 0b10
  EXPECT_EQ(Pte::from_raw(good | bits::bit(57)).validate(kLegacy).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(good | bits::bit(48)).validate(kLegacy).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(good & ~kNg).validate(kLegacy).error().code(),
            Errno::kEINVAL);  // global user
  const uint64_t swap = 0x12345700;
  EXPECT_TRUE(Pte::from_raw(swap).validate(kLegacy).is_ok());
  EXPECT_EQ(Pte::from_raw(swap | bits::bit(4)).validate(kLegacy).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(swap | bits::bit(1)).validate(kLegacy).error().code(), Errno::kEINVAL);
  EXPECT_EQ(Pte::from_raw(swap | bits::bit(63)).validate(kLegacy).error().code(), Errno::kEINVAL);
  // A device-private offset that does not fit SWP_PFN_BITS (36).
  const Pte wide = Pte::from_raw((uint64_t{28} << 6) | (uint64_t{1} << 48));
  EXPECT_EQ(wide.validate(kLegacy).error().code(), Errno::kEINVAL);
}

TEST(Arm64Pmd, BlockTableAndSwap) {
  // Block: bits[1:0] = 01.
  const Pmd b = Pmd::make_leaf(kLegacy, Pfn(0x200), Prot::kUser | Prot::kAccessed).value();
  EXPECT_EQ(b.raw() & 3, 1u);
  EXPECT_EQ(b.decode(kLegacy).kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(b.decode(kLegacy).pfn, Pfn(0x200));
  EXPECT_TRUE(b.validate(kLegacy).is_ok());
  EXPECT_EQ(Pmd::from_raw(b.raw() | bits::bit(12)).validate(kLegacy).error().code(),
            Errno::kEINVAL);
  // PROT_NONE block: bits[1:0] = 00, present-invalid.
  const Pmd n = Pmd::make_leaf(kLegacy, Pfn(0x200), Prot::kProtNone).value();
  EXPECT_EQ(n.raw() & 3, 0u);
  EXPECT_TRUE(n.is_present());
  EXPECT_EQ(n.decode(kLegacy).prot, Prot::kProtNone);
  EXPECT_TRUE(n.validate(kLegacy).is_ok());

  const Pmd t = Pmd::make_table(kLegacy, Pfn(0x42)).value();
  EXPECT_EQ(t.raw(), 0x42003u);
  EXPECT_EQ(t.decode(kLegacy).kind, DecodedEntry::Kind::kTable);
  EXPECT_TRUE(t.validate(kLegacy).is_ok());

  const Softleaf m = make_readable_migration_entry(kDpas, Pfn(0x400)).value();
  const Pmd s = Pmd::make_swap(m, SwpBit::kUffdWp).value();
  EXPECT_EQ(s.to_softleaf(kDpas), m);
  EXPECT_EQ(Pmd::make_swap(m, SwpBit::kExclusive).error().code(), Errno::kEINVAL);
}

}  // namespace
}  // namespace dpmm::arch::arm64
