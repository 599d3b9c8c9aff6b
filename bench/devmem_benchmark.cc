// Device-private pagemaps under the three designs (devmem/device_memory.h).
//
// Register: registering one device-private pagemap of 1, 16 or 64 GiB on workstation-46bit
// (where legacy's request_free_mem_region succeeds), unregistering it outside the timed part.
// Both designs initialise every descriptor at registration, as the kernel does; counters give
// the descriptor bytes and the ratio of the registration time to zero-filling the same number
// of bytes of fresh memory (measured in the same run).
//
// Lookup: resolving a device-private page index to its descriptor with N pagemaps
// registered: device_private_offset_to_page (the maple-tree lookup; dpmm's lock-free table) for
// dpas, pfn_to_page (the section table behind the vmemmap window) for legacy. dpas pagemaps
// are 16 pages each; legacy ones a 128 MiB section each (request_free_mem_region's
// granularity), so legacy runs with 1 and 64 pagemaps only: its lookup does not depend on the
// number of pagemaps, and 4096 legacy sections would initialise 8 GiB of descriptors. "seq"
// walks every page index in order; "random" follows a fixed table of 64 Ki indices.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "devmem/device_memory.h"
#include "page/node_from_machine.h"
#include "phys/builtin_machines.h"

namespace dpmm::bench {
namespace {

using devmem::Design;

constexpr uint64_t kGiB = uint64_t{1} << 30;

class NullOps final : public devmem::DevPagemapOps {
 public:
  devmem::PagemapOps provided() const override {
    return devmem::PagemapOps::kFolioFree | devmem::PagemapOps::kMigrateToRam;
  }
  void folio_free(page::Folio) override {}
  devmem::VmFaultCode migrate_to_ram(mm::VmFault&) override {
    return devmem::VmFaultCode::kSigBus;
  }
};

const int kOwner = 0;

struct Setup {
  phys::Machine machine;
  std::unique_ptr<page::Node> node;
  std::unique_ptr<devmem::DeviceMemory> dm;
};

std::unique_ptr<Setup> make_setup(Design d) {
  auto s = std::unique_ptr<Setup>(
      new Setup{MUST(phys::builtin_machine("workstation-46bit"), "built in"), nullptr, nullptr});
  page::NodeOptions opts;
  opts.device_private_zone = devmem::device_private_zone(d);
  s->node = MUST(page::node_from_machine(s->machine, opts), "node");
  s->dm = MUST(devmem::DeviceMemory::create(s->machine, *s->node, d), "device memory");
  return s;
}

devmem::DevPagemapConfig config(NullOps* ops, uint64_t bytes) {
  devmem::DevPagemapConfig c;
  c.type = devmem::MemoryType::kDevicePrivate;
  c.ops = ops;
  c.owner = &kOwner;
  c.nr_pages = PageCount::from_bytes_round_up(bytes);
  c.name = "bench";
  return c;
}

double zero_fill_seconds(uint64_t bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return 0;
  std::memset(mem, 0, bytes);
  benchmark::DoNotOptimize(mem);
  const auto t1 = std::chrono::steady_clock::now();
  munmap(mem, bytes);
  return std::chrono::duration<double>(t1 - t0).count();
}

void BM_Register(benchmark::State& state) {
  const Design d = static_cast<Design>(state.range(0));
  const uint64_t bytes = static_cast<uint64_t>(state.range(1)) * kGiB;
  auto s = make_setup(d);
  NullOps ops;
  double registered = 0, zero_fill = 0;
  uint64_t descriptor_bytes = 0;
  for (auto _ : state) {
    devmem::DevPagemap pgmap(config(&ops, bytes));
    const auto t0 = std::chrono::steady_clock::now();
    MUST(s->dm->register_pagemap(pgmap), "fits on workstation-46bit");
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    registered += std::chrono::duration<double>(t1 - t0).count();
    descriptor_bytes = pgmap.descriptor_bytes();
    s->dm->unregister_pagemap(pgmap);
    zero_fill += zero_fill_seconds(descriptor_bytes);
  }
  state.SetLabel(std::string(devmem::design_name(d)));
  state.counters["desc_bytes"] = static_cast<double>(descriptor_bytes);
  state.counters["vs_zero_fill"] = zero_fill > 0 ? registered / zero_fill : 0;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (bytes >> kPageShift)));
}

void register_args(benchmark::internal::Benchmark* b) {
  for (Design d : devmem::kAllDesigns) {
    for (int gib : {1, 16, 64}) b->Args({static_cast<int64_t>(d), gib});
  }
  b->ArgNames({"design", "GiB"})->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_Register)->Apply(register_args);

enum class Order : int64_t { kSeq, kRandom };

void BM_Lookup(benchmark::State& state) {
  const Design d = static_cast<Design>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  const Order order = static_cast<Order>(state.range(2));
  auto s = make_setup(d);
  NullOps ops;
  const uint64_t per = devmem::uses_device_private_space(d) ? 16 : 32768;
  std::vector<std::unique_ptr<devmem::DevPagemap>> maps;
  std::vector<arch::PfnOrOffset> all;  // every page index, in address order
  for (size_t i = 0; i < n; ++i) {
    maps.push_back(std::make_unique<devmem::DevPagemap>(config(&ops, per << kPageShift)));
    MUST(s->dm->register_pagemap(*maps.back()), "fits");
  }
  for (auto& m : maps) {
    for (uint64_t k = 0; k < per; k += (per > 16 ? 64 : 1)) all.push_back(m->range().index(k));
  }
  std::sort(all.begin(), all.end(), [](auto a, auto b) { return a.raw_index() < b.raw_index(); });
  std::vector<arch::PfnOrOffset> table;
  if (order == Order::kRandom) {
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<size_t> pick(0, all.size() - 1);
    for (size_t i = 0; i < (size_t{1} << 16); ++i) table.push_back(all[pick(rng)]);
  } else {
    table = all;
  }
  const bool dpas = devmem::uses_device_private_space(d);
  size_t i = 0;
  for (auto _ : state) {
    const arch::PfnOrOffset w = table[i];
    i = i + 1 == table.size() ? 0 : i + 1;
    page::Page* p = dpas ? *s->dm->device_private_offset_to_page(DevPrivOffset(w.raw_index()))
                         : *s->dm->pfn_to_page(Pfn(w.raw_index()));
    benchmark::DoNotOptimize(p);
  }
  state.SetLabel(std::string(devmem::design_name(d)) +
                 (order == Order::kSeq ? " seq" : " random"));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  for (auto& m : maps) s->dm->unregister_pagemap(*m);
}

void lookup_args(benchmark::internal::Benchmark* b) {
  for (Design d : {Design::kLegacy, Design::kDpas}) {
    for (int64_t n : {1, 64, 4096}) {
      if (d == Design::kLegacy && n == 4096) continue;
      for (Order o : {Order::kSeq, Order::kRandom}) {
        b->Args({static_cast<int64_t>(d), n, static_cast<int64_t>(o)});
      }
    }
  }
  b->ArgNames({"design", "pagemaps", "random"})->MinTime(0.2);
}
BENCHMARK(BM_Lookup)->Apply(lookup_args);

}  // namespace
}  // namespace dpmm::bench

BENCHMARK_MAIN();
