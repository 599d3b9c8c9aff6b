// mmap, munmap and mprotect: errno cases, VMA splitting/merging, pages and tables freed.
#include <gtest/gtest.h>

#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapFlags kAnon = MmapFlags::kPrivate | MmapFlags::kAnonymous;
constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

class MmapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_ = testing::make_test_kernel();
    free0_ = kernel_->nr_free_pages();
    proc_ = Process::create(*kernel_).value();
  }
  void TearDown() override {
    proc_.reset();
    // Every data page and page-table page went back to the buddy allocator.
    EXPECT_EQ(kernel_->nr_free_pages(), free0_);
  }
  Errno mmap_errno(VirtAddr a, uint64_t len, MmapProt p, MmapFlags f) {
    auto r = proc_->mmap(a, len, p, f);
    EXPECT_TRUE(r.is_error()) << "mmap unexpectedly succeeded at " << r.value().raw();
    return r.is_error() ? r.error().code() : Errno::kEPERM;
  }
  std::vector<Vma> vmas() { return proc_->mm().snapshot_vmas(); }

  std::unique_ptr<Kernel> kernel_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> proc_;
};

TEST_F(MmapTest, ErrnoCases) {
  EXPECT_EQ(mmap_errno(VirtAddr(0), 0, kRw, kAnon), Errno::kEINVAL);
  EXPECT_EQ(mmap_errno(VirtAddr(0x10001000 + 1), 4096, kRw, kAnon | MmapFlags::kFixed),
            Errno::kEINVAL);
  EXPECT_EQ(mmap_errno(VirtAddr(0), 4096, kRw, MmapFlags::kAnonymous), Errno::kEINVAL);
  EXPECT_EQ(mmap_errno(VirtAddr(0), 4096, kRw, MmapFlags::kSharedValidate |
                       MmapFlags::kAnonymous | static_cast<MmapFlags>(0x200000)),
            Errno::kEOPNOTSUPP);
  EXPECT_EQ(mmap_errno(VirtAddr(0), 4096, kRw, MmapFlags::kPrivate), Errno::kEBADF);
  EXPECT_EQ(mmap_errno(VirtAddr(0), uint64_t{1} << 48, kRw, kAnon), Errno::kENOMEM);
  EXPECT_EQ(mmap_errno(kernel_->task_size(), 4096, kRw, kAnon | MmapFlags::kFixed),
            Errno::kENOMEM);
  EXPECT_EQ(mmap_errno(VirtAddr(0), 4096, static_cast<MmapProt>(0x10), kAnon), Errno::kEINVAL);
  EXPECT_TRUE(vmas().empty());
}

TEST_F(MmapTest, TopDownPlacementAndHints) {
  const VirtAddr a = proc_->mmap_anon(3 * kPageSize + 1, kRw).value();
  EXPECT_EQ(a, kernel_->mmap_base() - 4 * kPageSize);  // length rounded up to 4 pages
  const VirtAddr b = proc_->mmap_anon(kPageSize, MmapProt::kRead).value();
  EXPECT_EQ(b, a - kPageSize);
  // A free hint is taken (rounded up to a page); a used one is not.
  const VirtAddr c = proc_->mmap(VirtAddr(0x10000123), kPageSize, kRw, kAnon).value();
  EXPECT_EQ(c, VirtAddr(0x10001000));
  const VirtAddr d = proc_->mmap(VirtAddr(0x10001000), kPageSize, kRw, kAnon).value();
  EXPECT_EQ(d, b - kPageSize);  // top-down again, below b
  auto v = vmas();
  ASSERT_EQ(v.size(), 4u);  // d and b differ in protection: no merge
  EXPECT_EQ(v[0].start, c);
  EXPECT_TRUE(has(v[0].flags, VmFlags::kMayWrite));
  EXPECT_EQ(v[0].pgoff, c.raw() >> kPageShift);
}

TEST_F(MmapTest, FixedNoreplaceAndFixedReplace) {
  const VirtAddr a(0x20000000);
  ASSERT_EQ(proc_->mmap(a, 4 * kPageSize, kRw, kAnon | MmapFlags::kFixedNoreplace).value(), a);
  auto r = proc_->mmap(a + kPageSize, kPageSize, kRw, kAnon | MmapFlags::kFixedNoreplace);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kEEXIST);
  ASSERT_TRUE(proc_->write_u64(a + kPageSize, 42).is_ok());
  // MAP_FIXED over the middle replaces it: the written page is gone, the new one reads 0.
  ASSERT_EQ(proc_->mmap(a + kPageSize, kPageSize, MmapProt::kRead, kAnon | MmapFlags::kFixed)
                .value(),
            a + kPageSize);
  EXPECT_EQ(proc_->read_u64(a + kPageSize).value(), 0u);
  EXPECT_EQ(vmas().size(), 3u);
  EXPECT_EQ(proc_->mm().rss(RssMember::kAnonPages), 0);
}

