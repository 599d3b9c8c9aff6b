// rmap_walk across a fork tree and page_vma_mapped_walk for present, migration and
// device-private entries.
#include <gtest/gtest.h>

#include <algorithm>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/process.h"
#include "mm/rmap.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

struct Visit {
  Mm* mm;
  uint64_t address;
  bool operator==(const Visit&) const = default;
  bool operator<(const Visit& o) const { return mm != o.mm ? mm < o.mm : address < o.address; }
};

std::vector<Visit> walk(Kernel& k, page::Folio f) {
  std::vector<Visit> out;
  rmap_walk(k, f, [&](Mm& mm, const Vma& vma, VirtAddr a) {
    EXPECT_TRUE(vma.contains(a));
    out.push_back(Visit{&mm, a.raw()});
    return true;
  });
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Visit> sorted(std::vector<Visit> v) {
  std::sort(v.begin(), v.end());
  return v;
}

class RmapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel(arch::SwapNumberingKind::kDpas);
    free0_ = k_->nr_free_pages();
  }
  void TearDown() override { EXPECT_EQ(k_->nr_free_pages(), free0_); }
  page::Folio folio_at(Process& p, VirtAddr a) {
    const EntrySlot s = p.mm().page_table().walk_pte(a).value();
    const Pfn pfn = k_->codec().decode(arch::EntryLevel::kPte, s.load()).pfn;
    return page::page_folio(k_->pfn_to_page(pfn).value());
  }
  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
};

TEST_F(RmapTest, FolioMappingPointsAtTheAnonVmaWithTheIndex) {
  auto p = Process::create(*k_).value();
  const VirtAddr a = p->mmap_anon(4 * kPageSize, kRw).value();
  ASSERT_TRUE(p->write_u64(a + 2 * kPageSize, 1).is_ok());
  page::Folio f = folio_at(*p, a + 2 * kPageSize);
  ReadLocker guard(p->mm().mmap_lock());
  const Vma* vma = p->mm().vma_lookup(a);
  EXPECT_EQ(folio_anon_vma(f), vma->anon_vma());
  EXPECT_EQ(f.mapping_word() & page::kFolioMappingFlags, page::kFolioMappingAnon);
  EXPECT_EQ(f.index(), (a.raw() >> kPageShift) + 2);
  EXPECT_EQ(vma_address(*vma, f.index()).value(), a + 2 * kPageSize);
  EXPECT_FALSE(vma_address(*vma, f.index() + 10).has_value());
}

TEST_F(RmapTest, WalkFindsParentAndChildThenOnlyTheRemainingMapping) {
  auto parent = Process::create(*k_).value();
  const VirtAddr a = parent->mmap_anon(2 * kPageSize, kRw).value();
  ASSERT_TRUE(parent->write_u64(a, 11).is_ok());
  ASSERT_TRUE(parent->write_u64(a + kPageSize, 12).is_ok());
  page::Folio f0 = folio_at(*parent, a);
  page::Folio f1 = folio_at(*parent, a + kPageSize);
  EXPECT_EQ(walk(*k_, f0), (std::vector<Visit>{{&parent->mm(), a.raw()}}));

  auto child = parent->fork().value();
  auto grandchild = child->fork().value();
  const auto all = sorted({{&parent->mm(), a.raw()},
                           {&child->mm(), a.raw()},
                           {&grandchild->mm(), a.raw()}});
  EXPECT_EQ(walk(*k_, f0), all);
  const Pfn pfn0 = k_->page_to_pfn(f0.head());
  auto found = folio_find_mappings(*k_, f0, arch::PfnOrOffset::of_pfn(pfn0), PvmwFlags::kNone);
  EXPECT_EQ(found.size(), 3u);

  // The child breaks COW on page 0: the old folio's walk still visits the child's VMA (it may
  // map it) but page_vma_mapped_walk finds it only in parent and grandchild.
  ASSERT_TRUE(child->write_u64(a, 99).is_ok());
  found = folio_find_mappings(*k_, f0, arch::PfnOrOffset::of_pfn(pfn0), PvmwFlags::kNone);
  std::vector<Mm*> mms;
  for (const RmapMapping& m : found) mms.push_back(m.mm);
  std::sort(mms.begin(), mms.end());
  std::vector<Mm*> want{&parent->mm(), &grandchild->mm()};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(mms, want);
  // The child's new folio belongs to the child's anon_vma: its walk visits the child and the
  // grandchild forked from it... but not the parent.
  page::Folio c0 = folio_at(*child, a);
  EXPECT_EQ(walk(*k_, c0), sorted({{&child->mm(), a.raw()}, {&grandchild->mm(), a.raw()}}));
  const Pfn cpfn = k_->page_to_pfn(c0.head());
  found = folio_find_mappings(*k_, c0, arch::PfnOrOffset::of_pfn(cpfn), PvmwFlags::kNone);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].mm, &child->mm());

  // The parent exits: its anon_vma stays (the children's descend from it); page 1 is found in
  // child and grandchild only.
  parent.reset();
  EXPECT_EQ(walk(*k_, f1), sorted({{&child->mm(), a.raw() + kPageSize},
                                   {&grandchild->mm(), a.raw() + kPageSize}}));
  // munmap in the grandchild removes it from the walk.
  ASSERT_TRUE(grandchild->munmap(a, 2 * kPageSize).is_ok());
  EXPECT_EQ(walk(*k_, f1), (std::vector<Visit>{{&child->mm(), a.raw() + kPageSize}}));
  EXPECT_EQ(f1.mapcount(), 1);
  EXPECT_EQ(f1.ref_count(), 1);
}

