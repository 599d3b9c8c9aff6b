// Real threads on one Mm: faults and stores to shared and private pages while another thread
// maps, protects and unmaps neighbouring ranges (same page tables).
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "base/thread.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr MmapFlags kFixedAnon = MmapFlags::kPrivate | MmapFlags::kAnonymous | MmapFlags::kFixed;

TEST(MmConcurrencyTest, FaultsAndWritesRaceWithMunmapAndMprotect) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  {
    auto p = Process::create(*k).value();
    constexpr uint64_t kPages = 64;
    constexpr int kWriters = 4;
    constexpr int kRounds = 20;
    const VirtAddr shared(0x40000000);
    const VirtAddr churn = shared + kPages * kPageSize;  // same PTE table as `shared`
    ASSERT_TRUE(p->mmap(shared, kPages * kPageSize, kRw, kFixedAnon).is_ok());
    std::atomic<bool> stop{false};
    std::atomic<int> churn_errors{0};
    std::atomic<int> reader_errors{0};
    {
      std::vector<Thread> threads;
      for (int t = 0; t < kWriters; ++t) {
        threads.emplace_back("writer", [&, t] {
          // Each writer owns one word in every page (overlapping pages, disjoint words), and
          // one private page of its own.
          for (int round = 1; round <= kRounds; ++round) {
            for (uint64_t pg = 0; pg < kPages; ++pg) {
              const uint64_t v = (uint64_t(t) << 48) | (uint64_t(round) << 16) | pg;
              ASSERT_TRUE(p->write_u64(shared + pg * kPageSize + t * 8, v).is_ok());
            }
            const VirtAddr mine = shared + (kPages - 1 - t) * kPageSize + 512;
            std::vector<std::byte> buf(64, std::byte(round));
            ASSERT_TRUE(p->write(mine, buf).is_ok());
          }
        });
      }
      threads.emplace_back("reader", [&] {
        while (!stop.load()) {
          for (uint64_t pg = 0; pg < kPages; ++pg) {
            for (int t = 0; t < kWriters; ++t) {
              const uint64_t v = p->read_u64(shared + pg * kPageSize + t * 8).value();
              // Zero, or a whole value of that writer for that page (never torn or misplaced).
              if (v != 0 && ((v >> 48) != uint64_t(t) || (v & 0xffff) != pg)) ++reader_errors;
            }
          }
        }
      });
      threads.emplace_back("churn", [&] {
        for (int i = 0; !stop.load() && i < 200; ++i) {
          const uint64_t n = 1 + (i % 7);
          if (p->mmap(churn, n * kPageSize, kRw, kFixedAnon).is_error()) ++churn_errors;
          if (p->write_u64(churn + (n - 1) * kPageSize, i).is_error()) ++churn_errors;
          if (p->mprotect(churn, n * kPageSize, MmapProt::kRead).is_error()) ++churn_errors;
          auto r = p->read_u64(churn + (n - 1) * kPageSize);
          if (r.is_error() || *r != uint64_t(i)) ++churn_errors;
          if (p->write_u64(churn, 1).is_ok()) ++churn_errors;  // read-only now
          if (p->munmap(churn, n * kPageSize).is_error()) ++churn_errors;
          if (p->read_u64(churn).is_ok()) ++churn_errors;  // unmapped now
        }
      });
      // Writers finish first; then stop the reader and churner.
      for (int t = 0; t < kWriters; ++t) threads[t].join();
      stop = true;
    }
    EXPECT_EQ(churn_errors.load(), 0);
    EXPECT_EQ(reader_errors.load(), 0);
    for (uint64_t pg = 0; pg < kPages; ++pg) {
      for (int t = 0; t < kWriters; ++t) {
        const uint64_t want = (uint64_t(t) << 48) | (uint64_t(kRounds) << 16) | pg;
        ASSERT_EQ(p->read_u64(shared + pg * kPageSize + t * 8).value(), want);
      }
    }
    for (int t = 0; t < kWriters; ++t) {
      std::vector<std::byte> buf(64);
      ASSERT_TRUE(p->read(shared + (kPages - 1 - t) * kPageSize + 512, buf).is_ok());
      for (std::byte b : buf) ASSERT_EQ(b, std::byte(kRounds));
    }
    EXPECT_EQ(p->mm().rss(RssMember::kAnonPages), int64_t(kPages));
  }
  EXPECT_EQ(k->nr_free_pages(), free0);
}

TEST(MmConcurrencyTest, ManyThreadsFaultTheSamePages) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  {
    auto p = Process::create(*k).value();
    constexpr uint64_t kPages = 128;
    const VirtAddr a = p->mmap_anon(kPages * kPageSize, kRw).value();
    {
      std::vector<Thread> threads;
      for (int t = 0; t < 6; ++t) {
        threads.emplace_back("faulter", [&, t] {
          for (uint64_t pg = 0; pg < kPages; ++pg) {
            // Half the threads read first (zero page, then COW), half write at once.
            if (t % 2 == 0) {
              ASSERT_EQ(p->read_u32(a + pg * kPageSize + 64 + t * 4).value(), 0u);
            }
            ASSERT_TRUE(p->write_u32(a + pg * kPageSize + t * 4, uint32_t(pg * 10 + t)).is_ok());
          }
        });
      }
    }
    for (uint64_t pg = 0; pg < kPages; ++pg) {
      for (int t = 0; t < 6; ++t)
        ASSERT_EQ(p->read_u32(a + pg * kPageSize + t * 4).value(), uint32_t(pg * 10 + t));
    }
    // Exactly one page per address despite the racing faults (losers freed theirs).
    EXPECT_EQ(p->mm().rss(RssMember::kAnonPages), int64_t(kPages));
  }
  EXPECT_EQ(k->nr_free_pages(), free0);
}