TEST_F(MmapTest, MunmapErrnoAndHoles) {
  EXPECT_EQ(proc_->munmap(VirtAddr(0x1001), kPageSize).error().code(), Errno::kEINVAL);
  EXPECT_EQ(proc_->munmap(VirtAddr(0x100000), 0).error().code(), Errno::kEINVAL);
  EXPECT_EQ(proc_->munmap(kernel_->task_size(), 2 * kPageSize).error().code(), Errno::kEINVAL);
  EXPECT_TRUE(proc_->munmap(VirtAddr(0x100000), kPageSize).is_ok());  // nothing mapped: fine
}

TEST_F(MmapTest, PartialMunmapSplitsAndFreesExactlyThosePages) {
  const uint64_t n = 16;
  const VirtAddr a = proc_->mmap_anon(n * kPageSize, kRw).value();
  for (uint64_t i = 0; i < n; ++i) ASSERT_TRUE(proc_->write_u64(a + i * kPageSize, 100 + i).is_ok());
  EXPECT_EQ(proc_->mm().rss(RssMember::kAnonPages), 16);
  const uint64_t free_before = kernel_->nr_free_pages();
  ASSERT_TRUE(proc_->munmap(a + 4 * kPageSize, 3 * kPageSize).is_ok());
  EXPECT_EQ(kernel_->nr_free_pages(), free_before + 3);  // the tables are still needed
  EXPECT_EQ(proc_->mm().rss(RssMember::kAnonPages), 13);
  auto v = vmas();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].start, a);
  EXPECT_EQ(v[0].end, a + 4 * kPageSize);
  EXPECT_EQ(v[1].start, a + 7 * kPageSize);
  EXPECT_EQ(v[1].pgoff, (a + 7 * kPageSize).raw() >> kPageShift);
  for (uint64_t i = 0; i < n; ++i) {
    auto r = proc_->read_u64(a + i * kPageSize);
    if (i >= 4 && i < 7) {
      ASSERT_TRUE(r.is_error());
      EXPECT_EQ(r.error().code(), Errno::kEFAULT);
    } else {
      EXPECT_EQ(r.value(), 100 + i);
    }
  }
  // Unmapping the rest frees its pages and all three lower tables.
  const uint64_t free_mid = kernel_->nr_free_pages();
  ASSERT_TRUE(proc_->munmap(a, n * kPageSize).is_ok());
  EXPECT_EQ(kernel_->nr_free_pages(), free_mid + 13 + 3);
  EXPECT_EQ(proc_->mm().page_table().nr_tables(), 0u);
  EXPECT_TRUE(vmas().empty());
}

TEST_F(MmapTest, MprotectSplitsMergesAndErrno) {
  const VirtAddr a = proc_->mmap_anon(8 * kPageSize, kRw).value();
  ASSERT_TRUE(proc_->mprotect(a + 2 * kPageSize, 2 * kPageSize, MmapProt::kRead).is_ok());
  auto v = vmas();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_FALSE(has(v[1].flags, VmFlags::kWrite));
  EXPECT_TRUE(has(v[1].flags, VmFlags::kAccount));
  ASSERT_TRUE(proc_->mprotect(a + 2 * kPageSize, 2 * kPageSize, kRw).is_ok());
  EXPECT_EQ(vmas().size(), 1u);  // merged back
  EXPECT_EQ(proc_->mprotect(a + 1, kPageSize, kRw).error().code(), Errno::kEINVAL);
  EXPECT_EQ(proc_->mprotect(a, kPageSize, static_cast<MmapProt>(0x40)).error().code(),
            Errno::kEINVAL);
  EXPECT_EQ(proc_->mprotect(a + 8 * kPageSize, kPageSize, kRw).error().code(), Errno::kENOMEM);
  // A range running into a hole: the part before it changes, then ENOMEM.
  EXPECT_EQ(proc_->mprotect(a + 6 * kPageSize, 4 * kPageSize, MmapProt::kRead).error().code(),
            Errno::kENOMEM);
  v = vmas();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[1].start, a + 6 * kPageSize);
  EXPECT_FALSE(has(v[1].flags, VmFlags::kWrite));
  EXPECT_TRUE(proc_->mprotect(a, 0, kRw).is_ok());
}

TEST_F(MmapTest, TeardownFreesEverything) {
  const VirtAddr a = proc_->mmap_anon(600 * kPageSize, kRw).value();  // spans two PTE tables
  ASSERT_TRUE(proc_->fill(a, 600 * kPageSize, std::byte{7}).is_ok());
  const VirtAddr b = proc_->mmap(VirtAddr(0x40000000), 4 * kPageSize, MmapProt::kRead,
                                 kAnon | MmapFlags::kFixed).value();
  EXPECT_EQ(proc_->read_u32(b).value(), 0u);
  EXPECT_GE(proc_->mm().page_table().nr_tables(), 5u);
  EXPECT_LT(kernel_->nr_free_pages(), free0_ - 600);
  // TearDown checks the counts after the Process goes.
}

}  // namespace
}  // namespace dpmm::mm
