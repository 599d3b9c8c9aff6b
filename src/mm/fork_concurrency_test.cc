// fork racing with writers in the parent: every child sees, in each page, a snapshot the
// writers' protocol allows, and its own writes never reach the parent (or the reverse).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <span>
#include <thread>
#include <vector>

#include "base/thread.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;
constexpr uint64_t kWords = kPageSize / 8;

TEST(ForkConcurrencyTest, ChildrenSeeConsistentSnapshotsWhileTheParentWrites) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  {
    auto parent = Process::create(*k).value();
    constexpr int kWriters = 3;
    constexpr int kForks = 16;
    const VirtAddr a = parent->mmap_anon((kWriters + 1) * kPageSize, kRw).value();
    // Page kWriters is written by the children only (then COW-copied away from the parent).
    ASSERT_TRUE(parent->write_u64(a + kWriters * kPageSize, 0).is_ok());
    std::atomic<bool> stop{false};
    std::array<std::atomic<uint64_t>, kWriters> sweeps{};
    std::atomic<int> errors{0};
    {
      std::vector<Thread> threads;
      for (int t = 0; t < kWriters; ++t) {
        threads.emplace_back("writer", [&, t] {
          // Protocol: sweep n writes n into word 0, 1, ..., last, in that order.
          const VirtAddr page = a + t * kPageSize;
          for (uint64_t n = 1; !stop.load(); ++n) {
            for (uint64_t w = 0; w < kWords; ++w) {
              if (parent->write_u64(page + w * 8, n).is_error()) ++errors;
            }
            sweeps[t].store(n);
          }
        });
      }
      threads.emplace_back("forker", [&] {
        // Every writer's page must be a real anonymous page before the forks start: a writer
        // the scheduler has not run yet would leave its page on the zero page.
        for (int t = 0; t < kWriters; ++t) {
          while (sweeps[t].load() == 0) std::this_thread::yield();
        }
        for (int i = 0; i < kForks; ++i) {
          std::array<uint64_t, kWriters> before{};
          for (int t = 0; t < kWriters; ++t) before[t] = sweeps[t].load();
          auto child = parent->fork().value();
          for (int t = 0; t < kWriters; ++t) {
            // A prefix of sweep n+1 over sweep n, never older than what finished before fork.
            const VirtAddr page = a + t * kPageSize;
            std::array<uint64_t, kWords> words{};
            if (child->read(page, std::as_writable_bytes(std::span(words))).is_error()) ++errors;
            const uint64_t first = words[0];
            const uint64_t last = words[kWords - 1];
            if (last < before[t] || first < last || first > last + 1) ++errors;
            for (uint64_t w = 1; w < kWords; ++w) {
              if (words[w] > words[w - 1] || (words[w] != first && words[w] != last)) ++errors;
            }
            // The child's own write stays in the child.
            if (child->write_u64(page, 1ull << 60).is_error()) ++errors;
            if (child->read_u64(page).value() != 1ull << 60) ++errors;
          }
          if (child->write_u64(a + kWriters * kPageSize, i + 1).is_error()) ++errors;
          if (parent->read_u64(a + kWriters * kPageSize).value() != 0) ++errors;
          // A grandchild now and then, exiting after its child.
          if (i % 8 == 0) {
            auto grandchild = child->fork().value();
            child.reset();
            if (grandchild->read_u64(a + kWriters * kPageSize).value() != uint64_t(i + 1))
              ++errors;
          }
        }
        stop = true;
      });
    }
    EXPECT_EQ(errors.load(), 0);
    for (int t = 0; t < kWriters; ++t) {
      const uint64_t n = sweeps[t].load();
      for (uint64_t w = 0; w < kWords; ++w)
        ASSERT_EQ(parent->read_u64(a + t * kPageSize + w * 8).value(), n);
    }
    EXPECT_EQ(parent->mm().rss(RssMember::kAnonPages), kWriters + 1);
  }
  EXPECT_EQ(k->nr_free_pages(), free0);
}

}  // namespace
}  // namespace dpmm::mm
