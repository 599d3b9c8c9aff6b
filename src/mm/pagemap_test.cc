#include "mm/pagemap.h"

#include <gtest/gtest.h>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

TEST(PagemapTest, PresentZeroAndSwapEntries) {
  auto k = testing::make_test_kernel();
  auto p = Process::create(*k).value();
  const VirtAddr a = p->mmap_anon(4 * kPageSize, kRw).value();
  EXPECT_EQ(pagemap_entry(p->mm(), a), 0u);              // never touched
  EXPECT_EQ(pagemap_entry(p->mm(), VirtAddr(0x1000)), 0u);  // no VMA
  ASSERT_TRUE(p->write_u64(a, 1).is_ok());
  EXPECT_EQ(p->read_u64(a + kPageSize).value(), 0u);
  EntrySlot s0 = p->mm().page_table().walk_pte(a).value();
  const Pfn pfn = k->codec().decode(arch::EntryLevel::kPte, s0.load()).pfn;

  const uint64_t e0 = pagemap_entry(p->mm(), a);
  EXPECT_EQ(e0, kPmPresent | kPmMmapExclusive | pfn.raw());
  // The zero page: present, its pfn, neither exclusive nor file.
  EXPECT_EQ(pagemap_entry(p->mm(), a + kPageSize), kPmPresent | k->zero_pfn().raw());

  // A migration entry: PM_SWAP, type in bits 0..4, the pfn as offset.
  ASSERT_TRUE(p->write_u64(a + 2 * kPageSize, 1).is_ok());
  EntrySlot s2 = p->mm().page_table().walk_pte(a + 2 * kPageSize).value();
  const uint64_t orig = s2.load();
  const Pfn pfn2 = k->codec().decode(arch::EntryLevel::kPte, orig).pfn;
  const arch::Softleaf mig =
      arch::make_readable_migration_entry(k->softleaf_format(), pfn2).value();
  s2.store(k->codec().make_swap(arch::EntryLevel::kPte, mig, arch::SwpBit::kNone).value());
  const unsigned type = arch::kLegacyNumbering.migration_read;
  EXPECT_EQ(pagemap_entry(p->mm(), a + 2 * kPageSize),
            kPmSwap | type | (pfn2.raw() << arch::kMaxSwapfilesShift));
  s2.store(orig);
  // A guard marker.
  const arch::Softleaf guard =
      arch::make_pte_marker_entry(k->softleaf_format(), arch::PteMarker::kGuard).value();
  EntrySlot s3 = p->mm().page_table().walk_pte(a + 3 * kPageSize).value();
  s3.store(k->codec().make_swap(arch::EntryLevel::kPte, guard, arch::SwpBit::kNone).value());
  EXPECT_EQ(pagemap_entry(p->mm(), a + 3 * kPageSize),
            kPmSwap | kPmGuardRegion | arch::kLegacyNumbering.pte_marker |
                (uint64_t{4} << arch::kMaxSwapfilesShift));
  s3.store(0);
}

}  // namespace
}  // namespace dpmm::mm
