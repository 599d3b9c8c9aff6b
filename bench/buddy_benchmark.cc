// The buddy allocator through Node::alloc_pages / free_pages (page/node.h, page/zone.h), and
// building a node with deferred struct page init.
//
// The allocation benchmarks share one x86_64 node of 1 GiB (all ZONE_NORMAL), every page
// handed to the buddy up front (DeferredInit::kNo) so that no iteration pays for deferred
// growth. "pair" allocates and frees one block per iteration, so each free merges the block
// back with its buddies as far as they are free (the kernel's per-CPU page lists, which would
// absorb that, are not modelled). "batch" allocates 64 blocks, then frees them. The two-thread variants contend on the zone lock; their times are wall time.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <memory>

#include "bench_nodes.h"
#include "page/node.h"

namespace dpmm::bench {
namespace {

using arch::ArchKind;

// Shared by every allocation benchmark and thread; each benchmark returns what it took.
page::Node& shared_node() {
  static const std::unique_ptr<page::Node> node =
      make_node(ArchKind::kX86_64, 1 * kGiB, page::DeferredInit::kNo);
  return *node;
}

void BM_AllocFreePair(benchmark::State& state) {
  const Order order(static_cast<unsigned>(state.range(0)));
  page::Node& node = shared_node();
  for (auto _ : state) {
    page::Page* p = MUST(node.alloc_pages(order), "1 GiB node has room");
    benchmark::DoNotOptimize(p);
    node.free_pages(p, order);
  }
  state.SetItemsProcessed(state.iterations());
}

// 64 blocks of order 9 are 128 MiB: two threads together stay well inside the node.
constexpr size_t kBatch = 64;

void BM_AllocFreeBatch(benchmark::State& state) {
  const Order order(static_cast<unsigned>(state.range(0)));
  page::Node& node = shared_node();
  std::array<page::Page*, kBatch> pages{};
  for (auto _ : state) {
    for (page::Page*& p : pages) {
      p = MUST(node.alloc_pages(order), "1 GiB node has room");
    }
    benchmark::DoNotOptimize(pages.data());
    for (page::Page* p : pages) node.free_pages(p, order);
  }
  const int64_t blocks = state.iterations() * static_cast<int64_t>(kBatch);
  state.SetItemsProcessed(blocks);
}

// Node::create for `GiB` of RAM with deferred init: the memmap's sections are mapped
// (untouched), each zone initialises its first section only. Items are RAM pages covered.
void BM_NodeCreateDeferred(benchmark::State& state) {
  const uint64_t bytes = static_cast<uint64_t>(state.range(0)) * kGiB;
  for (auto _ : state) {
    std::unique_ptr<page::Node> node = make_node(ArchKind::kX86_64, bytes, page::DeferredInit::kYes);
    benchmark::DoNotOptimize(node.get());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(bytes >> kPageShift));
  state.SetLabel("items = RAM pages");
}

constexpr double kMinTime = 0.2;

BENCHMARK(BM_AllocFreePair)->ArgName("order")->Arg(0)->Arg(9)->MinTime(kMinTime);
BENCHMARK(BM_AllocFreePair)
    ->ArgName("order")
    ->Arg(0)
    ->Arg(9)
    ->Threads(2)
    ->UseRealTime()
    ->MinTime(kMinTime);
BENCHMARK(BM_AllocFreeBatch)->ArgName("order")->Arg(0)->Arg(9)->MinTime(kMinTime);
BENCHMARK(BM_AllocFreeBatch)
    ->ArgName("order")
    ->Arg(0)
    ->Arg(9)
    ->Threads(2)
    ->UseRealTime()
    ->MinTime(kMinTime);
BENCHMARK(BM_NodeCreateDeferred)
    ->ArgName("GiB")
    ->Arg(16)
    ->Arg(256)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(kMinTime);

}  // namespace
}  // namespace dpmm::bench

BENCHMARK_MAIN();
