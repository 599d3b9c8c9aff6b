// Anonymous THP: PMD leaves from the fault, the huge zero folio, COW after fork, splitting on
// partial munmap/mprotect/mremap/madvise, whole-PMD operations, pagemap and GUP through a
// leaf, split_folio. Every test checks bytes, counts and entries, and ends with every page
// back in the allocator.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/decoded_entry.h"
#include "mm/anon_rmap.h"
#include "mm/gup.h"
#include "mm/huge_memory.h"
#include "mm/pagemap.h"
#include "mm/process.h"
#include "mm/test_machine.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr uint64_t kPmd = kHpagePmdSize;
constexpr uint64_t kNr = kHpagePmdNr;

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

class ThpTest : public ::testing::TestWithParam<arch::ArchKind> {
 protected:
  void SetUp() override { make_kernel(ThpPolicy::kMadvise, UseHugeZeroPage::kYes); }
  void TearDown() override {
    child_.reset();
    p_.reset();
    EXPECT_EQ(k_->nr_free_pages(), free0_) << "every page back in the allocator";
  }
  void make_kernel(ThpPolicy policy, UseHugeZeroPage zero) {
    child_.reset();
    p_.reset();
    k_ = testing::make_test_kernel(arch::SwapNumberingKind::kLegacy, GetParam(), policy, zero);
    free0_ = k_->nr_free_pages();
    p_ = Process::create(*k_).value();
  }
  // A 2 MiB-aligned range of a private anonymous VMA with MADV_HUGEPAGE (when `huge`), with
  // unmapped space around it so that VMA splits stay inside.
  VirtAddr thp_region(Process& p, bool huge = true) {
    const VirtAddr base = p.mmap_anon(3 * kPmd, kRw).value();
    const VirtAddr map(base.align_down(kPmd).raw() + kPmd);
    if (map > base) {
      EXPECT_TRUE(p.munmap(base, map - base).is_ok());
    }
    const VirtAddr end = base + 3 * kPmd;
    if (end > map + kPmd) {
      EXPECT_TRUE(p.munmap(map + kPmd, end - (map + kPmd)).is_ok());
    }
    if (huge) {
      EXPECT_TRUE(p.madvise(map, kPmd, Madvise::kHugePage).is_ok());
    }
    return map;
  }
  uint64_t pmd_word(Process& p, VirtAddr a) {
    const std::optional<EntrySlot> pmd = p.mm().page_table().walk_pmd(a);
    return pmd ? pmd->load() : 0;
  }
  DecodedEntry pmd(Process& p, VirtAddr a) {
    return k_->codec().decode(EntryLevel::kPmd, pmd_word(p, a));
  }
  DecodedEntry pte(Process& p, VirtAddr a) {
    const std::optional<EntrySlot> s = p.mm().page_table().walk_pte(a);
    return k_->codec().decode(EntryLevel::kPte, s ? s->load() : 0);
  }
  page::Folio folio_at(Pfn pfn) { return page::page_folio(k_->pfn_to_page(pfn).value()); }
  // Word i of the range holds i ^ salt.
  void write_pattern(Process& p, VirtAddr a, uint64_t len, uint64_t salt) {
    std::vector<uint64_t> v(len / 8);
    for (uint64_t i = 0; i < v.size(); ++i) v[i] = i ^ salt;
    ASSERT_TRUE(p.write(a, std::as_bytes(std::span(v))).is_ok());
  }
  void expect_pattern(Process& p, VirtAddr a, uint64_t len, uint64_t salt, uint64_t first = 0) {
    std::vector<uint64_t> v(len / 8);
    ASSERT_TRUE(p.read(a, std::as_writable_bytes(std::span(v))).is_ok());
    for (uint64_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(v[i], (first + i) ^ salt) << "word " << i << " at " << a.raw();
    }
  }

  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> p_;
  std::unique_ptr<Process> child_;
};

