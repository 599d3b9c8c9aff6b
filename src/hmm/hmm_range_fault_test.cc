// hmm_range_fault: every walk case, with the exact answer words in the design's numbering
// (legacy: PFNs, order shift 53; dpas designs: offsets tagged DEVICE_PRIVATE, order shift 52).
#include "hmm/hmm_range_fault.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "hmm/device_exclusive.h"
#include "hmm/hmm_test_rig.h"
#include "mm/hstate.h"
#include "mm/huge_memory.h"
#include "page/folio_lock.h"

namespace dpmm::hmm {
namespace {

using testing::HmmRig;
using testing::TestDevice;
using testing::Writable;

constexpr mm::MmapProt kRw = mm::MmapProt::kRead | mm::MmapProt::kWrite;

class HmmRangeFaultTest : public ::testing::TestWithParam<devmem::Design> {
 protected:
  void SetUp() override {
    rig_ = std::make_unique<HmmRig>(GetParam());
    dev_a_ = std::make_unique<TestDevice>(*rig_, 32, "dev-a");
    dev_b_ = std::make_unique<TestDevice>(*rig_, 32, "dev-b");
    proc_ = MUST(mm::Process::create(rig_->kernel()), "process");
  }
  void TearDown() override {
    proc_.reset();
    dev_a_.reset();
    dev_b_.reset();
    rig_.reset();
  }
  mm::Mm& mm() { return proc_->mm(); }
  HmmPfnFormat fmt() const { return rig_->format(); }

  // One hmm_range_fault call under mmap_lock over `words.size()` pages from `start`.
  Status run(VirtAddr start, std::vector<uint64_t>& words, uint64_t default_flags,
             uint64_t mask = 0, const void* owner = nullptr) {
    HmmRange r;
    r.start = start;
    r.end = start + words.size() * kPageSize;
    r.hmm_pfns = words;
    r.default_flags = default_flags;
    r.pfn_flags_mask = mask;
    r.dev_private_owner = owner;
    ReadLocker g(mm().mmap_lock());
    return hmm_range_fault(mm(), r);
  }
  uint64_t ram(VirtAddr a) { return testing::present_pfn(mm(), a).raw(); }
  uint64_t zero() { return rig_->kernel().zero_pfn().raw(); }
  // The answer for an owned device-private page.
  uint64_t device_word(page::Page* dpage, uint64_t cpu_flags) {
    return MUST(fmt().make_index(rig_->dm().page_to_pfn_or_offset(dpage)), "fits") | cpu_flags;
  }
  arch::DecodedEntry decode(VirtAddr a) {
    return rig_->kernel().codec().decode(arch::EntryLevel::kPte, testing::pte_word(mm(), a));
  }

