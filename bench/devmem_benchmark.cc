// Device-private pagemaps under the three designs (devmem/device_memory.h).
//
// Register: registering 1, 16, 64 or 256 GiB of device-private memory on workstation-46bit
// (where legacy's request_free_mem_region succeeds), unregistering it outside the timed part:
// one pagemap, except that a dpas pagemap's page array is capped by kvzalloc just under
// 128 GiB, so dpas registers 256 GiB as four pagemaps of 64 GiB (counter "pagemaps").
// Every design initialises every descriptor at registration, as the kernel does; counters give
// the descriptor bytes and the ratio of the registration time to zero-filling the same number
// of bytes of fresh memory, measured in the same iterations: vs_zero_fill compares the fastest
// of each (the runs least disturbed by other work), vs_zero_fill_mean the means. An untimed
// zero-fill of the same size runs first: on a virtual machine, memory the guest has never
// touched also costs the hypervisor's faults, and at 256 GiB (4 GiB of descriptors) that
// alone made registration look twice as slow as the floor that followed it.
//
// Lookup: resolving a device-private page index to its descriptor with N pagemaps
// registered: device_private_offset_to_page (the maple-tree lookup; dpmm's lock-free table) for
// dpas, pfn_to_page (the section table behind the vmemmap window) for legacy. Pagemaps are 16
// pages each in both designs (a legacy one still spans a 128 MiB section of physical address
// space: request_free_mem_region's alignment). "seq" walks every page index in order;
// "random" follows a fixed table of 64 Ki indices.
// legacy with 4096 pagemaps runs only when DPMM_BENCH_LEGACY_4096 is set: registering them takes
// minutes, nearly all in get_free_mem_region, which steps down one section at a time past every
// region already taken and checks each step against the resource tree (kernel/resource.c does
// the same), so the n-th registration costs O(n^2) and the set-up O(n^3). The lookup itself
// does not depend on the number of pagemaps (pfn_to_page is vmemmap arithmetic).
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
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

// How many pagemaps `bytes` of device memory takes under `d`: one, except where a dpas page
// array would pass kvzalloc's INT_MAX (just under 128 GiB): then the smallest power of two of
// equal pagemaps that each fit (256 GiB: four of 64 GiB), as a driver splitting its memory
// into chunks would register it.
uint64_t pagemaps_for(Design d, uint64_t bytes) {
  if (!devmem::uses_device_private_space(d)) return 1;
  uint64_t n = 1;
  while ((bytes / n >> kPageShift) * sizeof(page::Page) > devmem::kKvmallocMaxBytes) n *= 2;
  return n;
}

void BM_Register(benchmark::State& state) {
  const Design d = static_cast<Design>(state.range(0));
  const uint64_t bytes = static_cast<uint64_t>(state.range(1)) * kGiB;
  const uint64_t nr_maps = pagemaps_for(d, bytes);
  auto s = make_setup(d);
  NullOps ops;
  double registered = 0, zero_fill = 0;
  double best_registered = 1e300, best_zero_fill = 1e300;
  uint64_t descriptor_bytes = 0;
  // Warm-up, not timed: touch as much fresh memory as the descriptors will take, so that
  // neither the registration nor the floor is the first to touch memory this (virtual)
  // machine's host has not backed yet; whichever came first would pay the hypervisor's
  // first-touch faults on top of the guest kernel's.
  zero_fill_seconds((bytes >> kPageShift) * sizeof(page::Page));
  for (auto _ : state) {
    std::vector<std::unique_ptr<devmem::DevPagemap>> maps;
    for (uint64_t i = 0; i < nr_maps; ++i) {
      maps.push_back(std::make_unique<devmem::DevPagemap>(config(&ops, bytes / nr_maps)));
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (auto& m : maps) {
      Status st = s->dm->register_pagemap(*m);
      if (st.is_error()) {
        state.SkipWithError(st.error().to_string().c_str());
        for (auto& r : maps) {
          if (r->is_registered()) s->dm->unregister_pagemap(*r);
        }
        return;
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    const double reg = std::chrono::duration<double>(t1 - t0).count();
    registered += reg;
    best_registered = std::min(best_registered, reg);
    descriptor_bytes = 0;
    for (auto& m : maps) {
      descriptor_bytes += m->descriptor_bytes();
      s->dm->unregister_pagemap(*m);
    }
    const double zf = zero_fill_seconds(descriptor_bytes);
    zero_fill += zf;
    best_zero_fill = std::min(best_zero_fill, zf);
  }
  state.SetLabel(std::string(devmem::design_name(d)));
  state.counters["pagemaps"] = static_cast<double>(nr_maps);
  state.counters["desc_bytes"] = static_cast<double>(descriptor_bytes);
  state.counters["zero_fill_ms"] = zero_fill * 1e3 / static_cast<double>(state.iterations());
  // The ratio of the fastest registration to the fastest zero-fill: each the run least
  // disturbed by other work on the machine. The ratio of the means is kept as well.
  state.counters["vs_zero_fill"] = best_zero_fill > 0 ? best_registered / best_zero_fill : 0;
  state.counters["vs_zero_fill_mean"] = zero_fill > 0 ? registered / zero_fill : 0;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (bytes >> kPageShift)));
}

void register_args(benchmark::internal::Benchmark* b) {
  for (Design d : devmem::kAllDesigns) {
    for (int gib : {1, 16, 64, 256}) b->Args({static_cast<int64_t>(d), gib});
  }
  b->ArgNames({"design", "GiB"})->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_Register)->Apply(register_args);

enum class Order : int64_t { kSeq, kRandom };

// Pages per pagemap in the lookup benchmarks, both designs. A legacy pagemap of 16 pages still
// takes a whole section of physical address space (request_free_mem_region's alignment) and a
// section of memmap, of which only its 16 descriptors are initialised and touched.
constexpr uint64_t kLookupPagemapPages = 16;

void BM_Lookup(benchmark::State& state) {
  const Design d = static_cast<Design>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  const Order order = static_cast<Order>(state.range(2));
  auto s = make_setup(d);
  NullOps ops;
  const uint64_t per = kLookupPagemapPages;
  std::vector<std::unique_ptr<devmem::DevPagemap>> maps;
  std::vector<arch::PfnOrOffset> all;  // every page index, in address order
  for (size_t i = 0; i < n; ++i) {
    maps.push_back(std::make_unique<devmem::DevPagemap>(config(&ops, per << kPageShift)));
    MUST(s->dm->register_pagemap(*maps.back()), "fits");
  }
  for (auto& m : maps) {
    for (uint64_t k = 0; k < per; ++k) all.push_back(m->range().index(k));
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
      if (d == Design::kLegacy && n == 4096 && std::getenv("DPMM_BENCH_LEGACY_4096") == nullptr) {
        continue;
      }
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
