#include "arch/entry.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <vector>

namespace dpmm::arch {
namespace {

std::vector<EntryCodec> all_codecs() {
  std::vector<EntryCodec> out;
  for (SwapNumberingKind n : {SwapNumberingKind::kLegacy, SwapNumberingKind::kDpas}) {
    out.emplace_back(x86_64_params(PagingMode::kFourLevel), n);
    out.emplace_back(x86_64_params(PagingMode::kFiveLevel), n);
    out.emplace_back(arm64_params(), n);
  }
  return out;
}

EntryCodec gen_codec() {
  const auto codecs = all_codecs();
  return codecs[*rc::gen::inRange<size_t>(0, codecs.size())];
}

EntryLevel gen_level() { return *rc::gen::element(EntryLevel::kPte, EntryLevel::kPmd); }

// A Prot the arch can express: PROT_NONE drops write/user/exec/global, uffd-wp drops write,
// user drops global, arm64 drops soft-dirty.
Prot gen_valid_prot(ArchKind arch) {
  auto p = static_cast<Prot>(*rc::gen::inRange<uint16_t>(0, 1u << 10));
  if (has(p, Prot::kProtNone)) p = p & ~(Prot::kWrite | Prot::kUser | Prot::kExec | Prot::kGlobal);
  if (has(p, Prot::kUffdWp)) p = p & ~Prot::kWrite;
  if (has(p, Prot::kUser)) p = p & ~Prot::kGlobal;
  if (arch == ArchKind::kArm64) p = p & ~Prot::kSoftDirty;
  return p;
}

// A softleaf of any type value (PMDs: migration and device-private only) whose payload the
// kernel could have built. The type is drawn from a list, not by retrying, so shrinking ends.
Softleaf gen_valid_leaf(SoftleafFormat f, EntryLevel level) {
  std::vector<unsigned> types;
  for (unsigned t = 0; t < kSwapTypeCount; ++t) {
    const Softleaf probe = MUST(swp_entry(f, t, 1), "type < 32");
    if (level == EntryLevel::kPmd && !softleaf_is_migration(probe) &&
        !softleaf_is_device_private(probe))
      continue;
    types.push_back(t);
  }
  const unsigned type = *rc::gen::elementOf(types);
  const uint64_t index = *rc::gen::arbitrary<uint64_t>() & f.pfn_mask();
  uint64_t offset = index;
  switch (softleaf_type(MUST(swp_entry(f, type, 1), "type < 32"))) {
    case SoftleafType::kSwap:
      offset = *rc::gen::inRange<uint64_t>(1, uint64_t{1} << 50);
      break;
    case SoftleafType::kMarker:
      offset = *rc::gen::inRange<uint64_t>(1, kPteMarkerMask + 1);
      break;
    case SoftleafType::kMigrationRead:
    case SoftleafType::kMigrationReadExclusive:
    case SoftleafType::kMigrationWrite:
    case SoftleafType::kMigrationDevicePrivateRead:
    case SoftleafType::kMigrationDevicePrivateReadExclusive:
    case SoftleafType::kMigrationDevicePrivateWrite:
      offset |= *rc::gen::inRange<uint64_t>(0, 4) << f.pfn_bits;  // young / dirty
      break;
    case SoftleafType::kDevicePrivateRead:
    case SoftleafType::kDevicePrivateWrite:
    case SoftleafType::kDeviceExclusive:
    case SoftleafType::kHwpoison:
      break;
    case SoftleafType::kNone:
    case SoftleafType::kCount:
      RC_FAIL("every type value classifies");
  }
  return MUST(swp_entry(f, type, offset), "payload fits");
}

SwpBit gen_valid_swp_bits(ArchKind arch, EntryLevel level) {
  auto b = static_cast<SwpBit>(*rc::gen::inRange<uint8_t>(0, 8));
  if (arch == ArchKind::kArm64)
    b = b & static_cast<SwpBit>(~static_cast<uint8_t>(SwpBit::kSoftDirty));
  if (level == EntryLevel::kPmd)
    b = b & static_cast<SwpBit>(~static_cast<uint8_t>(SwpBit::kExclusive));
  return b;
}

RC_GTEST_PROP(EntryCodec, PresentRoundTripsAndValidates, ()) {
  const EntryCodec c = gen_codec();
  const EntryLevel level = gen_level();
  const Prot prot = gen_valid_prot(c.arch());
  uint64_t pfn = *rc::gen::arbitrary<uint64_t>() & c.format().pfn_mask();
  if (level == EntryLevel::kPmd) pfn &= ~uint64_t{511};
  const auto word = c.make_present(level, Pfn(pfn), prot);
  RC_ASSERT(word.is_ok());
  const DecodedEntry d = c.decode(level, *word);
  RC_ASSERT(d.kind == DecodedEntry::Kind::kPresent);
  RC_ASSERT(d.pfn == Pfn(pfn));
  RC_ASSERT(d.prot == prot);
  RC_ASSERT(d.hw_valid == !has(prot, Prot::kProtNone));
  RC_ASSERT(c.softleaf_from(level, *word) == Softleaf::none(c.format()));
  const Status v = c.validate(level, *word);
  RC_ASSERT_FALSE(v.is_error());
}

RC_GTEST_PROP(EntryCodec, SwapRoundTripsEveryTypeAndBit, ()) {
  const EntryCodec c = gen_codec();
  const EntryLevel level = gen_level();
  const Softleaf leaf = gen_valid_leaf(c.format(), level);
  const SwpBit bits = gen_valid_swp_bits(c.arch(), level);
  const auto word = c.make_swap(level, leaf, bits);
  RC_ASSERT(word.is_ok());
  const DecodedEntry d = c.decode(level, *word);
  RC_ASSERT(d.kind == DecodedEntry::Kind::kSwap);
  RC_ASSERT(d.leaf == leaf);
  RC_ASSERT(d.swp_bits == bits);
  RC_ASSERT(c.softleaf_from(level, *word) == leaf);
  RC_ASSERT(c.validate(level, *word).is_ok());
}

RC_GTEST_PROP(EntryCodec, TableRoundTrips, ()) {
  const EntryCodec c = gen_codec();
  const uint64_t pfn = *rc::gen::arbitrary<uint64_t>() & c.format().pfn_mask();
  const uint64_t word = MUST(c.make_table(Pfn(pfn)), "pfn within limits");
  const DecodedEntry d = c.decode(EntryLevel::kPmd, word);
  RC_ASSERT(d.kind == DecodedEntry::Kind::kTable);
  RC_ASSERT(d.pfn == Pfn(pfn));
  RC_ASSERT(c.validate(EntryLevel::kPmd, word).is_ok());
  RC_ASSERT(c.table_pfn(word) == std::optional<Pfn>(Pfn(pfn)));
}

// table_pfn, the walk's fast path, answers exactly what decode's kTable case does, for any
// word: random ones, and every table, leaf, swap and none word the codecs build (a table word
// with one bit flipped covers the boundary between table and leaf).
RC_GTEST_PROP(EntryCodec, TablePfnAgreesWithDecode, (uint64_t word)) {
  const auto expected = [](const EntryCodec& c, uint64_t w) {
    const DecodedEntry d = c.decode(EntryLevel::kPmd, w);
    return d.kind == DecodedEntry::Kind::kTable ? std::optional<Pfn>(d.pfn) : std::nullopt;
  };
  for (const EntryCodec& c : all_codecs()) {
    RC_ASSERT(c.table_pfn(word) == expected(c, word));
    const uint64_t pfn = word & c.format().pfn_mask();
    const uint64_t table = MUST(c.make_table(Pfn(pfn)), "pfn within limits");
    const uint64_t flipped = table ^ (uint64_t{1} << *rc::gen::inRange(0, 64));
    RC_ASSERT(c.table_pfn(table) == expected(c, table));
    RC_ASSERT(c.table_pfn(flipped) == expected(c, flipped));
    RC_ASSERT(!c.table_pfn(0).has_value());
  }
}

// Any word decodes; a word that validates as a swap entry re-encodes to itself.
RC_GTEST_PROP(EntryCodec, AnyWordDecodes, (uint64_t word)) {
  for (const EntryCodec& c : all_codecs()) {
    for (EntryLevel level : {EntryLevel::kPte, EntryLevel::kPmd}) {
      const DecodedEntry d = c.decode(level, word);
      RC_ASSERT(d.raw == word);
      RC_ASSERT(!describe(d).empty());
      const Status v = c.validate(level, word);
      if (v.is_ok() && d.kind == DecodedEntry::Kind::kSwap) {
        RC_ASSERT(c.make_swap(level, d.leaf, d.swp_bits).value() == word);
      }
    }
  }
}

// Swap-shaped words are sparse among random words; build some and flip one bit.
RC_GTEST_PROP(EntryCodec, FlippedSwapWordsStillDecode, ()) {
  const EntryCodec c = gen_codec();
  const EntryLevel level = gen_level();
  const uint64_t word = MUST(c.make_swap(level, gen_valid_leaf(c.format(), level),
                                         gen_valid_swp_bits(c.arch(), level)),
                             "valid leaf");
  const uint64_t flipped = word ^ (uint64_t{1} << *rc::gen::inRange<unsigned>(0, 64));
  const DecodedEntry d = c.decode(level, flipped);
  RC_ASSERT(d.raw == flipped);
  const Status v = c.validate(level, flipped);
  if (v.is_ok() && d.kind == DecodedEntry::Kind::kSwap) {
    RC_ASSERT(c.make_swap(level, d.leaf, d.swp_bits).value() == flipped);
  }
}

TEST(EntryCodec, RefusesSoftleafOfAnotherFormat) {
  const EntryCodec x86_dpas(x86_64_params(), SwapNumberingKind::kDpas);
  const SoftleafFormat legacy = SoftleafFormat::for_arch(SwapNumberingKind::kLegacy,
                                                         x86_64_params());
  const Softleaf leaf = make_swap_entry(legacy, 1, 1).value();
  auto r = x86_dpas.make_swap(EntryLevel::kPte, leaf, SwpBit::kNone);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kEINVAL);
  EXPECT_NE(r.error().message().find("legacy"), std::string::npos);
}

TEST(EntryCodec, DispatchesByArch) {
  const EntryCodec x86(x86_64_params(), SwapNumberingKind::kLegacy);
  const EntryCodec arm(arm64_params(), SwapNumberingKind::kLegacy);
  const Softleaf lx =
      make_writable_device_private_entry(x86.format(), PfnOrOffset::of_pfn(Pfn(0x12345))).value();
  const Softleaf la =
      make_writable_device_private_entry(arm.format(), PfnOrOffset::of_pfn(Pfn(0x12345))).value();
  EXPECT_EQ(x86.make_swap(EntryLevel::kPte, lx, SwpBit::kNone).value(), 0xe7fffffffdb97400u);
  EXPECT_EQ(arm.make_swap(EntryLevel::kPte, la, SwpBit::kNone).value(), 0x12345700u);
  const DecodedEntry d = x86.decode(EntryLevel::kPte, 0xe7fffffffdb97400u);
  EXPECT_EQ(describe(d), "swap SWP_DEVICE_WRITE pfn:0x12345");
  EXPECT_EQ(d.swap_type(), 28u);
  EXPECT_EQ(d.swap_type_name(), "SWP_DEVICE_WRITE");
  EXPECT_EQ(d.swap_offset(), 0x12345u);
  EXPECT_EQ(describe(arm.decode(EntryLevel::kPte, 0x1234570cu)),
            "swap SWP_DEVICE_WRITE pfn:0x12345 [exclusive|uffd_wp]");
  EXPECT_EQ(describe(arm.decode(EntryLevel::kPte, 0)), "none");
  EXPECT_EQ(arm.make_present(EntryLevel::kPte, Pfn(1), Prot::kSoftDirty).error().code(),
            Errno::kEOPNOTSUPP);
}

TEST(EntryBits, Strings) {
  EXPECT_EQ(prot_to_string(Prot::kNone), "none");
  EXPECT_EQ(prot_to_string(Prot::kWrite | Prot::kProtNone), "write|prot_none");
  EXPECT_EQ(swp_bits_to_string(kAllSwpBits), "exclusive|soft_dirty|uffd_wp");
}

}  // namespace
}  // namespace dpmm::arch