TEST_P(ThpTest, WriteFaultMapsAnOrder9FolioByAPmdLeaf) {
  const VirtAddr map = thp_region(*p_);
  ASSERT_TRUE(p_->write_u64(map + 3 * kPageSize + 8, 0x1234).is_ok());
  const DecodedEntry d = pmd(*p_, map);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(has(d.prot, Prot::kWrite));
  EXPECT_TRUE(has(d.prot, Prot::kDirty));
  EXPECT_EQ(d.pfn.raw() % kNr, 0u);
  EXPECT_TRUE(k_->codec().validate(EntryLevel::kPmd, pmd_word(*p_, map)).is_ok());
  EXPECT_FALSE(p_->mm().page_table().walk_pte(map).has_value()) << "no PTE table under a leaf";
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 1u);
  page::Folio f = folio_at(d.pfn);
  EXPECT_EQ(f.order().raw(), kHpagePmdOrder);
  EXPECT_TRUE(f.is_anon());
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  EXPECT_EQ(f.entire_mapcount(), 1);
  EXPECT_EQ(f.nr_pages_mapped_raw().load(), kEntirelyMapped);
  EXPECT_EQ(f.page(5)->mapcount(), 0) << "subpage _mapcount stays -1 under a PMD";
  EXPECT_EQ(page_mapcount(f.page(5)), 1);
  EXPECT_TRUE(page_anon_exclusive(f.head()));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kNr));
  // Bytes: the word written, zeroes everywhere else.
  EXPECT_EQ(p_->read_u64(map + 3 * kPageSize + 8).value(), 0x1234u);
  EXPECT_EQ(p_->read_u64(map + kPmd - 8).value(), 0u);
  write_pattern(*p_, map, kPmd, 0xabc);
  expect_pattern(*p_, map, kPmd, 0xabc);
  // pagemap: every 4 KiB subpage shows its own frame.
  for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{255}, kNr - 1}) {
    const uint64_t e = pagemap_entry(p_->mm(), map + i * kPageSize);
    EXPECT_TRUE(e & kPmPresent);
    EXPECT_TRUE(e & kPmMmapExclusive);
    EXPECT_EQ(e & kPmPframeMask, d.pfn.raw() + i);
  }
  // The bytes live in the folio's pages.
  uint64_t w = 0;
  std::memcpy(&w, k_->page_bytes(d.pfn + PageCount(7)).data() + 16, 8);
  EXPECT_EQ(w, (7 * kPageSize / 8 + 2) ^ 0xabc);
}

TEST_P(ThpTest, NoOrder9BlockFallsBackToPtes) {
  const VirtAddr map = thp_region(*p_);
  // Take every free order-9 block (the kernel under fragmentation).
  std::vector<page::Folio> held;
  while (true) {
    Result<page::Folio> f = k_->alloc_folio(Order(kHpagePmdOrder));
    if (f.is_error()) break;
    held.push_back(*f);
  }
  ASSERT_FALSE(held.empty());
  ASSERT_TRUE(p_->write_u64(map + kPageSize, 9).is_ok());
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  EXPECT_EQ(pte(*p_, map + kPageSize).kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 1);
  EXPECT_EQ(p_->read_u64(map + kPageSize).value(), 9u);
  // MADV_COLLAPSE: SCAN_ALLOC_HUGE_PAGE_FAIL, ENOMEM, nothing changed.
  ASSERT_TRUE(p_->fill(map + kPmd - 16 * kPageSize, 16 * kPageSize, std::byte{4}).is_ok());
  const Status s = p_->madvise(map, kPmd, Madvise::kCollapse);
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kENOMEM);
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  for (page::Folio f : held) page::folio_put(f);
  EXPECT_EQ(p_->read_u64(map + kPmd - 8).value(), 0x0404040404040404u);
}

TEST_P(ThpTest, ReadFaultMapsTheHugeZeroFolioThenAWriteGetsAThp) {
  const VirtAddr map = thp_region(*p_);
  EXPECT_EQ(p_->read_u64(map + 100 * kPageSize).value(), 0u);
  const DecodedEntry z = pmd(*p_, map);
  ASSERT_EQ(z.kind, DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(k_->is_huge_zero_pfn(z.pfn));
  EXPECT_FALSE(has(z.prot, Prot::kWrite));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_EQ(folio_at(z.pfn).mapcount(), 0) << "the huge zero folio is mapped special";
  EXPECT_EQ(folio_at(z.pfn).ref_count(), 1);
  // do_huge_zero_wp_pmd: a write replaces it with a new THP of zeroes.
  ASSERT_TRUE(p_->write_u64(map + 8, 77).is_ok());
  const DecodedEntry d = pmd(*p_, map);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_NE(d.pfn, z.pfn);
  EXPECT_TRUE(has(d.prot, Prot::kWrite));
  EXPECT_EQ(folio_at(d.pfn).entire_mapcount(), 1);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kNr));
  EXPECT_EQ(p_->read_u64(map + 8).value(), 77u);
  EXPECT_EQ(p_->read_u64(map + kPmd - 8).value(), 0u);
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 1u);
  // The mm keeps its huge zero reference until it exits (then the folio is freed).
  EXPECT_TRUE(k_->is_huge_zero_pfn(z.pfn));
}

