// Real threads on shared memory and files: two processes writing one MAP_SHARED|MAP_ANONYMOUS
// region, and faulting readers racing with truncation of a mapped shmem file (the folio-lock
// protocol between shmem_fault and truncate_pagecache), and with mremap moves.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "base/thread.h"
#include "mm/process.h"
#include "mm/shmem.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

TEST(FileConcurrencyTest, ParentAndChildWriteOneSharedAnonymousRegion) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  {
    auto parent = Process::create(*k).value();
    constexpr uint64_t kPages = 32;
    const VirtAddr a = parent->mmap(VirtAddr(0), kPages * kPageSize, kRw,
                                    MmapFlags::kShared | MmapFlags::kAnonymous).value();
    auto child = parent->fork().value();
    {
      std::vector<Thread> threads;
      for (int t = 0; t < 2; ++t) {
        Process* p = t == 0 ? parent.get() : child.get();
        threads.emplace_back("writer", [p, a, t] {
          for (int round = 1; round <= 20; ++round) {
            for (uint64_t pg = 0; pg < kPages; ++pg) {
              ASSERT_TRUE(p->write_u64(a + pg * kPageSize + 8 * t, (uint64_t(round) << 8) | pg).is_ok());
            }
          }
        });
      }
    }
    // Each process sees the other's final words: one page cache behind both.
    for (uint64_t pg = 0; pg < kPages; ++pg) {
      EXPECT_EQ(parent->read_u64(a + pg * kPageSize + 8).value(), (uint64_t{20} << 8) | pg);
      EXPECT_EQ(child->read_u64(a + pg * kPageSize).value(), (uint64_t{20} << 8) | pg);
    }
  }
  EXPECT_EQ(k->nr_free_pages(), free0);
}

TEST(FileConcurrencyTest, FaultingReadersRaceWithTruncation) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  {
    constexpr uint64_t kPages = 16;
    auto p = Process::create(*k).value();
    auto f = ShmemFile::create(*k, kPages * kPageSize).value();
    const VirtAddr a = p->mmap_file(VirtAddr(0), kPages * kPageSize, kRw, MmapFlags::kShared, f).value();
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::atomic<int> sigbus{0};
    {
      std::vector<Thread> threads;
      for (int t = 0; t < 2; ++t) {
        threads.emplace_back("toucher", [&, t] {
          while (!stop.load()) {
            for (uint64_t pg = 0; pg < kPages; ++pg) {
              const VirtAddr at = a + pg * kPageSize + 8 * t;
              if (p->write_u64(at, pg + 1).is_error()) {
                ++sigbus;  // past EOF for the moment
                continue;
              }
              Result<uint64_t> v = p->read_u64(at);
              // Our own word, or zero when truncation took the page in between.
              if (v.is_ok() && *v != pg + 1 && *v != 0) ++bad;
            }
          }
        });
      }
      threads.emplace_back("truncate", [&] {
        for (int round = 0; round < 30; ++round) {
          ASSERT_TRUE(f->ftruncate((round % 4) * kPageSize).is_ok());
          ASSERT_TRUE(f->ftruncate(kPages * kPageSize).is_ok());
        }
        stop.store(true);
      });
    }
    EXPECT_EQ(bad.load(), 0);
    // Nothing leaked: every cached page is mapped at most once, its references are the
    // cache's, ours and the mapping's, and the shmem RSS counts exactly the mapped pages.
    int64_t mapped = 0;
    for (uint64_t pg = 0; pg < kPages; ++pg) {
      if (auto folio = f->page_cache().get_folio(pg)) {
        EXPECT_LE(folio->mapcount(), 1);
        EXPECT_EQ(folio->ref_count(), 2 + folio->mapcount());
        mapped += folio->mapcount();
        page::folio_put(*folio);
      }
    }
    EXPECT_EQ(p->mm().rss(RssMember::kShmemPages), mapped);
  }
  EXPECT_EQ(k->nr_free_pages(), free0);
}

TEST(FileConcurrencyTest, ReadersRaceWithMremapMoves) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  {
    constexpr uint64_t kPages = 8;
    auto p = Process::create(*k).value();
    const VirtAddr a = p->mmap_anon(kPages * kPageSize, kRw).value();
    const VirtAddr b = a - 64 * kPageSize;
    for (uint64_t pg = 0; pg < kPages; ++pg) ASSERT_TRUE(p->write_u64(a + pg * kPageSize, pg + 7).is_ok());
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    {
      std::vector<Thread> threads;
      threads.emplace_back("reader", [&] {
        while (!stop.load()) {
          for (VirtAddr base : {a, b}) {
            for (uint64_t pg = 0; pg < kPages; ++pg) {
              Result<uint64_t> v = p->read_u64(base + pg * kPageSize);
              // Where the VMA is, the bytes moved with it; elsewhere nothing is mapped.
              if (v.is_ok() && *v != pg + 7) ++bad;
            }
          }
        }
      });
      threads.emplace_back("mover", [&] {
        VirtAddr at = a;
        for (int round = 0; round < 40; ++round) {
          const VirtAddr to = at == a ? b : a;
          ASSERT_EQ(p->mremap(at, kPages * kPageSize, kPages * kPageSize,
                              MremapFlags::kMayMove | MremapFlags::kFixed, to).value(), to);
          at = to;
        }
        stop.store(true);
      });
    }
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(p->mm().rss(RssMember::kAnonPages), static_cast<int64_t>(kPages));
  }
  EXPECT_EQ(k->nr_free_pages(), free0);
}

}  // namespace
}  // namespace dpmm::mm
