// The fault handler: zero-page reads, anonymous writes, COW, PROT_NONE, refcounts.
#include "mm/fault.h"

#include <gtest/gtest.h>

#include "arch/decoded_entry.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

class FaultTest : public ::testing::TestWithParam<arch::ArchKind> {
 protected:
  void SetUp() override {
    kernel_ = testing::make_test_kernel(arch::SwapNumberingKind::kLegacy, GetParam());
    free0_ = kernel_->nr_free_pages();
    proc_ = Process::create(*kernel_).value();
  }
  void TearDown() override {
    proc_.reset();
    EXPECT_EQ(kernel_->nr_free_pages(), free0_);
  }
  arch::DecodedEntry pte(VirtAddr a) {
    auto slot = proc_->mm().page_table().walk_pte(a);
    if (!slot) return arch::DecodedEntry{};
    return kernel_->codec().decode(arch::EntryLevel::kPte, slot->load());
  }
  FaultResult fault(VirtAddr a, FaultFlags f) {
    ReadLocker guard(proc_->mm().mmap_lock());
    return handle_mm_fault(proc_->mm(), a, f);
  }

  std::unique_ptr<Kernel> kernel_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> proc_;
};

TEST_P(FaultTest, ReadFaultsMapTheZeroPageReadOnly) {
  const VirtAddr a = proc_->mmap_anon(4 * kPageSize, kRw).value();
  const uint64_t free_before = kernel_->nr_free_pages();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(proc_->read_u64(a + i * kPageSize + 8).value(), 0u);
  for (int i = 0; i < 4; ++i) {
    const arch::DecodedEntry d = pte(a + i * kPageSize);
    ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
    EXPECT_EQ(d.pfn, kernel_->zero_pfn());
    EXPECT_FALSE(arch::has(d.prot, arch::Prot::kWrite));
    EXPECT_TRUE(arch::has(d.prot, arch::Prot::kSpecial));
    EXPECT_TRUE(arch::has(d.prot, arch::Prot::kAccessed));  // set by the MMU model
  }
  // Only page tables were allocated; no RSS, no reference on the zero page.
  EXPECT_EQ(kernel_->nr_free_pages(), free_before - 3);
  EXPECT_EQ(proc_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_EQ(kernel_->pfn_to_page(kernel_->zero_pfn()).value()->ref_count(), 1);
}

TEST_P(FaultTest, WriteFaultAllocatesAndContentsPersist) {
  const VirtAddr a = proc_->mmap_anon(2 * kPageSize, kRw).value();
  std::vector<std::byte> data(kPageSize + 100);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 7);
  ASSERT_TRUE(proc_->write(a + 50, data).is_ok());
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(proc_->read(a + 50, back).is_ok());
  EXPECT_EQ(back, data);
  const arch::DecodedEntry d = pte(a);
  ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite));
  EXPECT_TRUE(arch::has(d.prot, arch::Prot::kDirty));
  // The bytes are in the page the PTE names, at the right offset.
  EXPECT_EQ(kernel_->page_bytes(d.pfn)[50], data[0]);
  page::Page* p = kernel_->pfn_to_page(d.pfn).value();
  page::Folio f = page::page_folio(p);
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  EXPECT_TRUE(f.is_anon());
  EXPECT_TRUE(p->test_flag(page::PageFlag::kAnonExclusive));
  EXPECT_EQ(f.index(), a.raw() >> kPageShift);
  EXPECT_EQ(proc_->mm().rss(RssMember::kAnonPages), 2);
}

TEST_P(FaultTest, CowOfZeroPageAfterMprotectReadOnlyToReadWrite) {
  const VirtAddr a = proc_->mmap_anon(2 * kPageSize, MmapProt::kRead).value();
  EXPECT_EQ(proc_->read_u32(a).value(), 0u);
  auto w = proc_->write_u32(a, 1);
  ASSERT_TRUE(w.is_error());
  EXPECT_EQ(w.error().code(), Errno::kEFAULT);
  ASSERT_TRUE(proc_->mprotect(a, 2 * kPageSize, kRw).is_ok());
  // Still the zero page (mprotect does not make special entries writable).
  EXPECT_EQ(pte(a).pfn, kernel_->zero_pfn());
  EXPECT_FALSE(arch::has(pte(a).prot, arch::Prot::kWrite));
  ASSERT_TRUE(proc_->write_u32(a + 12, 0xdeadbeef).is_ok());
  const arch::DecodedEntry d = pte(a);
  EXPECT_NE(d.pfn, kernel_->zero_pfn());
  EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite));
  EXPECT_EQ(proc_->read_u32(a + 12).value(), 0xdeadbeefu);
  EXPECT_EQ(proc_->read_u32(a + 8).value(), 0u);
  // The zero page itself is untouched.
  for (std::byte b : kernel_->page_bytes(kernel_->zero_pfn())) ASSERT_EQ(b, std::byte{0});
  EXPECT_EQ(proc_->mm().rss(RssMember::kAnonPages), 1);
}

