#include "phys/backing_store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/thread.h"
#include "phys/builtin_machines.h"

namespace dpmm::phys {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

PhysRange R(uint64_t start, uint64_t end) { return PhysRange{PhysAddr(start), PhysAddr(end)}; }

// VmRSS of this process from /proc/self/status, in bytes.
uint64_t host_rss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

TEST(BackingStore, HugeRamCostsOnlyTouchedPages) {
  // 256 GiB of simulated RAM: 4 GiB low, 252 GiB from 4 GiB.
  const std::vector<PhysRange> ram{R(0x1000, 0xffff'ffff), R(0x1'0000'0000, 0x3f'ffff'ffff)};
  auto store = BackingStore::create(ram);
  ASSERT_TRUE(store.is_ok()) << store.error().to_string();
  BackingStore& s = **store;
  EXPECT_EQ(s.total_bytes(), 256 * kGiB - 0x1000);
  EXPECT_EQ(s.resident_bytes(), 0u);
  const uint64_t rss_before = host_rss();

  const std::vector<PhysAddr> spots{PhysAddr(0x1000), PhysAddr(0xffff'f000),
                                    PhysAddr(0x1'0000'0000), PhysAddr(0x20'1234'5000),
                                    PhysAddr(0x3f'ffff'f000)};
  for (size_t i = 0; i < spots.size(); ++i) {
    auto page = s.page_bytes(Pfn::from_phys(spots[i]));
    ASSERT_TRUE(page.is_ok());
    ASSERT_EQ(page->size(), kPageSize);
    std::memset(page->data(), static_cast<int>(0x40 + i), page->size());
  }
  for (size_t i = 0; i < spots.size(); ++i) {
    auto b = s.bytes(spots[i] + 100);
    ASSERT_TRUE(b.is_ok());
    EXPECT_EQ(b->size(), kPageSize - 100);
    EXPECT_EQ(static_cast<int>((*b)[0]), static_cast<int>(0x40 + i));
    EXPECT_EQ(static_cast<int>((*b)[b->size() - 1]), static_cast<int>(0x40 + i));
  }
  // Exactly the five pages are resident; the host's RSS grew by about that (allowing for the
  // test's own allocations, far below one 2 MiB huge page).
  EXPECT_EQ(s.resident_bytes(), 5 * kPageSize);
  EXPECT_LT(host_rss() - std::min(host_rss(), rss_before), 512 * 1024u);

  // discard() gives the pages back; they read as zeros again.
  ASSERT_TRUE(s.discard(Pfn::from_phys(spots[3]), PageCount(1)).is_ok());
  EXPECT_EQ(s.resident_bytes(), 4 * kPageSize);
  EXPECT_EQ(static_cast<int>((*s.bytes(spots[3]))[0]), 0);
  EXPECT_EQ(static_cast<int>((*s.bytes(spots[2]))[0]), 0x42);
}

TEST(BackingStore, NonRamAddressesAreRefused) {
  auto store = BackingStore::create(std::vector<PhysRange>{R(0x1000, 0x9fbff), R(0x10'0000, 0x1f'ffff)});
  ASSERT_TRUE(store.is_ok());
  BackingStore& s = **store;
  // The partial page at 0x9f000..0x9fbff is not kept.
  EXPECT_EQ(s.ranges(), (std::vector<PhysRange>{R(0x1000, 0x9efff), R(0x10'0000, 0x1f'ffff)}));
  EXPECT_EQ(s.bytes(PhysAddr(0x0)).error().code(), Errno::kEFAULT);
  EXPECT_EQ(s.bytes(PhysAddr(0x9f000)).error().code(), Errno::kEFAULT);
  EXPECT_EQ(s.page_bytes(Pfn(0x200)).error().code(), Errno::kEFAULT);
  EXPECT_NE(s.bytes(PhysAddr(0x50)).error().message().find("P0x50 is not RAM"), std::string::npos);
  EXPECT_TRUE(s.bytes(PhysAddr(0x1f'ffff)).is_ok());
  // A discard must stay inside one range.
  EXPECT_EQ(s.discard(Pfn(0x9e), PageCount(4)).error().code(), Errno::kEFAULT);
  EXPECT_TRUE(s.discard(Pfn(0x100), PageCount(0x100)).is_ok());
  // Overlapping ranges are refused.
  EXPECT_EQ(BackingStore::create(std::vector<PhysRange>{R(0x0, 0x1fff), R(0x1000, 0x2fff)})
                .error()
                .code(),
            Errno::kEINVAL);
}

TEST(BackingStore, ThreadsUseDifferentPagesAtOnce) {
  Machine m = MUST(builtin_machine("workstation-46bit"), "built in");
  auto store = BackingStore::create(m.system_ram());
  ASSERT_TRUE(store.is_ok());
  BackingStore& s = **store;
  // Every RAM range of this machine is whole pages.
  EXPECT_EQ(s.total_bytes(), m.system_ram_bytes());
  constexpr int kThreads = 4;
  constexpr int kPagesEach = 64;
  const uint64_t base_pfn = 0x100000;  // 4 GiB
  {
    std::vector<Thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back("writer", [&, t] {
        for (int i = 0; i < kPagesEach; ++i) {
          auto p = s.page_bytes(Pfn(base_pfn + static_cast<uint64_t>(i * kThreads + t) * 512));
          ASSERT_TRUE(p.is_ok());
          std::memset(p->data(), t + 1, p->size());
        }
      });
    }
  }
  for (int i = 0; i < kThreads * kPagesEach; ++i) {
    auto p = s.page_bytes(Pfn(base_pfn + static_cast<uint64_t>(i) * 512));
    EXPECT_EQ(static_cast<int>((*p)[kPageSize / 2]), i % kThreads + 1);
  }
  EXPECT_EQ(s.resident_bytes(), uint64_t{kThreads * kPagesEach} * kPageSize);
}

}  // namespace
}  // namespace dpmm::phys
