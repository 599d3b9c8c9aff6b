// CPU access through the page tables: contents, page-crossing, words, accessed/dirty bits.
#include "mm/access.h"

#include <gtest/gtest.h>

#include "arch/decoded_entry.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

TEST(AccessTest, PageCrossingCopiesAndFill) {
  auto k = testing::make_test_kernel();
  auto p = Process::create(*k).value();
  const VirtAddr a = p->mmap_anon(3 * kPageSize, kRw).value();
  ASSERT_TRUE(p->fill(a + 100, 2 * kPageSize, std::byte{0xab}).is_ok());
  std::vector<std::byte> all(3 * kPageSize);
  ASSERT_TRUE(p->read(a, all).is_ok());
  for (size_t i = 0; i < all.size(); ++i) {
    const std::byte want = (i >= 100 && i < 100 + 2 * kPageSize) ? std::byte{0xab} : std::byte{0};
    ASSERT_EQ(all[i], want) << "offset " << i;
  }
  // An unaligned word across a page boundary.
  ASSERT_TRUE(p->write_u64(a + kPageSize - 3, 0x1122334455667788).is_ok());
  EXPECT_EQ(p->read_u64(a + kPageSize - 3).value(), 0x1122334455667788u);
  EXPECT_EQ(p->read_u32(a + kPageSize + 1).value(), 0x11223344u);
  // A read running off the end of the mapping fails at the first unmapped byte.
  std::vector<std::byte> over(kPageSize);
  auto r = p->read(a + 3 * kPageSize - 10, over);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kEFAULT);
  EXPECT_NE(r.error().message().find(fmt::format("{}", a + 3 * kPageSize)), std::string::npos);
}

TEST(AccessTest, AccessedAndDirtyBitsSetByTheMmu) {
  auto k = testing::make_test_kernel(arch::SwapNumberingKind::kLegacy, arch::ArchKind::kX86_64);
  auto p = Process::create(*k).value();
  const VirtAddr a = p->mmap_anon(kPageSize, kRw).value();
  ASSERT_TRUE(p->write_u32(a, 3).is_ok());
  EntrySlot s = p->mm().page_table().walk_pte(a).value();
  const arch::DecodedEntry d = k->codec().decode(arch::EntryLevel::kPte, s.load());
  // Clear A and D by hand (as reclaim's young test and writeback would).
  s.store(k->codec()
              .make_present(arch::EntryLevel::kPte, d.pfn, arch::Prot::kUser | arch::Prot::kWrite)
              .value());
  EXPECT_EQ(p->read_u32(a).value(), 3u);
  arch::DecodedEntry e = k->codec().decode(arch::EntryLevel::kPte, s.load());
  EXPECT_TRUE(arch::has(e.prot, arch::Prot::kAccessed));
  EXPECT_FALSE(arch::has(e.prot, arch::Prot::kDirty));
  const uint64_t faults = p->mm().nr_faults();
  ASSERT_TRUE(p->write_u32(a, 4).is_ok());
  e = k->codec().decode(arch::EntryLevel::kPte, s.load());
  EXPECT_TRUE(arch::has(e.prot, arch::Prot::kDirty));
  EXPECT_EQ(p->mm().nr_faults(), faults);  // the MMU did it, no fault
}

}  // namespace
}  // namespace dpmm::mm
