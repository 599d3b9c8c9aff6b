// Migration throughput through the dmirror driver, as the kernel's benchmark_thp_migration
// (tools/testing/selftests/mm/hmm-tests.c) measures it, and the CPU fault-back cost; each next
// to memcpy of the same bytes measured in the same binary, so every result is also a ratio.
//
// Migrate/<design>/<KiB>/<dir>/<order>: HMM_DMIRROR_MIGRATE_TO_DEV (dir 0, system -> device) or
// HMM_DMIRROR_MIGRATE_TO_SYS (dir 1, device -> system) of a buffer of the selftest's sizes
// (512 KiB .. 256 MiB) of 4 KiB pages (order 0). As the selftest: the buffer is mapped and
// every page written, one round trip runs as a warm-up, then each iteration migrates the
// whole buffer one way (timed) and back (not timed). Each repetition does five iterations, as
// the selftest averages five. bytes_per_second is the buffer's bytes over the timed part.
// The migration includes what the kernel's does: migrate_vma_setup/pages/finalize in windows
// of 512 pages, a device (or system) page allocated and copied per page, and, to the device,
// the copy of the migrated data back into the caller's buffer that dmirror_migrate_to_device
// does for verification.
// Order 9 is the selftest's use_thp: each iteration maps a fresh 2 MiB-aligned MADV_HUGEPAGE
// buffer (not timed), so every timed migration starts from THPs; whether the driver moves a
// THP whole (MIGRATE_VMA_SELECT_COMPOUND, a device THP) or migrate_vma splits it first is
// reported as device_thp_fraction: the share of the buffer's 2 MiB steps that sat on the
// device at PMD level after the migration to it.
//
// Memcpy/<KiB>: memcpy between two touched host buffers of the same size (the hardware's
// bandwidth for the same bytes).
//
// FaultBack/<design>/<threads>/<order>: the CPU touching device-private pages: each thread
// reads one word from every page of its own disjoint range, each read faulting, the device's
// migrate_to_ram (dmirror_devmem_fault: migrate_vma of the one page) bringing the page back.
// 4096 pages per thread per iteration, migrated to the device first (not timed). Manual time
// is the wall time of the touching; ns_per_page is wall time / pages (throughput cost), and
// ns_per_fault the time one thread spends per page. Order 9 maps THPs (fresh each iteration)
// before migrating them: where the device holds a THP whole, the first touch of each 2 MiB
// brings all of it back in one fault (device_thp_fraction says how much was whole).
// Memcpy4K: memcpy of one 4 KiB page to another, over a 16 MiB working set (the fault-back's
// data movement: the reference for its ratio).
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/thread.h"
#include "dmirror_env.h"

