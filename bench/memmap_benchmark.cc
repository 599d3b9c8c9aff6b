// pfn_to_page / page_to_pfn (page/memmap.h) over one node's RAM, on x86_64 and on arm64.
//
// Each node has 1 GiB of RAM with every descriptor initialised (page_to_pfn reads the section
// number from the descriptor's flags). "seq" walks the RAM's PFNs in order, wrapping at its
// end; "random" follows a fixed table of 64 Ki PFNs spread uniformly over it. The lookup
// itself is arithmetic on the section table and touches no descriptor, so only the
// "read_flags" variants (and page_to_pfn, which reads the section from the flags) feel the
// 16 MiB of descriptors missing the cache.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "bench_nodes.h"
#include "page/memmap.h"
#include "page/node.h"

namespace dpmm::bench {
namespace {

using arch::ArchKind;

constexpr uint64_t kRamBytes = 1 * kGiB;
constexpr size_t kTableSize = size_t{1} << 16;

struct MemmapFixture {
  std::unique_ptr<page::Node> node;
  Pfn start;
  uint64_t nr_pages = 0;
  std::vector<Pfn> random_pfns;          // kTableSize entries
  std::vector<page::Page*> random_pages; // the descriptors of random_pfns
};

MemmapFixture build(ArchKind kind) {
  MemmapFixture f;
  f.node = make_node(kind, kRamBytes, page::DeferredInit::kYes);
  f.node->deferred_init_all();
  f.start = f.node->config().ram.front().start;
  f.nr_pages = f.node->config().ram.front().pages().raw();
  uint64_t x = 0x9e3779b97f4a7c15ull;  // xorshift64, fixed seed: the same table every run
  for (size_t i = 0; i < kTableSize; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const Pfn pfn = f.start + PageCount(x % f.nr_pages);
    f.random_pfns.push_back(pfn);
    f.random_pages.push_back(f.node->memmap().pfn_to_page_unchecked(pfn));
  }
  return f;
}

// Built once per arch and kept for the process: the benchmarks only read it.
const MemmapFixture& fixture(ArchKind kind) {
  static const MemmapFixture x86 = build(ArchKind::kX86_64);
  static const MemmapFixture arm = build(ArchKind::kArm64);
  return kind == ArchKind::kX86_64 ? x86 : arm;
}

void BM_PfnToPageCheckedSeq(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  uint64_t i = 0;
  for (auto _ : state) {
    Result<page::Page*> p = mm.pfn_to_page(f.start + PageCount(i));
    benchmark::DoNotOptimize(p);
    if (++i == f.nr_pages) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PfnToPageCheckedRandom(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  size_t i = 0;
  for (auto _ : state) {
    Result<page::Page*> p = mm.pfn_to_page(f.random_pfns[i++ & (kTableSize - 1)]);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PfnToPageUncheckedSeq(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  uint64_t i = 0;
  for (auto _ : state) {
    page::Page* p = mm.pfn_to_page_unchecked(f.start + PageCount(i));
    benchmark::DoNotOptimize(p);
    if (++i == f.nr_pages) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PfnToPageUncheckedRandom(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  size_t i = 0;
  for (auto _ : state) {
    page::Page* p = mm.pfn_to_page_unchecked(f.random_pfns[i++ & (kTableSize - 1)]);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

// The lookup followed by the first thing every caller does with the descriptor, reading its
// flags (here the zone id): unlike the lookup alone, the random walk now misses the cache.
void BM_PfnToPageReadFlagsSeq(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  uint64_t i = 0;
  for (auto _ : state) {
    page::ZoneType z = mm.pfn_to_page_unchecked(f.start + PageCount(i))->zone_id();
    benchmark::DoNotOptimize(z);
    if (++i == f.nr_pages) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PfnToPageReadFlagsRandom(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  size_t i = 0;
  for (auto _ : state) {
    page::ZoneType z = mm.pfn_to_page_unchecked(f.random_pfns[i++ & (kTableSize - 1)])->zone_id();
    benchmark::DoNotOptimize(z);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PageToPfnCheckedRandom(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  size_t i = 0;
  for (auto _ : state) {
    Result<Pfn> pfn = mm.page_to_pfn(f.random_pages[i++ & (kTableSize - 1)]);
    benchmark::DoNotOptimize(pfn);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PageToPfnUncheckedRandom(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  size_t i = 0;
  for (auto _ : state) {
    Pfn pfn = mm.page_to_pfn_unchecked(f.random_pages[i++ & (kTableSize - 1)]);
    benchmark::DoNotOptimize(pfn);
  }
  state.SetItemsProcessed(state.iterations());
}

// The refused lookups: EFAULT for a PFN outside the vmemmap window (on arm64 the top of the
// 48-bit space, where a pre-eeb8fdfcf090 device-private window lands) and ENOENT for a hole.
// Both build an error message, so they show what a caller pays for probing with the checked
// form.
void BM_PfnToPageOutsideWindow(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  const Pfn outside = f.node->config().window.end;
  for (auto _ : state) {
    Result<page::Page*> p = mm.pfn_to_page(outside);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PfnToPageHole(benchmark::State& state, ArchKind kind) {
  const MemmapFixture& f = fixture(kind);
  const page::Memmap& mm = f.node->memmap();
  const Pfn hole = f.start + PageCount(f.nr_pages) + mm.pages_per_section();
  for (auto _ : state) {
    Result<page::Page*> p = mm.pfn_to_page(hole);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

constexpr double kMinTime = 0.2;

BENCHMARK_CAPTURE(BM_PfnToPageCheckedSeq, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageCheckedSeq, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageCheckedRandom, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageCheckedRandom, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageUncheckedSeq, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageUncheckedSeq, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageUncheckedRandom, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageUncheckedRandom, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageReadFlagsSeq, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageReadFlagsSeq, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageReadFlagsRandom, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageReadFlagsRandom, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PageToPfnCheckedRandom, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PageToPfnCheckedRandom, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PageToPfnUncheckedRandom, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PageToPfnUncheckedRandom, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageOutsideWindow, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageOutsideWindow, arm64, ArchKind::kArm64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageHole, x86_64, ArchKind::kX86_64)->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_PfnToPageHole, arm64, ArchKind::kArm64)->MinTime(kMinTime);

}  // namespace
}  // namespace dpmm::bench

BENCHMARK_MAIN();