TEST_P(ThpTest, HugeZeroPmdSplitsIntoZeroPagePtes) {
  const VirtAddr map = thp_region(*p_);
  EXPECT_EQ(p_->read_u64(map).value(), 0u);
  ASSERT_TRUE(p_->munmap(map + kPmd - kPageSize, kPageSize).is_ok());
  const DecodedEntry e = pte(*p_, map + 5 * kPageSize);
  ASSERT_EQ(e.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(e.pfn, k_->zero_pfn());
  EXPECT_FALSE(has(e.prot, Prot::kWrite));
  EXPECT_EQ(pte(*p_, map + kPmd - kPageSize).kind, DecodedEntry::Kind::kNone);
  // A write now COWs one zero page.
  ASSERT_TRUE(p_->write_u64(map + 5 * kPageSize, 5).is_ok());
  EXPECT_EQ(p_->read_u64(map + 5 * kPageSize).value(), 5u);
  EXPECT_EQ(p_->read_u64(map + 6 * kPageSize).value(), 0u);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 1);
}

TEST_P(ThpTest, PolicyDecidesWhichVmasGetThps) {
  // madvise without MADV_HUGEPAGE: base pages.
  const VirtAddr plain = thp_region(*p_, /*huge=*/false);
  ASSERT_TRUE(p_->write_u64(plain, 1).is_ok());
  EXPECT_EQ(pmd(*p_, plain).kind, DecodedEntry::Kind::kTable);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 1);
  // always: every suitable anon VMA, unless MADV_NOHUGEPAGE.
  make_kernel(ThpPolicy::kAlways, UseHugeZeroPage::kNo);
  const VirtAddr a = thp_region(*p_, false);
  EXPECT_EQ(p_->read_u64(a).value(), 0u);
  // use_zero_page off: a read fault allocates a THP too.
  const DecodedEntry d = pmd(*p_, a);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(k_->is_huge_zero_pfn(d.pfn));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kNr));
  const VirtAddr b = thp_region(*p_, false);
  ASSERT_TRUE(p_->madvise(b, kPmd, Madvise::kNoHugePage).is_ok());
  ASSERT_TRUE(p_->write_u64(b, 1).is_ok());
  EXPECT_EQ(pmd(*p_, b).kind, DecodedEntry::Kind::kTable);
  // A VMA smaller than 2 MiB never gets one.
  const VirtAddr small = p_->mmap_anon(kPmd / 2, kRw).value();
  ASSERT_TRUE(p_->write_u64(small, 1).is_ok());
  EXPECT_EQ(pmd(*p_, small).kind, DecodedEntry::Kind::kTable);
  // never: none.
  make_kernel(ThpPolicy::kNever, UseHugeZeroPage::kYes);
  const VirtAddr n = thp_region(*p_);
  ASSERT_TRUE(p_->write_u64(n, 1).is_ok());
  EXPECT_EQ(pmd(*p_, n).kind, DecodedEntry::Kind::kTable);
}

