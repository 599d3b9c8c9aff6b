// Every page comes back: processes map, write, fork, munmap and exit in a seeded random order
// until 10^5 pages have been written (faults, COW copies, THPs and their splits), checking
// the bytes every process should see along the way; when the last one exits the buddy
// allocator's free count is exactly what it was before the first mmap (issue 3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "mm/huge_memory.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

// A process and what it should read: the first word of every page it wrote, and its
// mappings (start, pages).
struct Tracked {
  std::unique_ptr<Process> p;
  std::map<uint64_t, uint64_t> words;  // page address -> value of its first word
  std::vector<std::pair<VirtAddr, uint64_t>> maps;
};

uint64_t mapped_pages(const std::vector<Tracked>& ts) {
  uint64_t n = 0;
  for (const Tracked& t : ts)
    for (const auto& [a, pages] : t.maps) n += pages;
  return n;
}

// Reads back `samples` written words (at random: the first written page at or after a random
// page of a random mapping), or all of them.
void expect_words(Tracked& t, std::mt19937_64& rng, uint64_t samples) {
  if (t.words.empty()) return;
  auto check = [&](uint64_t addr, uint64_t want) {
    Result<uint64_t> got = t.p->read_u64(VirtAddr(addr));
    ASSERT_TRUE(got.is_ok()) << std::hex << addr;
    ASSERT_EQ(*got, want) << std::hex << addr;
  };
  if (samples >= t.words.size()) {
    for (const auto& [addr, want] : t.words) check(addr, want);
    return;
  }
  for (uint64_t i = 0; i < samples && !t.maps.empty(); ++i) {
    const auto [a, pages] = t.maps[rng() % t.maps.size()];
    const auto it = t.words.lower_bound((a + (rng() % pages) * kPageSize).raw());
    if (it != t.words.end()) check(it->first, it->second);
  }
}

class PageAccountingTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(PageAccountingTest, RandomMapWriteForkUnmapExitReturnsEveryPage) {
  constexpr uint64_t kTargetWrites = 100'000;
  constexpr uint64_t kMaxMapped = 6'000;  // pages mapped over all processes (RAM: 64 Ki)
  std::unique_ptr<Kernel> k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  std::mt19937_64 rng(GetParam());
  std::vector<Tracked> ts;
  ts.push_back({MUST(Process::create(*k), "process"), {}, {}});
  uint64_t writes = 0;
  for (uint64_t step = 0; writes < kTargetWrites; ++step) {
    SCOPED_TRACE(::testing::Message() << "step " << step);
    Tracked& t = ts[rng() % ts.size()];
    // Weights out of 16: mmap 4, write 6, fork 1, munmap 3, exit 1, check 1.
    switch (rng() % 16) {
      case 0:
      case 1:
      case 2:
      case 3: {  // mmap: base pages, or a range holding one 2 MiB-aligned THP-eligible block
        if (mapped_pages(ts) > kMaxMapped) break;
        const bool thp = rng() % 4 == 0;
        const uint64_t pages = thp ? 2 * kHpagePmdNr : 1 + rng() % 256;
        const VirtAddr a = MUST(t.p->mmap_anon(pages * kPageSize, kRw), "mmap");
        if (thp) {
          ASSERT_TRUE(
              t.p->madvise(a.align_up(kHpagePmdSize), kHpagePmdSize, Madvise::kHugePage).is_ok());
        }
        t.maps.emplace_back(a, pages);
        break;
      }
      case 4:
      case 5:
      case 6:
      case 7:
      case 8:
      case 9: {  // write the first word of a run of pages of one mapping
        if (t.maps.empty()) break;
        const auto [a, pages] = t.maps[rng() % t.maps.size()];
        const uint64_t first = rng() % pages;
        const uint64_t n = 1 + rng() % (pages - first);
        for (uint64_t i = first; i < first + n; ++i) {
          const uint64_t addr = (a + i * kPageSize).raw();
          const uint64_t v = rng();
          ASSERT_TRUE(t.p->write_u64(VirtAddr(addr), v).is_ok());
          t.words[addr] = v;
        }
        writes += n;
        break;
      }
      case 10: {  // fork: the child sees what the parent wrote, then each goes its own way
        if (ts.size() >= 4) break;
        Tracked child{MUST(t.p->fork(), "fork"), t.words, t.maps};
        expect_words(child, rng, 32);
        ts.push_back(std::move(child));
        break;
      }
      case 11:
      case 12:
      case 13: {  // munmap part of a mapping (a THP in it splits or goes whole)
        if (t.maps.empty()) break;
        const size_t m = rng() % t.maps.size();
        const auto [a, pages] = t.maps[m];
        const uint64_t first = rng() % pages;
        const uint64_t n = 1 + rng() % (pages - first);
        ASSERT_TRUE(t.p->munmap(a + first * kPageSize, n * kPageSize).is_ok());
        t.words.erase(t.words.lower_bound((a + first * kPageSize).raw()),
                      t.words.lower_bound((a + (first + n) * kPageSize).raw()));
        t.maps.erase(t.maps.begin() + static_cast<std::ptrdiff_t>(m));
        if (first > 0) t.maps.emplace_back(a, first);
        if (first + n < pages) t.maps.emplace_back(a + (first + n) * kPageSize, pages - first - n);
        break;
      }
      case 14: {  // exit, any process but the last
        if (ts.size() < 2) break;
        expect_words(t, rng, 64);
        const size_t i = static_cast<size_t>(&t - ts.data());
        ts.erase(ts.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
      default:
        expect_words(t, rng, 64);
        break;
    }
  }
  // Every word of every process, then every process exits: all pages back.
  for (Tracked& t : ts) expect_words(t, rng, UINT64_MAX);
  ts.clear();
  EXPECT_EQ(k->nr_free_pages(), free0) << "every page back in the buddy allocator";
}

INSTANTIATE_TEST_SUITE_P(Seeds, PageAccountingTest, ::testing::Values(1));

}  // namespace
}  // namespace dpmm::mm