TEST_F(RmapTest, PageVmaMappedWalkFindsPresentMigrationAndDevicePrivateEntries) {
  auto p = Process::create(*k_).value();
  const VirtAddr a = p->mmap_anon(3 * kPageSize, kRw).value();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p->write_u64(a + i * kPageSize, i).is_ok());
  page::Folio f = folio_at(*p, a);
  const Pfn pfn = k_->page_to_pfn(f.head());
  const auto fmt = k_->softleaf_format();
  Mm& mm = p->mm();
  ReadLocker mguard(mm.mmap_lock());
  const Vma& vma = *mm.vma_lookup(a);
  auto pvmw = [&](VirtAddr at, arch::PfnOrOffset t, PvmwFlags fl) {
    SpinLocker guard(mm.page_table().lock());
    return page_vma_mapped_walk(mm, vma, at, t, fl);
  };
  const auto target = arch::PfnOrOffset::of_pfn(pfn);
  auto hit = pvmw(a, target, PvmwFlags::kNone);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->address, a);
  EXPECT_FALSE(pvmw(a + kPageSize, target, PvmwFlags::kNone).has_value());  // another page
  EXPECT_FALSE(pvmw(a, target, PvmwFlags::kMigration).has_value());         // present != mig
  EXPECT_FALSE(pvmw(a + 5 * kPageSize, target, PvmwFlags::kNone).has_value());  // outside

  const EntrySlot s = mm.page_table().walk_pte(a).value();
  const uint64_t orig = s.load();
  auto plant = [&](arch::Softleaf leaf) {
    SpinLocker guard(mm.page_table().lock());
    s.store(k_->codec().make_swap(arch::EntryLevel::kPte, leaf, arch::SwpBit::kNone).value());
  };
  plant(arch::make_writable_migration_entry(fmt, pfn).value());
  EXPECT_TRUE(pvmw(a, target, PvmwFlags::kMigration).has_value());
  EXPECT_FALSE(pvmw(a, target, PvmwFlags::kNone).has_value());
  // dpas device-private entries hold offsets: found only by an offset target with the seam
  // flag, never by a PFN of the same number.
  const DevPrivOffset off(pfn.raw());
  plant(arch::make_writable_device_private_entry(fmt, arch::PfnOrOffset::of_offset(off)).value());
  EXPECT_FALSE(pvmw(a, target, PvmwFlags::kNone).has_value());
  EXPECT_TRUE(pvmw(a, arch::PfnOrOffset::of_offset(off), PvmwFlags::kDevicePrivate).has_value());
  plant(arch::make_writable_migration_device_private_entry(fmt, off).value());
  EXPECT_TRUE(pvmw(a, arch::PfnOrOffset::of_offset(off),
                   PvmwFlags::kMigration | PvmwFlags::kDevicePrivate).has_value());
  EXPECT_FALSE(pvmw(a, target, PvmwFlags::kMigration).has_value());
  plant(arch::make_device_exclusive_entry(fmt, pfn).value());
  EXPECT_TRUE(pvmw(a, target, PvmwFlags::kNone).has_value());
  SpinLocker guard(mm.page_table().lock());
  s.store(orig);
}

}  // namespace
}  // namespace dpmm::mm