TEST_P(FaultTest, WriteProtectThenWriteReusesExclusivePage) {
  const VirtAddr a = proc_->mmap_anon(kPageSize, kRw).value();
  ASSERT_TRUE(proc_->write_u64(a, 77).is_ok());
  const Pfn before = pte(a).pfn;
  ASSERT_TRUE(proc_->mprotect(a, kPageSize, MmapProt::kRead).is_ok());
  EXPECT_FALSE(arch::has(pte(a).prot, arch::Prot::kWrite));
  EXPECT_EQ(proc_->write_u64(a, 1).error().code(), Errno::kEFAULT);
  ASSERT_TRUE(proc_->mprotect(a, kPageSize, kRw).is_ok());
  // An exclusive anon page gets its write bit back at once (MM_CP_TRY_CHANGE_WRITABLE).
  EXPECT_TRUE(arch::has(pte(a).prot, arch::Prot::kWrite));
  ASSERT_TRUE(proc_->write_u64(a, 78).is_ok());
  EXPECT_EQ(pte(a).pfn, before);
  EXPECT_EQ(proc_->read_u64(a).value(), 78u);
}

TEST_P(FaultTest, WpFaultOnReadOnlyExclusivePageReusesIt) {
  const VirtAddr a = proc_->mmap_anon(kPageSize, kRw).value();
  ASSERT_TRUE(proc_->write_u64(a, 5).is_ok());
  // Clear the write bit by hand, as fork or page-out would leave it.
  auto slot = proc_->mm().page_table().walk_pte(a).value();
  const arch::DecodedEntry d = pte(a);
  slot.store(kernel_->codec()
                 .make_present(arch::EntryLevel::kPte, d.pfn, arch::Prot::kUser)
                 .value());
  EXPECT_EQ(fault(a, FaultFlags::kWrite | FaultFlags::kUser).outcome, FaultOutcome::kHandled);
  EXPECT_EQ(pte(a).pfn, d.pfn);
  EXPECT_TRUE(arch::has(pte(a).prot, arch::Prot::kWrite));
  // Not exclusive and referenced by someone else: copy, with the bytes.
  page::Folio f = page::page_folio(kernel_->pfn_to_page(d.pfn).value());
  f.clear_flag(page::PageFlag::kAnonExclusive);
  page::folio_get(f);
  slot.store(kernel_->codec()
                 .make_present(arch::EntryLevel::kPte, d.pfn, arch::Prot::kUser)
                 .value());
  EXPECT_EQ(fault(a, FaultFlags::kWrite | FaultFlags::kUser).outcome, FaultOutcome::kHandled);
  EXPECT_NE(pte(a).pfn, d.pfn);
  EXPECT_EQ(proc_->read_u64(a).value(), 5u);
  EXPECT_EQ(f.ref_count(), 1);  // only our extra reference is left
  EXPECT_EQ(f.mapcount(), 0);
  page::folio_put(f);
}

TEST_P(FaultTest, ProtNoneAndUnmappedAreSigsegv) {
  const VirtAddr a = proc_->mmap_anon(2 * kPageSize, kRw).value();
  ASSERT_TRUE(proc_->write_u64(a, 9).is_ok());
  ASSERT_TRUE(proc_->mprotect(a, 2 * kPageSize, MmapProt::kNone).is_ok());
  const arch::DecodedEntry d = pte(a);
  ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(arch::has(d.prot, arch::Prot::kProtNone));
  EXPECT_FALSE(d.hw_valid);
  auto r = proc_->read_u64(a);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kEFAULT);
  EXPECT_NE(r.error().message().find("SIGSEGV"), std::string::npos);
  EXPECT_EQ(fault(a + kPageSize, FaultFlags::kUser).outcome, FaultOutcome::kSigSegv);
  EXPECT_EQ(fault(VirtAddr(0x1000), FaultFlags::kUser).outcome, FaultOutcome::kSigSegv);
  // Back to read/write: the data survived.
  ASSERT_TRUE(proc_->mprotect(a, 2 * kPageSize, kRw).is_ok());
  EXPECT_EQ(proc_->read_u64(a).value(), 9u);
}

TEST_P(FaultTest, ExecNeedsVmExec) {
  const VirtAddr a = proc_->mmap_anon(kPageSize, kRw).value();
  EXPECT_EQ(cpu_fetch(proc_->mm(), a).error().code(), Errno::kEFAULT);
  const VirtAddr x = proc_->mmap_anon(kPageSize, MmapProt::kRead | MmapProt::kExec).value();
  EXPECT_EQ(cpu_fetch(proc_->mm(), x).value(), std::byte{0});
}

INSTANTIATE_TEST_SUITE_P(Arches, FaultTest,
                         ::testing::Values(arch::ArchKind::kX86_64, arch::ArchKind::kArm64),
                         [](const auto& param_info) {
                           return param_info.param == arch::ArchKind::kX86_64 ? "x86_64" : "arm64";
                         });

}  // namespace
}  // namespace dpmm::mm
