// Real threads on hugetlb mappings of one Mm: first-touch faults of the same huge pages race
// (hugetlb_fault's fault mutex lets one thread map each page, from its reservation), while
// another thread maps, writes, write-protects and unmaps a second hugetlb mapping. And shared
// hugetlbfs faults from two processes racing with truncation of the file.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "arch/decoded_entry.h"
#include "base/thread.h"
#include "mm/hstate.h"
#include "mm/hugetlbfs.h"
#include "mm/page_table.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr MmapFlags kHugeAnon = MmapFlags::kPrivate | MmapFlags::kAnonymous | MmapFlags::kHugetlb;
constexpr uint64_t kHuge = kHpagePmdSize;

TEST(HugetlbConcurrencyTest, FirstTouchFaultsRaceWithMapProtectUnmap) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  k->set_nr_hugepages(6);
  {
    auto p = Process::create(*k).value();
    constexpr uint64_t kHugePages = 4;
    constexpr int kWriters = 4;
    constexpr int kRounds = 3;
    constexpr uint64_t kStride = 16 * kPageSize;  // pages touched per huge page: 128
    const VirtAddr a = p->mmap(VirtAddr(0), kHugePages * kHuge, kRw, kHugeAnon).value();
    EXPECT_EQ(k->hugetlb_meminfo().rsvd, kHugePages);
    std::atomic<int> reader_errors{0};
    std::atomic<int> churn_errors{0};
    std::atomic<bool> stop{false};
    {
      std::vector<Thread> threads;
      for (int t = 0; t < kWriters; ++t) {
        threads.emplace_back("writer", [&, t] {
          for (int round = 1; round <= kRounds; ++round) {
            for (uint64_t off = 0; off < kHugePages * kHuge; off += kStride) {
              const uint64_t v = (uint64_t(t) << 48) | (uint64_t(round) << 32) | off;
              ASSERT_TRUE(p->write_u64(a + off + t * 8, v).is_ok());
            }
          }
        });
      }
      threads.emplace_back("reader", [&] {
        while (!stop.load()) {
          for (uint64_t off = 0; off < kHugePages * kHuge; off += kStride) {
            for (int t = 0; t < kWriters; ++t) {
              const uint64_t v = p->read_u64(a + off + t * 8).value();
              if (v != 0 && ((v >> 48) != uint64_t(t) || (v & 0xffffffffu) != off))
                ++reader_errors;
            }
          }
        }
      });
      threads.emplace_back("churn", [&] {
        for (int i = 0; i < 10; ++i) {
          Result<VirtAddr> b = p->mmap(VirtAddr(0), kHuge, kRw, kHugeAnon);
          if (b.is_error()) {
            ++churn_errors;
            continue;
          }
          if (p->write_u64(*b + 8 * i, 0xb0 + i).is_error()) ++churn_errors;
          if (p->mprotect(*b, kHuge, MmapProt::kRead).is_error()) ++churn_errors;
          if (p->read_u64(*b + 8 * i).value() != uint64_t(0xb0 + i)) ++churn_errors;
          if (p->write_u64(*b, 1).is_ok()) ++churn_errors;  // read-only now
          if (p->munmap(*b, kHuge).is_error()) ++churn_errors;
        }
      });
      for (size_t i = 0; i < threads.size(); ++i) {
        if (threads[i].name() == "reader") continue;
        threads[i].join();
      }
      stop.store(true);
    }
    EXPECT_EQ(reader_errors.load(), 0);
    EXPECT_EQ(churn_errors.load(), 0);
    // One folio per huge page, each mapped once, every reservation used, the churn's page back.
    const HugetlbMeminfo m = k->hugetlb_meminfo();
    EXPECT_EQ(m.total, 6u);
    EXPECT_EQ(m.free, 6u - kHugePages);
    EXPECT_EQ(m.rsvd, 0u);
    for (uint64_t h = 0; h < kHugePages; ++h) {
      const uint64_t word = p->mm().page_table().walk_pmd(a + h * kHuge)->load();
      const arch::DecodedEntry d = k->codec().decode(arch::EntryLevel::kPmd, word);
      ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
      page::Folio f = page::page_folio(k->pfn_to_page(d.pfn).value());
      EXPECT_EQ(f.ref_count(), 1);
      EXPECT_EQ(f.mapcount(), 1);
    }
    for (uint64_t off = 0; off < kHugePages * kHuge; off += kStride) {
      for (int t = 0; t < kWriters; ++t) {
        const uint64_t want = (uint64_t(t) << 48) | (uint64_t(kRounds) << 32) | off;
        ASSERT_EQ(p->read_u64(a + off + t * 8).value(), want);
      }
    }
  }
  EXPECT_EQ(k->hugetlb_meminfo().free, 6u);
  k->set_nr_hugepages(0);
  EXPECT_EQ(k->nr_free_pages(), free0);
}

