// CPU threads reading and writing while another thread migrates the same pages to the device
// and back, under every design: every value a thread wrote is the value it reads back.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/thread.h"
#include "migrate/test_driver.h"
#include "mm/huge_memory.h"

namespace dpmm::migrate {
namespace {

using testing::kRw;
using testing::TestDevice;

const int kOwner = 0;

class MigrateConcurrencyTest : public ::testing::TestWithParam<devmem::Design> {};

TEST_P(MigrateConcurrencyTest, CpuAccessRacesMigrationBothWays) {
  auto dk = testing::make_device_kernel(GetParam());
  const uint64_t free0 = dk->kernel().nr_free_pages();
  {
    TestDevice dev(*dk, devmem::MemoryType::kDevicePrivate, 64, &kOwner);
    auto p = mm::Process::create(dk->kernel()).value();
    constexpr uint64_t kPages = 4;
    constexpr int kCpus = 2;
    constexpr int kRounds = 120;
    const VirtAddr a = p->mmap_anon(kPages * kPageSize, kRw).value();
    ASSERT_TRUE(p->fill(a, kPages * kPageSize, std::byte{0}).is_ok());
    std::atomic<bool> stop{false};
    std::atomic<int> errors{0};
    std::atomic<uint64_t> migrated_to_device{0};
    std::atomic<uint64_t> cpu_sweeps{0};
    std::atomic<int> started{0};
    std::vector<Thread> threads;
    for (int t = 0; t < kCpus; ++t) {
      threads.emplace_back("cpu", [&, t] {
        // Thread t owns word t of every page: it writes n, then must read n back.
        for (uint64_t n = 1; n == 1 || !stop.load(); ++n) {
          for (uint64_t i = 0; i < kPages; ++i) {
            const VirtAddr w = a + i * kPageSize + uint64_t(t) * 8;
            if (p->write_u64(w, n).is_error()) ++errors;
            Result<uint64_t> got = p->read_u64(w);
            if (got.is_error() || *got != n) ++errors;
          }
          cpu_sweeps.fetch_add(1);
          if (n == 1) started.fetch_add(1);
        }
      });
    }
    threads.emplace_back("migrator", [&] {
      // Start once the CPUs run, so the two sides overlap.
      while (started.load() < kCpus) std::this_thread::yield();
      for (int r = 0; r < kRounds; ++r) {
        migrated_to_device += dev.migrate_to_device(p->mm(), a, kPages).migrated;
        // Every other round the CPUs' faults bring the pages back (migrate_to_ram).
        if (r % 2 == 1) {
          dev.migrate_to_system(p->mm(), a, kPages);
        } else {
          std::this_thread::yield();
        }
      }
      stop.store(true);
    });
    threads.clear();  // joins
    EXPECT_EQ(errors.load(), 0);
    EXPECT_GT(migrated_to_device.load(), 0u);
    EXPECT_GT(cpu_sweeps.load(), uint64_t{kCpus});
    EXPECT_GT(dev.faults.load(), 0);
    // Final contents: each CPU word holds its thread's last value (nonzero), the rest zero.
    for (uint64_t i = 0; i < kPages; ++i) {
      for (uint64_t w = 0; w < kPageSize / 8; ++w) {
        const uint64_t v = *p->read_u64(a + i * kPageSize + w * 8);
        if (w < kCpus) {
          EXPECT_NE(v, 0u);
        } else {
          EXPECT_EQ(v, 0u);
        }
      }
    }
    // Every device page that went to a CPU fault or a migration back is free again.
    p.reset();
    EXPECT_EQ(dev.nr_free(), dev.nr_pages());
  }
  EXPECT_EQ(dk->kernel().nr_free_pages(), free0);
}

// The same race over a THP: the first migration splits it (PMD, then folio) under the CPUs'
// feet, and a collapser turns the range back into a THP with MADV_COLLAPSE now and then
// (swapping device pages back in through migrate_to_ram).
TEST_P(MigrateConcurrencyTest, CpuAccessRacesMigrationAndCollapseOfAThp) {
  auto dk = testing::make_device_kernel(GetParam());
  const uint64_t free0 = dk->kernel().nr_free_pages();
  {
    constexpr uint64_t kPmd = mm::kHpagePmdSize;
    TestDevice dev(*dk, devmem::MemoryType::kDevicePrivate, 64, &kOwner);
    auto p = mm::Process::create(dk->kernel()).value();
    constexpr uint64_t kPages = 8;  // the migrated window, at the start of the THP
    constexpr int kCpus = 2;
    constexpr int kRounds = 40;
    const VirtAddr raw = p->mmap_anon(3 * kPmd, kRw).value();
    const VirtAddr a(raw.align_down(kPmd).raw() + kPmd);
    ASSERT_TRUE(p->madvise(a, kPmd, mm::Madvise::kHugePage).is_ok());
    ASSERT_TRUE(p->fill(a, kPmd, std::byte{0}).is_ok());
    ASSERT_TRUE(mm::pmd_trans_huge(dk->kernel(), p->mm().page_table().walk_pmd(a)->load()));
    std::atomic<bool> stop{false};
    std::atomic<int> errors{0};
    std::atomic<int> started{0};
    std::atomic<int> collapsed{0};
    std::vector<Thread> threads;
    for (int t = 0; t < kCpus; ++t) {
      threads.emplace_back("cpu", [&, t] {
        for (uint64_t n = 1; n == 1 || !stop.load(); ++n) {
          for (uint64_t i = 0; i < kPages; ++i) {
            const VirtAddr w = a + i * kPageSize + uint64_t(t) * 8;
            if (p->write_u64(w, n).is_error()) ++errors;
            Result<uint64_t> got = p->read_u64(w);
            if (got.is_error() || *got != n) ++errors;
          }
          // A word far from the window, in the same THP.
          const VirtAddr far = a + kPmd - kPageSize + uint64_t(t) * 8;
          if (p->write_u64(far, n).is_error()) ++errors;
          if (n == 1) started.fetch_add(1);
        }
      });
    }
    threads.emplace_back("migrator", [&] {
      while (started.load() < kCpus) std::this_thread::yield();
      for (int r = 0; r < kRounds; ++r) {
        dev.migrate_to_device(p->mm(), a, kPages);
        if (r % 2 == 1) dev.migrate_to_system(p->mm(), a, kPages);
        if (r % 8 == 7 && p->madvise(a, kPmd, mm::Madvise::kCollapse).is_ok()) ++collapsed;
      }
      stop.store(true);
    });
    threads.clear();  // joins
    EXPECT_EQ(errors.load(), 0);
    for (uint64_t i = 0; i < kPages; ++i) {
      for (int t = 0; t < kCpus; ++t) EXPECT_NE(*p->read_u64(a + i * kPageSize + t * 8), 0u);
      EXPECT_EQ(*p->read_u64(a + i * kPageSize + kCpus * 8), 0u);
    }
    EXPECT_NE(*p->read_u64(a + kPmd - kPageSize), 0u);
    p.reset();
    EXPECT_EQ(dev.nr_free(), dev.nr_pages());
  }
  EXPECT_EQ(dk->kernel().nr_free_pages(), free0);
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, MigrateConcurrencyTest,
                         ::testing::ValuesIn(devmem::kAllDesigns), testing::design_test_name);

}  // namespace
}  // namespace dpmm::migrate