TEST_P(ThpTest, ForkSharesTheThpCopyOnWrite) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x11);
  const Pfn pfn = pmd(*p_, map).pfn;
  child_ = p_->fork().value();
  page::Folio f = folio_at(pfn);
  // copy_huge_pmd: one folio, two PMDs, both read-only.
  EXPECT_EQ(f.ref_count(), 2);
  EXPECT_EQ(f.mapcount(), 2);
  EXPECT_EQ(f.entire_mapcount(), 2);
  EXPECT_FALSE(page_anon_exclusive(f.head()));
  EXPECT_FALSE(has(pmd(*p_, map).prot, Prot::kWrite));
  EXPECT_FALSE(has(pmd(*child_, map).prot, Prot::kWrite));
  EXPECT_EQ(pmd(*child_, map).pfn, pfn);
  EXPECT_EQ(child_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kNr));
  EXPECT_EQ(child_->mm().page_table().nr_deposited(), 1u);
  expect_pattern(*child_, map, kPmd, 0x11);
  // The parent writes: the folio is shared, so the PMD splits and one page is copied.
  ASSERT_TRUE(p_->write_u64(map + 9 * kPageSize, 0xdead).is_ok());
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  const DecodedEntry copied = pte(*p_, map + 9 * kPageSize);
  EXPECT_NE(copied.pfn, pfn + PageCount(9));
  EXPECT_EQ(pte(*p_, map + 10 * kPageSize).pfn, pfn + PageCount(10));
  EXPECT_EQ(f.order().raw(), kHpagePmdOrder) << "the folio stays large";
  EXPECT_EQ(f.ref_count(), 1 + static_cast<int>(kNr) - 1);  // child PMD + 511 parent PTEs
  EXPECT_EQ(f.mapcount(), 1 + static_cast<int>(kNr) - 1);
  EXPECT_EQ(f.entire_mapcount(), 1);
  EXPECT_EQ(f.page(9)->mapcount(), 0);
  EXPECT_EQ(page_mapcount(f.page(10)), 2);
  EXPECT_EQ(p_->read_u64(map + 9 * kPageSize).value(), 0xdeadu);
  expect_pattern(*child_, map, kPmd, 0x11);
  // The child writes: shared too, split and copy.
  ASSERT_TRUE(child_->write_u64(map + 20 * kPageSize, 0xbeef).is_ok());
  EXPECT_EQ(pmd(*child_, map).kind, DecodedEntry::Kind::kTable);
  EXPECT_EQ(child_->read_u64(map + 20 * kPageSize).value(), 0xbeefu);
  EXPECT_EQ(child_->read_u64(map + 9 * kPageSize).value(), (9 * kPageSize / 8) ^ 0x11);
  EXPECT_EQ(p_->read_u64(map + 20 * kPageSize).value(), (20 * kPageSize / 8) ^ 0x11);
  expect_pattern(*p_, map + 21 * kPageSize, kPmd - 21 * kPageSize, 0x11, 21 * kPageSize / 8);
  child_.reset();
  expect_pattern(*p_, map + kPageSize, 8 * kPageSize, 0x11, kPageSize / 8);
}

TEST_P(ThpTest, ForkOfAPinnedThpCopiesItForTheChild) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x2b);
  const Pfn pfn = pmd(*p_, map).pfn;
  std::vector<page::Page*> pins =
      pin_user_pages_unlocked(p_->mm(), map + 3 * kPageSize, 1, FollFlags::kWrite).value();
  // copy_huge_pmd: the exclusive THP may be pinned: split in the parent, every page copied
  // for the child (the parent keeps the pinned folio, writable and exclusive).
  child_ = p_->fork().value();
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  EXPECT_EQ(pte(*p_, map + 3 * kPageSize).pfn, pfn + PageCount(3));
  EXPECT_TRUE(has(pte(*p_, map + 3 * kPageSize).prot, Prot::kWrite));
  const DecodedEntry c = pte(*child_, map + 3 * kPageSize);
  ASSERT_EQ(c.kind, DecodedEntry::Kind::kPresent);
  EXPECT_NE(c.pfn, pfn + PageCount(3));
  expect_pattern(*child_, map, kPmd, 0x2b);
  ASSERT_TRUE(p_->write_u64(map, 1).is_ok());
  EXPECT_EQ(child_->read_u64(map).value(), 0u ^ 0x2b);
  unpin_user_pages(pins);
  EXPECT_EQ(folio_at(pfn).mapcount(), static_cast<int>(kNr));
}

TEST_P(ThpTest, AfterTheOtherSideExitsAWriteReusesTheThp) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x22);
  const Pfn pfn = pmd(*p_, map).pfn;
  child_ = p_->fork().value();
  p_.reset();
  // Only the child maps it: do_huge_pmd_wp_page reuses the folio in place.
  ASSERT_TRUE(child_->write_u64(map, 0x42).is_ok());
  const DecodedEntry d = pmd(*child_, map);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(d.pfn, pfn);
  EXPECT_TRUE(has(d.prot, Prot::kWrite));
  EXPECT_TRUE(page_anon_exclusive(folio_at(pfn).head()));
  EXPECT_EQ(child_->read_u64(map).value(), 0x42u);
  expect_pattern(*child_, map + 8, kPmd - 8, 0x22, 1);
}