// THP ranges under fire: writers fault and store into PMD-mapped THPs (read-first writers
// go through the huge zero folio), a puncher maps, partly unmaps (split_huge_pmd), protects
// and unmaps other THP ranges, and a forker forks repeatedly (copy_huge_pmd, COW splits when
// either side writes) and checks the child's snapshot.
TEST(MmConcurrencyTest, ThpFaultsWritesAndPartialMunmapRaceWithFork) {
  auto k = testing::make_test_kernel(arch::SwapNumberingKind::kLegacy, arch::ArchKind::kX86_64,
                                     ThpPolicy::kAlways);
  const uint64_t free0 = k->nr_free_pages();
  {
    auto p = Process::create(*k).value();
    constexpr uint64_t kPmd = uint64_t{1} << 21;
    constexpr uint64_t kThps = 2;
    constexpr int kWriters = 3;
    constexpr int kRounds = 100;
    constexpr uint64_t kStride = 16 * kPageSize;  // a word every 16 pages of each THP
    const VirtAddr shared(0x40000000);
    const VirtAddr punch = shared + kThps * kPmd;
    ASSERT_TRUE(p->mmap(shared, kThps * kPmd, kRw, kFixedAnon).is_ok());
    std::atomic<int> errors{0};
    {
      std::vector<Thread> threads;
      for (int t = 0; t < kWriters; ++t) {
        threads.emplace_back("writer", [&, t] {
          for (int round = 1; round <= kRounds; ++round) {
            for (uint64_t off = 0; off < kThps * kPmd; off += kStride) {
              const VirtAddr a = shared + off + t * 8;
              if (t == 0 && round == 1 && p->read_u64(a).value() != 0) ++errors;
              const uint64_t v = (uint64_t(t) << 48) | (uint64_t(round) << 32) | (off >> 12);
              if (p->write_u64(a, v).is_error()) ++errors;
            }
          }
        });
      }
      threads.emplace_back("puncher", [&] {
        for (int i = 0; i < 100; ++i) {
          if (p->mmap(punch, kPmd, kRw, kFixedAnon).is_error()) ++errors;
          if (p->fill(punch, kPmd, std::byte(i + 1)).is_error()) ++errors;
          const uint64_t hole = (1 + i % 500) * kPageSize;
          if (p->munmap(punch + hole, kPageSize).is_error()) ++errors;
          if (p->read_u64(punch + hole).is_ok()) ++errors;  // unmapped now
          const uint64_t want = 0x0101010101010101u * uint64_t(uint8_t(i + 1));
          auto before = p->read_u64(punch + hole - 8);
          auto after = p->read_u64(punch + hole + kPageSize);
          if (before.is_error() || *before != want || after.is_error() || *after != want)
            ++errors;
          // The hole is in the first half; protect the second (a VMA split inside a THP).
          if (p->mprotect(punch + kPmd / 2, kPmd / 2, MmapProt::kRead).is_error()) ++errors;
          if (p->write_u64(punch + kPmd / 2, 1).is_ok()) ++errors;  // read-only now
          if (p->write_u64(punch, 2).is_error()) ++errors;
          if (p->munmap(punch, kPmd).is_error()) ++errors;
        }
      });
      threads.emplace_back("forker", [&] {
        for (int i = 0; i < 12; ++i) {
          auto child = p->fork();
          if (child.is_error()) {
            ++errors;
            continue;
          }
          for (uint64_t off = 0; off < kThps * kPmd; off += kStride) {
            for (int t = 0; t < kWriters; ++t) {
              const uint64_t v = (*child)->read_u64(shared + off + t * 8).value();
              if (v != 0 && ((v >> 48) != uint64_t(t) || (v & 0xffffffff) != (off >> 12)))
                ++errors;
            }
          }
          // The child's own write COWs its side only.
          if ((*child)->write_u64(shared + 8 * kPageSize + 64, 0xc0ffee).is_error()) ++errors;
          if ((*child)->read_u64(shared + 8 * kPageSize + 64).value() != 0xc0ffee) ++errors;
        }
      });
    }
    EXPECT_EQ(errors.load(), 0);
    for (uint64_t off = 0; off < kThps * kPmd; off += kStride) {
      for (int t = 0; t < kWriters; ++t) {
        const uint64_t want = (uint64_t(t) << 48) | (uint64_t(kRounds) << 32) | (off >> 12);
        ASSERT_EQ(p->read_u64(shared + off + t * 8).value(), want);
      }
    }
    EXPECT_EQ(p->read_u64(shared + 8 * kPageSize + 64).value(), 0u) << "the children's writes";
  }
  EXPECT_EQ(k->nr_free_pages(), free0);
}

}  // namespace
}  // namespace dpmm::mm