  std::unique_ptr<HmmRig> rig_;
  std::unique_ptr<TestDevice> dev_a_;
  std::unique_ptr<TestDevice> dev_b_;
  std::unique_ptr<mm::Process> proc_;
};

// hmm_vma_handle_pmd: a PMD-mapped THP answers every subpage with its pfn and map order 9;
// the huge zero folio read-only; a write request on it faults a THP in (do_huge_zero_wp_pmd).
TEST_P(HmmRangeFaultTest, PmdLeavesAnswerOrder9) {
  constexpr uint64_t kPmd = mm::kHpagePmdSize;
  const VirtAddr raw = MUST(proc_->mmap_anon(3 * kPmd, kRw), "mmap");
  const VirtAddr a(raw.align_down(kPmd).raw() + kPmd);
  ASSERT_TRUE(proc_->madvise(a, kPmd, mm::Madvise::kHugePage).is_ok());
  EXPECT_EQ(proc_->read_u64(a).value(), 0u);  // the huge zero folio
  const uint64_t order9 = fmt().order_bits(mm::kHpagePmdOrder);
  std::vector<uint64_t> w(8, 0);
  ASSERT_TRUE(run(a + 100 * kPageSize, w, kHmmPfnReqFault).is_ok());
  const arch::DecodedEntry z = rig_->kernel().codec().decode(
      arch::EntryLevel::kPmd, mm().page_table().walk_pmd(a)->load());
  ASSERT_TRUE(rig_->kernel().is_huge_zero_pfn(z.pfn));
  for (uint64_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(w[i], (z.pfn.raw() + 100 + i) | kHmmPfnValid | order9) << i;
  EXPECT_EQ(fmt().map_order(w[0]), mm::kHpagePmdOrder);
  // A write request: the huge zero leaf is replaced by a writable THP.
  std::fill(w.begin(), w.end(), 0);
  ASSERT_TRUE(run(a + 100 * kPageSize, w, kHmmPfnReqFault | kHmmPfnReqWrite).is_ok());
  const arch::DecodedEntry t = rig_->kernel().codec().decode(
      arch::EntryLevel::kPmd, mm().page_table().walk_pmd(a)->load());
  ASSERT_EQ(t.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(rig_->kernel().is_huge_zero_pfn(t.pfn));
  for (uint64_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(w[i], (t.pfn.raw() + 100 + i) | kHmmPfnValid | kHmmPfnWrite | order9) << i;
}

// hmm_vma_handle_absent_pmd: a device-private THP of the caller answers every subpage with
// its index and map order 9 (WRITE from the entry); another owner's is faulted back to RAM
// through do_huge_pmd_device_private (migrate_to_ram with no PTE), which answers as a THP.
TEST_P(HmmRangeFaultTest, DevicePrivatePmdAnswersOrder9OrFaultsBack) {
  constexpr uint64_t kPmd = mm::kHpagePmdSize;
  TestDevice big(*rig_, mm::kHpagePmdNr, "dev-thp");
  const VirtAddr raw = MUST(proc_->mmap_anon(3 * kPmd, kRw), "mmap");
  const VirtAddr a(raw.align_down(kPmd).raw() + kPmd);
  ASSERT_TRUE(proc_->madvise(a, kPmd, mm::Madvise::kHugePage).is_ok());
  for (uint64_t i = 0; i < mm::kHpagePmdNr; ++i)
    ASSERT_TRUE(proc_->write_u64(a + i * kPageSize + 8, 0xabc0000 + i).is_ok());
  page::Page* dhead = big.plant_huge(*proc_, a, Writable::kYes);
  page::Folio df = page::page_folio(dhead);
  EXPECT_EQ(df.order().raw(), mm::kHpagePmdOrder);
  EXPECT_EQ(df.ref_count(), 1);
  EXPECT_EQ(df.entire_mapcount(), 1);
  const uint64_t order9 = fmt().order_bits(mm::kHpagePmdOrder);
  std::vector<uint64_t> w(8, 0);
  ASSERT_TRUE(run(a + 200 * kPageSize, w, kHmmPfnReqFault | kHmmPfnReqWrite, 0, big.owner()).is_ok());
  for (uint64_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(w[i], device_word(dhead + 200 + i, kHmmPfnValid | kHmmPfnWrite | order9)) << i;
  EXPECT_EQ(fmt().map_order(w[0]), mm::kHpagePmdOrder);
  EXPECT_EQ(big.migrate_to_ram_calls(), 0);
  // Snapshot by another owner: HMM_PFN_ERROR, nothing faulted.
  std::fill(w.begin(), w.end(), 0);
  ASSERT_TRUE(run(a, w, 0, 0, dev_a_->owner()).is_ok());
  for (uint64_t x : w) EXPECT_EQ(x, kHmmPfnError);
  // A fault request by another owner brings the whole THP back.
  std::fill(w.begin(), w.end(), 0);
  ASSERT_TRUE(run(a + 8 * kPageSize, w, kHmmPfnReqFault, 0, dev_a_->owner()).is_ok());
  EXPECT_EQ(big.migrate_to_ram_calls(), 1);
  EXPECT_EQ(big.frees(), 1);
  const arch::DecodedEntry t = rig_->kernel().codec().decode(
      arch::EntryLevel::kPmd, mm().page_table().walk_pmd(a)->load());
  ASSERT_EQ(t.kind, arch::DecodedEntry::Kind::kPresent);
  for (uint64_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(w[i], (t.pfn.raw() + 8 + i) | kHmmPfnValid | kHmmPfnWrite | order9) << i;
  for (uint64_t i = 0; i < mm::kHpagePmdNr; i += 31)
    EXPECT_EQ(proc_->read_u64(a + i * kPageSize + 8).value(), 0xabc0000 + i) << i;
  proc_.reset();
}

// hmm_vma_walk_hugetlb_entry: every page of a hugetlb page answers with huge_page_order (9);
// a missing page faults through hugetlb_fault (read-only at first in a private mapping), a
// write request through hugetlb_wp, which reuses the exclusive folio. make_device_exclusive
// refuses a hugetlb folio.
TEST_P(HmmRangeFaultTest, HugetlbPagesAnswerOrder9AndFaultThroughHugetlbFault) {
  constexpr uint64_t kPmd = mm::kHpagePmdSize;
  rig_->kernel().set_nr_hugepages(2);
  const VirtAddr a = MUST(proc_->mmap(VirtAddr(0), 2 * kPmd, kRw,
                                      mm::MmapFlags::kPrivate | mm::MmapFlags::kAnonymous |
                                          mm::MmapFlags::kHugetlb),
                          "mmap hugetlb");
  const uint64_t order9 = fmt().order_bits(mm::kHpagePmdOrder);
  std::vector<uint64_t> w(8, 0);
  // No PMD table yet: huge_pte_offset finds nothing, a hole answers 0.
  ASSERT_TRUE(run(a + 200 * kPageSize, w, 0).is_ok());
  for (uint64_t i = 0; i < w.size(); ++i) EXPECT_EQ(w[i], 0u) << "not faulted: " << i;
  EXPECT_EQ(rig_->kernel().hugetlb_meminfo().free, 2u);
  ASSERT_TRUE(run(a + 200 * kPageSize, w, kHmmPfnReqFault).is_ok());
  const arch::DecodedEntry r = rig_->kernel().codec().decode(
      arch::EntryLevel::kPmd, mm().page_table().walk_pmd(a)->load());
  ASSERT_EQ(r.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_FALSE(arch::has(r.prot, arch::Prot::kWrite));
  EXPECT_EQ(rig_->kernel().hugetlb_meminfo().free, 1u);
  for (uint64_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(w[i], (r.pfn.raw() + 200 + i) | kHmmPfnValid | order9) << i;
  // The second huge page is none in an existing PMD table: hugetlb_entry answers
  // pte_pfn(none) = 0 plus the offset, with the order bits and no VALID.
  std::vector<uint64_t> w2(4, 0);
  ASSERT_TRUE(run(a + kPmd + 7 * kPageSize, w2, 0).is_ok());
  for (uint64_t i = 0; i < w2.size(); ++i) EXPECT_EQ(w2[i], (7 + i) | order9) << i;
  std::fill(w.begin(), w.end(), 0);
  ASSERT_TRUE(run(a + 200 * kPageSize, w, kHmmPfnReqFault | kHmmPfnReqWrite).is_ok());
  const arch::DecodedEntry t = rig_->kernel().codec().decode(
      arch::EntryLevel::kPmd, mm().page_table().walk_pmd(a)->load());
  EXPECT_EQ(t.pfn, r.pfn) << "hugetlb_wp reused the exclusive folio";
  EXPECT_TRUE(arch::has(t.prot, arch::Prot::kWrite));
  for (uint64_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(w[i], (t.pfn.raw() + 200 + i) | kHmmPfnValid | kHmmPfnWrite | order9) << i;
  page::Folio folio = page::page_folio(MUST(rig_->kernel().pfn_to_page(t.pfn), "RAM"));
  EXPECT_TRUE(folio.is_hugetlb());
  EXPECT_EQ(folio.ref_count(), 1);
  {
    ReadLocker g(mm().mmap_lock());
    Result<DeviceExclusive> x = make_device_exclusive(mm(), a + 3 * kPageSize, nullptr);
    ASSERT_TRUE(x.is_error());
    EXPECT_EQ(x.error().code(), Errno::kEOPNOTSUPP);
  }
  EXPECT_EQ(folio.ref_count(), 1) << "the GUP reference was dropped";
  ASSERT_TRUE(proc_->munmap(a, 2 * kPmd).is_ok());
  EXPECT_EQ(rig_->kernel().hugetlb_meminfo().free, 2u);
}

TEST_P(HmmRangeFaultTest, SnapshotReportsPresentZeroAndNone) {
  const VirtAddr a = MUST(proc_->mmap_anon(4 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 11).is_ok());
  ASSERT_TRUE(proc_->write_u64(a + kPageSize, 22).is_ok());
  ASSERT_TRUE(proc_->read_u64(a + 2 * kPageSize).is_ok());  // maps the zero page
  const uint64_t faults = mm().nr_faults();
  std::vector<uint64_t> w(4, 0);
  ASSERT_TRUE(run(a, w, 0).is_ok());
  EXPECT_EQ(w[0], ram(a) | kHmmPfnValid | kHmmPfnWrite);
  EXPECT_EQ(w[1], ram(a + kPageSize) | kHmmPfnValid | kHmmPfnWrite);
  EXPECT_EQ(w[2], zero() | kHmmPfnValid);  // the zero page: its pfn, read-only
  EXPECT_EQ(w[3], 0u);                      // pte_none: not present, faultable
  EXPECT_EQ(mm().nr_faults(), faults) << "snapshot mode never faults";
  for (uint64_t x : w) EXPECT_EQ(hmm_pfn_to_map_order(fmt(), x), 0u);
}

TEST_P(HmmRangeFaultTest, SnapshotKeepsStickyInOutBits) {
  const VirtAddr a = MUST(proc_->mmap_anon(2 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 1).is_ok());
  std::vector<uint64_t> w = {kHmmPfnDmaMapped | kHmmPfnP2pdma | 0x1234, kHmmPfnP2pdmaBus};
  ASSERT_TRUE(run(a, w, 0).is_ok());
  EXPECT_EQ(w[0], kHmmPfnDmaMapped | kHmmPfnP2pdma | ram(a) | kHmmPfnValid | kHmmPfnWrite);
  EXPECT_EQ(w[1], kHmmPfnP2pdmaBus);
}

TEST_P(HmmRangeFaultTest, ReqFaultFaultsReadAndReqWriteBreaksCow) {
  const VirtAddr a = MUST(proc_->mmap_anon(3 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->read_u64(a + kPageSize).is_ok());  // zero page
  std::vector<uint64_t> w(3, 0);
  ASSERT_TRUE(run(a, w, kHmmPfnReqFault).is_ok());
  // The whole table-less hole and the none PTEs are read-faulted: zero page, read-only.
  EXPECT_EQ(w[0], zero() | kHmmPfnValid);
  EXPECT_EQ(w[1], zero() | kHmmPfnValid);
  EXPECT_EQ(w[2], zero() | kHmmPfnValid);

  std::vector<uint64_t> ww(3, 0);
  ASSERT_TRUE(run(a, ww, kHmmPfnReqFault | kHmmPfnReqWrite).is_ok());
  for (int i = 0; i < 3; ++i) {
    const VirtAddr p = a + i * kPageSize;
    EXPECT_NE(ram(p), zero());
    EXPECT_EQ(ww[i], ram(p) | kHmmPfnValid | kHmmPfnWrite) << i;
    page::Folio f = page::page_folio(testing::present_page(mm(), p));
    EXPECT_EQ(f.ref_count(), 1);
    EXPECT_EQ(f.mapcount(), 1);
  }
  EXPECT_EQ(MUST(proc_->read_u64(a + kPageSize), "read"), 0u);
}

TEST_P(HmmRangeFaultTest, PerPageRequestFaultsTheRestOfTheStep) {
  const VirtAddr a = MUST(proc_->mmap_anon(4 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 7).is_ok());  // page 0 present; 1..3 none in one table
  // Only page 2 asks for a fault; hmm_vma_fault faults from there to the end of the walk
  // step (mm/hmm.c), so page 3 is faulted too; page 1 is answered 0.
  std::vector<uint64_t> w = {0, 0, kHmmPfnReqFault, 0};
  ASSERT_TRUE(run(a, w, 0, kHmmPfnReqFault).is_ok());
  EXPECT_EQ(w[0], ram(a) | kHmmPfnValid | kHmmPfnWrite);
  EXPECT_EQ(w[1], 0u);
  EXPECT_EQ(w[2], zero() | kHmmPfnValid);
  EXPECT_EQ(w[3], zero() | kHmmPfnValid);
  EXPECT_EQ(testing::pte_word(mm(), a + kPageSize), 0u);
}

TEST_P(HmmRangeFaultTest, ReqWriteOnReadOnlyVmaIsEperm) {
  const VirtAddr a = MUST(proc_->mmap_anon(2 * kPageSize, mm::MmapProt::kRead), "mmap");
  std::vector<uint64_t> w(2, 0);
  Status s = run(a, w, kHmmPfnReqFault | kHmmPfnReqWrite);
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kEPERM);
  // A read fault is fine and reports the zero page read-only.
  std::vector<uint64_t> r(2, 0);
  ASSERT_TRUE(run(a, r, kHmmPfnReqFault).is_ok());
  EXPECT_EQ(r[0], zero() | kHmmPfnValid);
}

TEST_P(HmmRangeFaultTest, ProtNoneVmaIsErrorOrEfault) {
  const VirtAddr a = MUST(proc_->mmap_anon(3 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a + kPageSize, 5).is_ok());
  ASSERT_TRUE(proc_->mprotect(a + kPageSize, kPageSize, mm::MmapProt::kNone).is_ok());
  std::vector<uint64_t> w(3, 0);
  ASSERT_TRUE(run(a, w, 0).is_ok());
  EXPECT_EQ(w[0], 0u);
  EXPECT_EQ(w[1], kHmmPfnError);  // !VM_READ: the whole VMA is ERROR
  EXPECT_EQ(w[2], 0u);
  std::vector<uint64_t> f(3, 0);
  Status s = run(a, f, kHmmPfnReqFault);
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kEFAULT);
  // A fault requested only outside the PROT_NONE VMA succeeds.
  std::vector<uint64_t> g = {kHmmPfnReqFault, 0, kHmmPfnReqFault};
  ASSERT_TRUE(run(a, g, 0, kHmmPfnReqFault).is_ok());
  EXPECT_EQ(g[1], kHmmPfnError);
}

TEST_P(HmmRangeFaultTest, HoleOutsideVmasIsErrorOrEfault) {
  const VirtAddr a = MUST(proc_->mmap_anon(3 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->munmap(a + kPageSize, kPageSize).is_ok());
  std::vector<uint64_t> w(3, 0);
  ASSERT_TRUE(run(a, w, 0).is_ok());
  EXPECT_EQ(w[0], 0u);
  EXPECT_EQ(w[1], kHmmPfnError);
  EXPECT_EQ(w[2], 0u);
  std::vector<uint64_t> f(3, 0);
  Status s = run(a, f, kHmmPfnReqFault);
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kEFAULT);
  // Words below the failure hold answers.
  EXPECT_EQ(f[0], zero() | kHmmPfnValid);
}

TEST_P(HmmRangeFaultTest, BadArgumentsAreEinval) {
  const VirtAddr a = MUST(proc_->mmap_anon(kPageSize, kRw), "mmap");
  std::vector<uint64_t> w(1, 0);
  HmmRange r;
  r.start = a;
  r.end = a;
  r.hmm_pfns = w;
  ReadLocker g(mm().mmap_lock());
  EXPECT_EQ(hmm_range_fault(mm(), r).error().code(), Errno::kEINVAL);
  r.end = a + 2 * kPageSize;  // two pages, one word
  EXPECT_EQ(hmm_range_fault(mm(), r).error().code(), Errno::kEINVAL);
}

TEST_P(HmmRangeFaultTest, OwnedDevicePrivateIsReportedNeverFaulted) {
  const VirtAddr a = MUST(proc_->mmap_anon(2 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 0xaaaa).is_ok());
  ASSERT_TRUE(proc_->write_u64(a + kPageSize, 0xbbbb).is_ok());
  page::Page* d0 = dev_a_->plant(*proc_, a, Writable::kYes);
  page::Page* d1 = dev_a_->plant(*proc_, a + kPageSize, Writable::kNo);
  const uint64_t dp = fmt().device_private;  // 0 in legacy

  std::vector<uint64_t> w(2, 0);
  ASSERT_TRUE(run(a, w, kHmmPfnReqFault | kHmmPfnReqWrite, 0, dev_a_->owner()).is_ok());
  // Reported as they are, even the read-only one asked for write (the owner check comes first).
  EXPECT_EQ(w[0], device_word(d0, kHmmPfnValid | kHmmPfnWrite | dp));
  EXPECT_EQ(w[1], device_word(d1, kHmmPfnValid | dp));
  EXPECT_EQ(dev_a_->migrate_to_ram_calls(), 0);
  EXPECT_EQ((w[0] & kHmmPfnDevicePrivate) != 0, devmem::uses_device_private_space(GetParam()));
  EXPECT_EQ(MUST(hmm_pfn_to_page(rig_->dm(), w[0]), "resolves"), d0);
  EXPECT_EQ(MUST(hmm_pfn_to_page(rig_->dm(), w[1]), "resolves"), d1);
  EXPECT_EQ(page::page_folio(d0).ref_count(), 1);
  EXPECT_EQ(page::page_folio(d0).mapcount(), 1);

  // Another owner (or none) sees them not present in a snapshot...
  std::vector<uint64_t> s(2, 0);
  ASSERT_TRUE(run(a, s, 0, 0, dev_b_->owner()).is_ok());
  EXPECT_EQ(s[0], 0u);
  EXPECT_EQ(s[1], 0u);
  EXPECT_EQ(dev_a_->migrate_to_ram_calls(), 0);
}

TEST_P(HmmRangeFaultTest, ForeignDevicePrivateIsFaultedBackThroughItsDriver) {
  const VirtAddr a = MUST(proc_->mmap_anon(2 * kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 0x1111).is_ok());
  ASSERT_TRUE(proc_->write_u64(a + kPageSize, 0x2222).is_ok());
  dev_a_->plant(*proc_, a, Writable::kYes);
  dev_a_->plant(*proc_, a + kPageSize, Writable::kNo);
  std::vector<uint64_t> w(2, 0);
  ASSERT_TRUE(run(a, w, kHmmPfnReqFault, 0, dev_b_->owner()).is_ok());
  EXPECT_EQ(dev_a_->migrate_to_ram_calls(), 2);
  EXPECT_EQ(dev_a_->frees(), 2);  // both device pages were freed once back in RAM
  EXPECT_EQ(w[0], ram(a) | kHmmPfnValid | kHmmPfnWrite);
  EXPECT_EQ(w[1], ram(a + kPageSize) | kHmmPfnValid);  // a read-only entry comes back read-only
  EXPECT_EQ(MUST(proc_->read_u64(a), "read"), 0x1111u);
  EXPECT_EQ(MUST(proc_->read_u64(a + kPageSize), "read"), 0x2222u);
  EXPECT_EQ(page::page_folio(testing::present_page(mm(), a)).ref_count(), 1);
}

TEST_P(HmmRangeFaultTest, DeviceExclusiveIsZeroInSnapshotAndRestoredOnFault) {
  const VirtAddr a = MUST(proc_->mmap_anon(kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 0x5151).is_ok());
  const uint64_t pfn = ram(a);
  {
    ReadLocker g(mm().mmap_lock());
    DeviceExclusive x = MUST(make_device_exclusive(mm(), a, nullptr), "exclusive");
    page::folio_unlock(x.folio);
    page::folio_put(x.folio);
  }
  ASSERT_TRUE(arch::softleaf_is_device_exclusive(decode(a).leaf));
  std::vector<uint64_t> w(1, 0);
  ASSERT_TRUE(run(a, w, 0).is_ok());
  EXPECT_EQ(w[0], 0u);
  ASSERT_TRUE(run(a, w, kHmmPfnReqFault).is_ok());
  EXPECT_EQ(w[0], pfn | kHmmPfnValid | kHmmPfnWrite);  // restored writable: exclusive anon page
  EXPECT_EQ(MUST(proc_->read_u64(a), "read"), 0x5151u);
}

TEST_P(HmmRangeFaultTest, MigrationEntryIsZeroInSnapshot) {
  const VirtAddr a = MUST(proc_->mmap_anon(kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 3).is_ok());
  const uint64_t word = testing::pte_word(mm(), a);
  const Pfn pfn = testing::present_pfn(mm(), a);
  mm::EntrySlot slot = mm().page_table().walk_pte(a).value();
  const arch::Softleaf mig =
      MUST(arch::make_writable_migration_entry(rig_->kernel().softleaf_format(), pfn), "entry");
  {
    SpinLocker g(mm().page_table().lock());
    slot.store(MUST(rig_->kernel().codec().make_swap(arch::EntryLevel::kPte, mig,
                                                      arch::SwpBit::kNone),
                    "encodes"));
  }
  std::vector<uint64_t> w(1, kHmmPfnDmaMapped);
  ASSERT_TRUE(run(a, w, 0).is_ok());
  EXPECT_EQ(w[0], kHmmPfnDmaMapped);
  {
    SpinLocker g(mm().page_table().lock());
    slot.store(word);
  }
}

TEST_P(HmmRangeFaultTest, HwpoisonIsZeroOrEfault) {
  const VirtAddr a = MUST(proc_->mmap_anon(kPageSize, kRw), "mmap");
  ASSERT_TRUE(proc_->write_u64(a, 3).is_ok());
  const uint64_t word = testing::pte_word(mm(), a);
  const Pfn pfn = testing::present_pfn(mm(), a);
  mm::EntrySlot slot = mm().page_table().walk_pte(a).value();
  const arch::Softleaf hw =
      MUST(arch::make_hwpoison_entry(rig_->kernel().softleaf_format(), pfn), "entry");
  {
    SpinLocker g(mm().page_table().lock());
    slot.store(MUST(rig_->kernel().codec().make_swap(arch::EntryLevel::kPte, hw,
                                                      arch::SwpBit::kNone),
                    "encodes"));
  }
  std::vector<uint64_t> w(1, 0);
  ASSERT_TRUE(run(a, w, 0).is_ok());
  EXPECT_EQ(w[0], 0u);
  Status s = run(a, w, kHmmPfnReqFault);
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kEFAULT);
  SpinLocker g(mm().page_table().lock());
  slot.store(word);
}

TEST_P(HmmRangeFaultTest, InvalidatedRangeIsEbusy) {
  const VirtAddr a = MUST(proc_->mmap_anon(4 * kPageSize, kRw), "mmap");
  struct Ops final : MmuIntervalNotifierOps {
    bool invalidate(MmuIntervalNotifier& sub, const mm::MmuNotifierRange&,
                    uint64_t cur_seq) override {
      MutexLocker g(lock);
      sub.set_seq(cur_seq);
      return true;
    }
    Mutex lock{LockRank::kDeviceMutex};
  } ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(sub.insert(mm(), a, 4 * kPageSize, ops).is_ok());
  std::vector<uint64_t> w(4, 0);
  HmmRange r;
  r.notifier = &sub;
  r.start = a;
  r.end = a + 4 * kPageSize;
  r.hmm_pfns = w;
  r.default_flags = kHmmPfnReqFault;
  r.notifier_seq = sub.read_begin();
  ASSERT_TRUE(proc_->munmap(a + 3 * kPageSize, kPageSize).is_ok());  // invalidates
  {
    ReadLocker g(mm().mmap_lock());
    Status s = hmm_range_fault(mm(), r);
    ASSERT_TRUE(s.is_error());
    EXPECT_EQ(s.error().code(), Errno::kEBUSY);
  }
  r.end = a + 3 * kPageSize;
  r.hmm_pfns = std::span<uint64_t>(w).first(3);
  r.notifier_seq = sub.read_begin();
  {
    ReadLocker g(mm().mmap_lock());
    ASSERT_TRUE(hmm_range_fault(mm(), r).is_ok());
  }
  {
    MutexLocker g(ops.lock);
    EXPECT_FALSE(sub.read_retry(r.notifier_seq));
  }
  EXPECT_EQ(w[0], zero() | kHmmPfnValid);
  sub.remove();
}

INSTANTIATE_TEST_SUITE_P(Designs, HmmRangeFaultTest, ::testing::ValuesIn(devmem::kAllDesigns),
                         testing::design_param_name);

}  // namespace
}  // namespace dpmm::hmm
