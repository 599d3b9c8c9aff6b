// The hmm_pfns word layout in both numberings.
#include "hmm/hmm_pfn.h"

#include <gtest/gtest.h>

namespace dpmm::hmm {
namespace {

TEST(HmmPfn, SharedBits) {
  EXPECT_EQ(kHmmPfnValid, 0x8000000000000000u);
  EXPECT_EQ(kHmmPfnWrite, 0x4000000000000000u);
  EXPECT_EQ(kHmmPfnError, 0x2000000000000000u);
  EXPECT_EQ(kHmmPfnDmaMapped, 0x1000000000000000u);
  EXPECT_EQ(kHmmPfnP2pdma, 0x0800000000000000u);
  EXPECT_EQ(kHmmPfnP2pdmaBus, 0x0400000000000000u);
  EXPECT_EQ(kHmmPfnReqFault, kHmmPfnValid);
  EXPECT_EQ(kHmmPfnReqWrite, kHmmPfnWrite);
  EXPECT_EQ(kHmmPfnDevicePrivate, uint64_t{1} << (64 - 7));
}

TEST(HmmPfn, LegacyLayout) {
  const HmmPfnFormat f = hmm_pfn_format(arch::SwapNumberingKind::kLegacy);
  EXPECT_EQ(f.order_shift, 53u);  // BITS_PER_LONG - 11
  EXPECT_EQ(f.device_private, 0u);
  EXPECT_EQ(f.hmm_pfn_flags_mask(), 0xFFE0000000000000u);
  const uint64_t w = kHmmPfnValid | f.order_bits(9) | 0x12345;
  EXPECT_EQ(w, 0x8000000000000000u | (uint64_t{9} << 53) | 0x12345);
  EXPECT_EQ(hmm_pfn_to_map_order(f, w), 9u);
  EXPECT_EQ(f.index(w), arch::PfnOrOffset::of_pfn(Pfn(0x12345)));
  // Order 16 sets bit 57, which the series gives to DEVICE_PRIVATE: legacy has no tag.
  EXPECT_EQ(f.index(f.order_bits(16) | 5), arch::PfnOrOffset::of_pfn(Pfn(5)));
  EXPECT_EQ(f.make_index(arch::PfnOrOffset::of_offset(DevPrivOffset(3))).error().code(),
            Errno::kEINVAL);
  EXPECT_EQ(MUST(f.make_index(arch::PfnOrOffset::of_pfn(Pfn(7))), "pfn"), 7u);
}

TEST(HmmPfn, DpasLayout) {
  const HmmPfnFormat f = hmm_pfn_format(arch::SwapNumberingKind::kDpas);
  EXPECT_EQ(f.order_shift, 52u);  // BITS_PER_LONG - 12
  EXPECT_EQ(f.device_private, kHmmPfnDevicePrivate);
  EXPECT_EQ(f.hmm_pfn_flags_mask(), 0xFFF0000000000000u);
  // The largest order (31) stays below DEVICE_PRIVATE.
  EXPECT_EQ(f.order_bits(31) & kHmmPfnDevicePrivate, 0u);
  const uint64_t off = MUST(f.make_index(arch::PfnOrOffset::of_offset(DevPrivOffset(0x40))),
                            "offset");
  EXPECT_EQ(off, kHmmPfnDevicePrivate | 0x40);
  const uint64_t w = off | kHmmPfnValid | kHmmPfnWrite | f.order_bits(9);
  EXPECT_EQ(hmm_pfn_to_map_order(f, w), 9u);
  EXPECT_EQ(f.index(w), arch::PfnOrOffset::of_offset(DevPrivOffset(0x40)));
  EXPECT_EQ(f.index(kHmmPfnValid | 0x40), arch::PfnOrOffset::of_pfn(Pfn(0x40)));
  EXPECT_EQ(hmm_pfn_describe(f, w), "VALID|WRITE|DEVICE_PRIVATE order=9 dpoff:0x40");
  EXPECT_EQ(f.make_index(arch::PfnOrOffset::of_pfn(Pfn(uint64_t{1} << 52))).error().code(),
            Errno::kERANGE);
}

}  // namespace
}  // namespace dpmm::hmm
