// The physical address space (phys/): parsing real /proc/iomem dumps, the free-region search
// of request_free_mem_region on the built-in machines, and (page/) the folio lock uncontended.
//
// parse_iomem runs once per dump in src/phys/testdata (registered at start-up, one benchmark
// per file); items are resources parsed, bytes the dump's text.
// request_free_mem_region asks for 80 GiB, the size nvidia-uvm asks for. On success each
// iteration also releases the window again (so every iteration searches the same tree): the
// time is request + release. The -ERANGE iterations include building the error message with
// its free-window analysis, as every failing caller pays for it.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/result.h"
#include "bench_nodes.h"
#include "page/folio.h"
#include "page/folio_lock.h"
#include "page/node.h"
#include "phys/builtin_machines.h"
#include "phys/iomem_parser.h"
#include "phys/machine.h"

namespace dpmm::bench {
namespace {

constexpr double kMinTime = 0.2;
constexpr uint64_t kRequestBytes = 80 * kGiB;

// ---- parse_iomem ----

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void BM_ParseIomem(benchmark::State& state, const std::string& text) {
  size_t resources = 0;
  for (auto _ : state) {
    Result<phys::ParsedIomem> parsed = phys::parse_iomem(text);
    benchmark::DoNotOptimize(parsed);
    resources = parsed.is_ok() ? parsed->resource_count : 0;
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(resources));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}

// One benchmark per dump, named after it. Each benchmark keeps its own copy of the text.
void register_parse_benchmarks() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(DPMM_PHYS_TESTDATA)) {
    if (e.path().extension() == ".iomem") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const std::filesystem::path& f : files) {
    std::string text = read_text(f);
    // A dump the parser refuses would measure the error path; say so rather than hide it.
    if (phys::parse_iomem(text).is_error()) {
      std::fprintf(stderr, "note: %s does not parse; its benchmark measures the refusal\n",
                   f.filename().c_str());
    }
    benchmark::RegisterBenchmark(("BM_ParseIomem/" + f.stem().string()).c_str(),
                                 [text = std::move(text)](benchmark::State& st) {
                                   BM_ParseIomem(st, text);
                                 })
        ->MinTime(kMinTime);
  }
}

// ---- request_free_mem_region ----

struct MachineCase {
  const char* name;
  phys::Kaslr kaslr;
};

phys::Machine machine_for(MachineCase c) {
  phys::Machine m = MUST(phys::builtin_machine(c.name), "built-in machine");
  if (m.config().kaslr == c.kaslr) return m;
  phys::MachineConfig config = m.config();
  config.kaslr = c.kaslr;
  return MUST(m.with_config(config), "the same machine with KASLR switched");
}

void BM_RequestFreeMemRegionOk(benchmark::State& state, MachineCase c) {
  phys::Machine m = machine_for(c);
  for (auto _ : state) {
    Result<phys::ResourceInfo> r = m.request_free_mem_region(kRequestBytes, "nvidia-uvm-hmm");
    benchmark::DoNotOptimize(r);
    if (r.is_error()) {
      state.SkipWithError(r.error().to_string().c_str());
      break;
    }
    MUST(m.iomem().release_resource(r->id), "release the window just requested");
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_RequestFreeMemRegionErange(benchmark::State& state, MachineCase c) {
  phys::Machine m = machine_for(c);
  for (auto _ : state) {
    Result<phys::ResourceInfo> r = m.request_free_mem_region(kRequestBytes, "nvidia-uvm-hmm");
    benchmark::DoNotOptimize(r);
    if (r.is_ok() || r.error().code() != Errno::kERANGE) {
      state.SkipWithError("expected -ERANGE");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_RequestFreeMemRegionOk, workstation_46bit,
                  MachineCase{"workstation-46bit", phys::Kaslr::kOn})
    ->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_RequestFreeMemRegionOk, x86_kaslr_err34_nokaslr,
                  MachineCase{"x86-kaslr-err34", phys::Kaslr::kOff})
    ->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_RequestFreeMemRegionOk, arm64_server,
                  MachineCase{"arm64-server", phys::Kaslr::kOff})
    ->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_RequestFreeMemRegionErange, vm_43bit_pci_full,
                  MachineCase{"vm-43bit-pci-full", phys::Kaslr::kOn})
    ->MinTime(kMinTime);
BENCHMARK_CAPTURE(BM_RequestFreeMemRegionErange, x86_kaslr_err34,
                  MachineCase{"x86-kaslr-err34", phys::Kaslr::kOn})
    ->MinTime(kMinTime);

// ---- folio lock, uncontended ----

// One order-0 folio of a small node, held by the allocation's reference.
struct LockFixture {
  LockFixture()
      : node(make_node(arch::ArchKind::kX86_64, 128 * kMiB, page::DeferredInit::kNo)),
        folio(page::page_folio(MUST(node->alloc_pages(Order(0)), "one page"))) {}
  ~LockFixture() { node->free_pages(folio.head(), Order(0)); }
  std::unique_ptr<page::Node> node;
  page::Folio folio;
};

void BM_FolioLockUnlock(benchmark::State& state) {
  LockFixture f;
  for (auto _ : state) {
    page::folio_lock(f.folio);
    page::folio_unlock(f.folio);
  }
  benchmark::DoNotOptimize(f.folio.head());
  state.SetItemsProcessed(state.iterations());
}

void BM_FolioTrylockUnlock(benchmark::State& state) {
  LockFixture f;
  for (auto _ : state) {
    bool locked = page::folio_trylock(f.folio);
    benchmark::DoNotOptimize(locked);
    page::folio_unlock(f.folio);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_FolioLockUnlock)->MinTime(kMinTime);
BENCHMARK(BM_FolioTrylockUnlock)->MinTime(kMinTime);

}  // namespace
}  // namespace dpmm::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  dpmm::bench::register_parse_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