TEST_P(ThpTest, ForkOfTheHugeZeroPmdCopiesIt) {
  const VirtAddr map = thp_region(*p_);
  EXPECT_EQ(p_->read_u64(map).value(), 0u);
  child_ = p_->fork().value();
  const DecodedEntry d = pmd(*child_, map);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(k_->is_huge_zero_pfn(d.pfn));
  p_.reset();
  EXPECT_TRUE(k_->is_huge_zero_pfn(d.pfn)) << "the child's reference keeps it";
  EXPECT_EQ(child_->read_u64(map + kPmd - 8).value(), 0u);
}

TEST_P(ThpTest, PartialMunmapSplitsAndTheRestStaysIntact) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x33);
  const Pfn pfn = pmd(*p_, map).pfn;
  page::Folio f = folio_at(pfn);
  ASSERT_TRUE(p_->munmap(map + 100 * kPageSize, 2 * kPageSize).is_ok());
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 0u);
  EXPECT_EQ(pte(*p_, map + 100 * kPageSize).kind, DecodedEntry::Kind::kNone);
  const DecodedEntry e = pte(*p_, map + 99 * kPageSize);
  ASSERT_EQ(e.kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(e.pfn, pfn + PageCount(99));
  EXPECT_TRUE(has(e.prot, Prot::kWrite)) << "PTEs keep the leaf's permissions";
  EXPECT_TRUE(has(e.prot, Prot::kDirty));
  // Deferred split: the folio stays large, its mappings now per page.
  EXPECT_EQ(f.order().raw(), kHpagePmdOrder);
  EXPECT_EQ(f.entire_mapcount(), 0);
  EXPECT_EQ(f.mapcount(), static_cast<int>(kNr) - 2);
  EXPECT_EQ(f.ref_count(), static_cast<int>(kNr) - 2);
  EXPECT_EQ(f.page(100)->mapcount(), 0);
  EXPECT_EQ(f.page(101)->mapcount(), 0);
  EXPECT_EQ(f.page(102)->mapcount(), 1);
  EXPECT_TRUE(page_anon_exclusive(f.page(102)));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kNr) - 2);
  expect_pattern(*p_, map, 100 * kPageSize, 0x33);
  expect_pattern(*p_, map + 102 * kPageSize, kPmd - 102 * kPageSize, 0x33, 102 * kPageSize / 8);
  const uint64_t e0 = pagemap_entry(p_->mm(), map + 5 * kPageSize);
  EXPECT_EQ(e0 & kPmPframeMask, pfn.raw() + 5);
  EXPECT_TRUE(e0 & kPmMmapExclusive);
  // The folio goes whole when its last mapping does.
  const uint64_t free_before = k_->nr_free_pages();
  ASSERT_TRUE(p_->munmap(map, 100 * kPageSize).is_ok());
  EXPECT_EQ(k_->nr_free_pages(), free_before);
  ASSERT_TRUE(p_->munmap(map + 102 * kPageSize, kPmd - 102 * kPageSize).is_ok());
  EXPECT_GE(k_->nr_free_pages(), free_before + kNr);
}

TEST_P(ThpTest, MunmapOfTheWhole2MiBZapsThePmd) {
  const VirtAddr map = thp_region(*p_);
  const uint64_t free_before = k_->nr_free_pages();
  write_pattern(*p_, map, kPmd, 0x44);
  // The THP, its deposited table, and the PUD and PMD tables above it.
  EXPECT_EQ(free_before - k_->nr_free_pages(), kNr + 3);
  ASSERT_TRUE(p_->madvise(map, kPmd, Madvise::kDontNeed).is_ok());
  EXPECT_EQ(pmd_word(*p_, map), 0u);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_EQ(free_before - k_->nr_free_pages(), 2u) << "only the upper tables stay";
  EXPECT_EQ(p_->read_u64(map + 8).value(), 0u) << "refaults as zeroes";
}

