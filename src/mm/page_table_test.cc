#include "mm/page_table.h"

#include <gtest/gtest.h>

#include "arch/decoded_entry.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

TEST(PageTableTest, IndicesPerLevel) {
  const VirtAddr a((uint64_t{3} << 39) | (uint64_t{5} << 30) | (uint64_t{7} << 21) |
                   (uint64_t{9} << 12) | 0x123);
  EXPECT_EQ(pt_index(PtLevel::kPgd, a), 3u);
  EXPECT_EQ(pt_index(PtLevel::kPud, a), 5u);
  EXPECT_EQ(pt_index(PtLevel::kPmd, a), 7u);
  EXPECT_EQ(pt_index(PtLevel::kPte, a), 9u);
}

TEST(PageTableTest, AllocWalkFreeUsesRealTablePages) {
  for (arch::ArchKind ak : {arch::ArchKind::kX86_64, arch::ArchKind::kArm64}) {
    auto k = testing::make_test_kernel(arch::SwapNumberingKind::kLegacy, ak);
    const uint64_t free0 = k->nr_free_pages();
    {
      auto pt = PageTable::create(*k).value();
      EXPECT_EQ(k->nr_free_pages(), free0 - 1);  // the PGD
      const VirtAddr a(0x7f0000201000);
      EXPECT_FALSE(pt->walk_pte(a).has_value());
      EntrySlot pmd = pt->walk_pmd_alloc(a).value();
      EntrySlot pte = pt->pte_alloc(pmd, a).value();
      EXPECT_EQ(pt->nr_tables(), 3u);
      EXPECT_EQ(k->nr_free_pages(), free0 - 4);
      // The PGD entry is a real table word naming the PUD page, in the PGD page's bytes.
      const uint64_t pgd_word = pt->pgd_offset(a).load();
      const arch::DecodedEntry d = k->codec().decode(arch::EntryLevel::kPmd, pgd_word);
      EXPECT_EQ(d.kind, arch::DecodedEntry::Kind::kTable);
      const auto* pgd_words =
          reinterpret_cast<const uint64_t*>(k->page_bytes(pt->pgd_pfn()).data());
      EXPECT_EQ(pgd_words[pt_index(PtLevel::kPgd, a)], pgd_word);
      EXPECT_EQ(pt->walk_pte(a), pte);
      // A second allocation walk finds the same tables.
      EXPECT_EQ(pt->pte_alloc(pt->walk_pmd_alloc(a).value(), a).value(), pte);
      EXPECT_EQ(pt->nr_tables(), 3u);
      // Tables outside [floor, ceiling) stay; inside, they go.
      auto kept = pt->free_pgd_range(a, a + kPageSize, VirtAddr(0x7f0000202000),
                                     VirtAddr(kPgtableTop));
      EXPECT_TRUE(kept.empty());
      auto freed = pt->free_pgd_range(a, a + kPageSize, VirtAddr(0), VirtAddr(kPgtableTop));
      EXPECT_EQ(freed.size(), 3u);
      EXPECT_EQ(pt->nr_tables(), 0u);
      for (page::Folio f : freed) page::folio_put(f);
      EXPECT_FALSE(pt->walk_pte(a).has_value());
    }
    EXPECT_EQ(k->nr_free_pages(), free0);
  }
}

}  // namespace
}  // namespace dpmm::mm