// Two processes fault and write one shared hugetlbfs file from several threads while another
// thread truncates it to nothing and grows it back: every access either sees a consistent
// word or is SIGBUS past EOF, and when everything is closed every page and reservation is
// back in the pool.
TEST(HugetlbConcurrencyTest, SharedFaultsRaceWithTruncation) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  k->set_nr_hugepages(4);
  {
    constexpr uint64_t kHugePages = 2;
    auto file = HugetlbfsFile::create(*k, kHugePages * kHuge).value();
    auto p = Process::create(*k).value();
    auto q = Process::create(*k).value();
    const VirtAddr a =
        p->mmap_file(VirtAddr(0), kHugePages * kHuge, kRw, MmapFlags::kShared, file, 0).value();
    const VirtAddr b =
        q->mmap_file(VirtAddr(0), kHugePages * kHuge, kRw, MmapFlags::kShared, file, 0).value();
    EXPECT_EQ(k->hugetlb_meminfo().rsvd, kHugePages);
    std::atomic<int> bad{0};
    std::atomic<bool> stop{false};
    {
      std::vector<Thread> threads;
      for (int t = 0; t < 2; ++t) {
        Process* proc = t == 0 ? p.get() : q.get();
        const VirtAddr base = t == 0 ? a : b;
        threads.emplace_back("writer", [&, proc, base, t] {
          for (int i = 0; i < 200 && !stop.load(); ++i) {
            const uint64_t off = (uint64_t(i) % kHugePages) * kHuge + uint64_t(t) * 8;
            const uint64_t v = (uint64_t(t + 1) << 32) | uint64_t(i);
            if (proc->write_u64(base + off, v).is_error()) continue;  // SIGBUS past EOF
            Result<uint64_t> got = proc->read_u64(base + off);
            // Truncation may zero the page in between; anything else is wrong.
            if (got.is_ok() && *got != v && *got != 0 && (*got >> 32) != uint64_t(t + 1)) ++bad;
          }
        });
      }
      threads.emplace_back("truncate", [&] {
        for (int i = 0; i < 20; ++i) {
          if (file->ftruncate(0).is_error()) ++bad;
          if (file->ftruncate(kHugePages * kHuge).is_error()) ++bad;
        }
      });
      for (Thread& th : threads) th.join();
    }
    EXPECT_EQ(bad.load(), 0);
    // The file's pages and the regions agree with the pool.
    const HugetlbMeminfo m = k->hugetlb_meminfo();
    EXPECT_EQ(m.free, 4u - file->nr_cached());
    EXPECT_EQ(m.rsvd, file->nr_regions() - file->nr_cached());
    p.reset();
    q.reset();
    EXPECT_EQ(k->hugetlb_meminfo().free, 4u - file->nr_cached());
    file.reset();
    EXPECT_EQ(k->hugetlb_meminfo().free, 4u);
    EXPECT_EQ(k->hugetlb_meminfo().rsvd, 0u);
  }
  k->set_nr_hugepages(0);
  EXPECT_EQ(k->nr_free_pages(), free0);
}

}  // namespace
}  // namespace dpmm::mm