TEST_P(ThpTest, PartialMprotectSplitsWholeMprotectKeepsTheLeaf) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x55);
  const Pfn pfn = pmd(*p_, map).pfn;
  // Whole 2 MiB: change_huge_pmd.
  ASSERT_TRUE(p_->mprotect(map, kPmd, MmapProt::kRead).is_ok());
  DecodedEntry d = pmd(*p_, map);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(has(d.prot, Prot::kWrite));
  EXPECT_TRUE(p_->write_u64(map, 1).is_error());
  ASSERT_TRUE(p_->mprotect(map, kPmd, MmapProt::kNone).is_ok());
  d = pmd(*p_, map);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(has(d.prot, Prot::kProtNone));
  EXPECT_TRUE(k_->codec().validate(EntryLevel::kPmd, pmd_word(*p_, map)).is_ok());
  EXPECT_TRUE(p_->read_u64(map).is_error());
  ASSERT_TRUE(p_->mprotect(map, kPmd, kRw).is_ok());
  d = pmd(*p_, map);
  EXPECT_TRUE(has(d.prot, Prot::kWrite)) << "an exclusive THP becomes writable at once";
  EXPECT_EQ(d.pfn, pfn);
  expect_pattern(*p_, map, kPmd, 0x55);
  // Half: the VMA split splits the PMD.
  ASSERT_TRUE(p_->mprotect(map, kPmd / 2, MmapProt::kRead).is_ok());
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  EXPECT_FALSE(has(pte(*p_, map).prot, Prot::kWrite));
  EXPECT_TRUE(has(pte(*p_, map + kPmd / 2).prot, Prot::kWrite));
  EXPECT_EQ(pte(*p_, map + kPmd / 2).pfn, pfn + PageCount(kNr / 2));
  EXPECT_TRUE(p_->write_u64(map, 1).is_error());
  ASSERT_TRUE(p_->write_u64(map + kPmd / 2, 0x99).is_ok());
  EXPECT_EQ(p_->read_u64(map + kPmd / 2).value(), 0x99u);
  expect_pattern(*p_, map, kPmd / 2, 0x55);
  EXPECT_EQ(folio_at(pfn).mapcount(), static_cast<int>(kNr));
}

TEST_P(ThpTest, MremapMovesTheLeafOrSplitsIt) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x66);
  const Pfn pfn = pmd(*p_, map).pfn;
  // An aligned destination: move_huge_pmd carries the leaf and its deposited table.
  const VirtAddr dst = thp_region(*p_, false);
  ASSERT_TRUE(p_->munmap(dst, kPmd).is_ok());
  const VirtAddr moved =
      p_->mremap(map, kPmd, kPmd, MremapFlags::kMayMove | MremapFlags::kFixed, dst).value();
  ASSERT_EQ(moved, dst);
  EXPECT_EQ(pmd(*p_, dst).kind, DecodedEntry::Kind::kPresent);
  EXPECT_EQ(pmd(*p_, dst).pfn, pfn);
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 1u);
  expect_pattern(*p_, dst, kPmd, 0x66);
  // An unaligned destination: the leaf splits and its PTEs move.
  const VirtAddr space = p_->mmap_anon(2 * kPmd, kRw).value();
  ASSERT_TRUE(p_->munmap(space, 2 * kPmd).is_ok());
  const VirtAddr odd = space + 3 * kPageSize;
  ASSERT_EQ(p_->mremap(dst, kPmd, kPmd, MremapFlags::kMayMove | MremapFlags::kFixed, odd).value(),
            odd);
  EXPECT_EQ(pte(*p_, odd).pfn, pfn);
  EXPECT_EQ(pte(*p_, odd + 7 * kPageSize).pfn, pfn + PageCount(7));
  EXPECT_EQ(p_->mm().page_table().nr_deposited(), 0u);
  expect_pattern(*p_, odd, kPmd, 0x66);
  EXPECT_EQ(folio_at(pfn).mapcount(), static_cast<int>(kNr));
}