namespace dpmm::bench {
namespace {

using devmem::Design;

constexpr int kRepetitions = 5;
constexpr int kIterations = 5;  // benchmark_thp_migration's `iterations`

// benchmark_thp_migration's sizes (thp_size / 4 .. thp_size * 128, thp_size = 2 MiB), in KiB.
constexpr int64_t kSizesKiB[] = {512, 1024, 2048, 4096, 8192, 16384, 262144};

enum class Direction : int64_t { kToDevice = 0, kToSystem = 1 };

// A host buffer of `bytes`, every page touched.
struct HostBuffer {
  explicit HostBuffer(uint64_t bytes) : size(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    data = static_cast<std::byte*>(p);
    std::memset(data, 0xa5, bytes);
  }
  ~HostBuffer() { munmap(data, size); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  std::byte* data = nullptr;
  uint64_t size = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Order 9: a fresh THP buffer each iteration (see the file comment).
void migrate_thp(benchmark::State& state, DmirrorEnv& env, uint64_t bytes, Direction dir) {
  HostBuffer mirror(bytes);
  double device_thp = 0;
  for (auto _ : state) {
    const VirtAddr buf = env.map_thp_touched(bytes);
    const auto t0 = std::chrono::steady_clock::now();
    env.to_device(buf, bytes, mirror.data);
    if (dir == Direction::kToDevice) state.SetIterationTime(seconds_since(t0));
    device_thp += env.pmd_level_fraction(buf, bytes);
    const auto t1 = std::chrono::steady_clock::now();
    env.to_system(buf, bytes, mirror.data);
    if (dir == Direction::kToSystem) state.SetIterationTime(seconds_since(t1));
    env.unmap(buf, bytes);
  }
  state.counters["device_thp_fraction"] = device_thp / static_cast<double>(state.iterations());
}

void BM_Migrate(benchmark::State& state) {
  const Design d = static_cast<Design>(state.range(0));
  const uint64_t bytes = static_cast<uint64_t>(state.range(1)) << 10;
  const Direction dir = static_cast<Direction>(state.range(2));
  const FolioSize folio = static_cast<FolioSize>(state.range(3));
  state.SetLabel(design_label(d));
  DmirrorEnv& env = dmirror_env(d, folio);
  if (folio == FolioSize::kThp) {
    migrate_thp(state, env, bytes, dir);
  } else {
    HostBuffer mirror(bytes);
    const VirtAddr buf = env.map_touched(bytes);
    env.to_device(buf, bytes, mirror.data);  // warm-up round trip
    env.to_system(buf, bytes, mirror.data);
    for (auto _ : state) {
      if (dir == Direction::kToDevice) {
        const auto t0 = std::chrono::steady_clock::now();
        env.to_device(buf, bytes, mirror.data);
        state.SetIterationTime(seconds_since(t0));
        env.to_system(buf, bytes, mirror.data);
      } else {
        env.to_device(buf, bytes, mirror.data);
        const auto t0 = std::chrono::steady_clock::now();
        env.to_system(buf, bytes, mirror.data);
        state.SetIterationTime(seconds_since(t0));
      }
    }
    env.unmap(buf, bytes);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (bytes >> kPageShift)));
}

// The THP rows map a fresh buffer per iteration, so they run fewer repetitions.
void migrate_args_for(benchmark::internal::Benchmark* b, FolioSize folio) {
  for (Design d : devmem::kAllDesigns) {
    for (int64_t kib : kSizesKiB) {
      for (Direction dir : {Direction::kToDevice, Direction::kToSystem}) {
        b->Args({static_cast<int64_t>(d), kib, static_cast<int64_t>(dir),
                 static_cast<int64_t>(folio)});
      }
    }
  }
  const bool base = folio == FolioSize::kBase;
  b->ArgNames({"design", "KiB", "dir", "order"})
      ->UseManualTime()
      ->Iterations(kIterations)
      ->Repetitions(base ? kRepetitions : 3)
      ->Unit(benchmark::kMillisecond);
}
void migrate_args(benchmark::internal::Benchmark* b) { migrate_args_for(b, FolioSize::kBase); }
void migrate_thp_args(benchmark::internal::Benchmark* b) { migrate_args_for(b, FolioSize::kThp); }
BENCHMARK(BM_Migrate)->Apply(migrate_args);
BENCHMARK(BM_Migrate)->Apply(migrate_thp_args);

void BM_Memcpy(benchmark::State& state) {
  const uint64_t bytes = static_cast<uint64_t>(state.range(0)) << 10;
  HostBuffer src(bytes);
  HostBuffer dst(bytes);
  for (auto _ : state) {
    std::memcpy(dst.data, src.data, bytes);
    benchmark::DoNotOptimize(dst.data);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

void memcpy_args(benchmark::internal::Benchmark* b) {
  for (int64_t kib : kSizesKiB) b->Arg(kib);
  b->ArgNames({"KiB"})->UseRealTime()->Repetitions(kRepetitions)->MinTime(0.05)->Unit(
      benchmark::kMicrosecond);
}
BENCHMARK(BM_Memcpy)->Apply(memcpy_args);

constexpr uint64_t kFaultPagesPerThread = 4096;

void BM_FaultBack(benchmark::State& state) {
  const Design d = static_cast<Design>(state.range(0));
  const unsigned threads = static_cast<unsigned>(state.range(1));
  const FolioSize folio = static_cast<FolioSize>(state.range(2));
  state.SetLabel(design_label(d));
  DmirrorEnv& env = dmirror_env(d, folio);
  const uint64_t per_thread = kFaultPagesPerThread << kPageShift;
  const uint64_t bytes = per_thread * threads;
  HostBuffer mirror(bytes);
  // 4 KiB pages: one buffer for the whole run. THP: a fresh THP buffer per iteration, as a
  // page that came back is not a THP unless the device moved it whole.
  const bool thp = folio == FolioSize::kThp;
  VirtAddr buf = thp ? VirtAddr(0) : env.map_touched(bytes);
  double thread_seconds = 0;
  double wall_seconds = 0;
  double device_thp = 0;
  for (auto _ : state) {
    if (thp) buf = env.map_thp_touched(bytes);
    env.to_device(buf, bytes, mirror.data);
    if (thp) device_thp += env.pmd_level_fraction(buf, bytes);
    // Each thread notes when it started and ended; the wall time is from the first start to
    // the last end (no start barrier: spinning threads would steal the cores they measure).
    using Clock = std::chrono::steady_clock;
    std::vector<Clock::time_point> begin(threads), end(threads);
    {
      std::vector<Thread> workers;
      for (unsigned t = 0; t < threads; ++t) {
        workers.emplace_back("fault-back", [&, t] {
          begin[t] = Clock::now();
          const VirtAddr base = buf + t * per_thread;
          for (uint64_t off = 0; off < per_thread; off += kPageSize) {
            benchmark::DoNotOptimize(MUST(env.process().read_u64(base + off), "fault back"));
          }
          end[t] = Clock::now();
        });
      }
    }
    const auto t0 = *std::min_element(begin.begin(), begin.end());
    const auto t1 = *std::max_element(end.begin(), end.end());
    for (unsigned t = 0; t < threads; ++t) {
      thread_seconds += std::chrono::duration<double>(end[t] - begin[t]).count();
    }
    const double wall = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(wall);
    wall_seconds += wall;
    if (thp) env.unmap(buf, bytes);
  }
  if (thp) {
    state.counters["device_thp_fraction"] = device_thp / static_cast<double>(state.iterations());
  } else {
    env.unmap(buf, bytes);
  }
  const double pages = static_cast<double>(state.iterations() * (bytes >> kPageShift));
  state.SetItemsProcessed(static_cast<int64_t>(pages));
  state.SetBytesProcessed(static_cast<int64_t>(pages) * static_cast<int64_t>(kPageSize));
  state.counters["ns_per_page"] = wall_seconds * 1e9 / pages;
  state.counters["ns_per_fault"] = thread_seconds * 1e9 / pages;
}

void fault_back_args_for(benchmark::internal::Benchmark* b, FolioSize folio) {
  for (Design d : devmem::kAllDesigns) {
    for (int64_t threads : {1, 2}) {
      b->Args({static_cast<int64_t>(d), threads, static_cast<int64_t>(folio)});
    }
  }
  const bool base = folio == FolioSize::kBase;
  b->ArgNames({"design", "threads", "order"})
      ->UseManualTime()
      ->Iterations(3)
      ->Repetitions(base ? kRepetitions : 3)
      ->Unit(benchmark::kMillisecond);
}
void fault_back_args(benchmark::internal::Benchmark* b) {
  fault_back_args_for(b, FolioSize::kBase);
}
void fault_back_thp_args(benchmark::internal::Benchmark* b) {
  fault_back_args_for(b, FolioSize::kThp);
}
BENCHMARK(BM_FaultBack)->Apply(fault_back_args);
BENCHMARK(BM_FaultBack)->Apply(fault_back_thp_args);

void BM_Memcpy4K(benchmark::State& state) {
  constexpr uint64_t kWorkingSet = 16 << 20;
  HostBuffer src(kWorkingSet);
  HostBuffer dst(kWorkingSet);
  uint64_t off = 0;
  for (auto _ : state) {
    std::memcpy(dst.data + off, src.data + off, kPageSize);
    benchmark::DoNotOptimize(dst.data);
    benchmark::ClobberMemory();
    off = off + kPageSize == kWorkingSet ? 0 : off + kPageSize;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPageSize));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Memcpy4K)->UseRealTime()->Repetitions(kRepetitions)->MinTime(0.05);

}  // namespace
}  // namespace dpmm::bench

BENCHMARK_MAIN();