TEST_P(ThpTest, GupFollowsTheLeafAndSplitsWithFollSplitPmd) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x77);
  const Pfn pfn = pmd(*p_, map).pfn;
  page::Folio f = folio_at(pfn);
  {
    ReadLocker guard(p_->mm().mmap_lock());
    std::vector<page::Page*> got =
        get_user_pages_remote(p_->mm(), map + 7 * kPageSize, 2, FollFlags::kGet).value();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0], f.page(7));
    EXPECT_EQ(got[1], f.page(8));
    EXPECT_EQ(f.ref_count(), 3);
    for (page::Page* pg : got) put_user_page(pg);
    EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kPresent);
    got = get_user_pages_remote(p_->mm(), map + 7 * kPageSize, 1,
                                FollFlags::kGet | FollFlags::kSplitPmd)
              .value();
    EXPECT_EQ(got[0], f.page(7));
    put_user_page(got[0]);
  }
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  EXPECT_EQ(f.ref_count(), static_cast<int>(kNr));
  std::vector<page::Page*> pins = pin_user_pages_unlocked(p_->mm(), map, 1, FollFlags::kNone).value();
  EXPECT_EQ(f.pincount_raw().load(), 1);
  unpin_user_pages(pins);
  EXPECT_EQ(f.pincount_raw().load(), 0);
  expect_pattern(*p_, map, kPmd, 0x77);
}

TEST_P(ThpTest, SplitFolioMakesSmallFoliosAndFreesUnmappedPages) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x88);
  const Pfn pfn = pmd(*p_, map).pfn;
  page::Folio f = folio_at(pfn);
  ASSERT_TRUE(page::folio_try_get(f));
  page::folio_lock(f);
  EXPECT_EQ(split_folio(*k_, f).error().code(), Errno::kEBUSY) << "still PMD-mapped";
  page::folio_unlock(f);  // munmap takes mmap_lock, which ranks below the folio lock
  ASSERT_TRUE(p_->munmap(map + kPmd - 4 * kPageSize, 4 * kPageSize).is_ok());
  page::folio_lock(f);
  const uint64_t free_before = k_->nr_free_pages();
  ASSERT_TRUE(split_folio(*k_, f).is_ok());
  EXPECT_EQ(k_->nr_free_pages(), free_before + 4) << "the unmapped tail pages are freed";
  EXPECT_FALSE(f.is_large());
  EXPECT_EQ(f.ref_count(), 2);
  for (uint64_t i : {uint64_t{1}, uint64_t{100}, kNr - 5}) {
    page::Folio small = folio_at(pfn + PageCount(i));
    EXPECT_FALSE(small.is_large());
    EXPECT_EQ(small.ref_count(), 1);
    EXPECT_EQ(small.mapcount(), 1);
    EXPECT_TRUE(small.is_anon());
    EXPECT_EQ(small.index(), f.index() + i);
    EXPECT_TRUE(page_anon_exclusive(small.head()));
  }
  page::folio_unlock(f);
  page::folio_put(f);
  expect_pattern(*p_, map, kPmd - 4 * kPageSize, 0x88);
  // Small folios now: a COW-free write and an munmap work page by page.
  ASSERT_TRUE(p_->write_u64(map + 3 * kPageSize, 3).is_ok());
  ASSERT_TRUE(p_->munmap(map + 3 * kPageSize, kPageSize).is_ok());
  EXPECT_EQ(k_->nr_free_pages(), free_before + 5);
}

TEST_P(ThpTest, MadvFreeOfTheWholeThpCleansIt) {
  const VirtAddr map = thp_region(*p_);
  write_pattern(*p_, map, kPmd, 0x99);
  const Pfn pfn = pmd(*p_, map).pfn;
  ASSERT_TRUE(p_->madvise(map, kPmd, Madvise::kFree).is_ok());
  const DecodedEntry d = pmd(*p_, map);
  ASSERT_EQ(d.kind, DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(has(d.prot, Prot::kDirty));
  EXPECT_FALSE(folio_at(pfn).test_flag(page::PageFlag::kSwapBacked)) << "lazyfree";
  expect_pattern(*p_, map, kPmd, 0x99);
  // Part of it: split.
  ASSERT_TRUE(p_->madvise(map, kPageSize, Madvise::kFree).is_ok());
  EXPECT_EQ(pmd(*p_, map).kind, DecodedEntry::Kind::kTable);
  expect_pattern(*p_, map, kPmd, 0x99);
}

INSTANTIATE_TEST_SUITE_P(Arches, ThpTest,
                         ::testing::Values(arch::ArchKind::kX86_64, arch::ArchKind::kArm64));

}  // namespace
}  // namespace dpmm::mm
