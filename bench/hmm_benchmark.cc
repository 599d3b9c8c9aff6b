// hmm_range_fault throughput (mm/hmm.c), driven as a driver drives it: an
// mmu_interval_notifier over the buffer, and per window mmu_interval_read_begin, the walk
// under mmap_lock (read), then mmu_interval_read_retry under the driver lock, again on -EBUSY
// or a moved sequence (Documentation/mm/hmm.rst, "Address space mirroring implementation").
//
// RangeFault/<design>/<kind>: a 16 MiB buffer walked in windows of 512 pages (2 MiB, one
// page-table page) with HMM_PFN_REQ_FAULT (read) on every page, pages of one kind:
//   0 present      anon pages the CPU wrote: answered VALID|WRITE with their PFN
//   1 zero         anon pages the CPU only read: the shared zero page, VALID read-only
//   2 dev-private  pages migrated to dmirror device 0, walked with dev_private_owner = that
//                  device: answered with their PFN (legacy) or device-private offset (dpas)
//                  and never faulted
// No page is faulted in any kind: this is the walk's cost. items_per_second is pages/s.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "base/lock.h"
#include "dmirror_env.h"
#include "hmm/hmm_pfn.h"
#include "hmm/hmm_range_fault.h"
#include "hmm/mmu_interval_notifier.h"

namespace dpmm::bench {
namespace {

using devmem::Design;

constexpr uint64_t kBufferBytes = 16 << 20;
constexpr uint64_t kWindowPages = 512;

enum class Kind : int64_t { kPresent = 0, kZero = 1, kDevicePrivate = 2 };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kPresent: return "present";
    case Kind::kZero: return "zero";
    case Kind::kDevicePrivate: return "device-private";
  }
  return "?";
}

// The driver's side of the notifier: the sequence moves under the driver lock, which the
// reader holds for read_retry (the kernel's "driver->update" lock).
class BenchNotifierOps final : public hmm::MmuIntervalNotifierOps {
 public:
  bool invalidate(hmm::MmuIntervalNotifier& sub, const mm::MmuNotifierRange&,
                  uint64_t cur_seq) override {
    MutexLocker g(lock_);
    sub.set_seq(cur_seq);
    return true;
  }
  Mutex& lock() { return lock_; }

 private:
  Mutex lock_{LockRank::kDeviceMutex};
};

// hmm_range_fault under mmap_lock for read, as a driver calls it.
Status walk(mm::Mm& mm, hmm::HmmRange& range) EXCLUDES(mm.mmap_lock()) {
  ReadLocker l(mm.mmap_lock());
  return hmm::hmm_range_fault(mm, range);
}

// One window: read_begin, walk, retry check; again until the reading is stable.
void fault_window(mm::Mm& mm, hmm::MmuIntervalNotifier& sub, BenchNotifierOps& ops,
                  hmm::HmmRange& range) {
  for (;;) {
    range.notifier_seq = sub.read_begin();
    for (uint64_t& w : range.hmm_pfns) w = 0;
    Status s = walk(mm, range);
    if (s.is_error()) {
      if (s.error().code() == Errno::kEBUSY) continue;
      std::fprintf(stderr, "hmm_range_fault: %s\n", s.error().to_string().c_str());
      std::abort();
    }
    MutexLocker g(ops.lock());
    if (!sub.read_retry(range.notifier_seq)) return;
  }
}

void BM_RangeFault(benchmark::State& state) {
  const Design d = static_cast<Design>(state.range(0));
  const Kind kind = static_cast<Kind>(state.range(1));
  state.SetLabel(design_label(d) + " " + kind_name(kind));
  DmirrorEnv& env = dmirror_env(d);
  mm::Mm& mm = env.process().mm();
  std::vector<std::byte> mirror(kBufferBytes);
  VirtAddr buf;
  switch (kind) {
    case Kind::kPresent:
      buf = env.map_touched(kBufferBytes);
      break;
    case Kind::kZero:
      buf = MUST(env.process().mmap_anon(kBufferBytes, kProtRw), "mmap");
      for (uint64_t off = 0; off < kBufferBytes; off += kPageSize) {
        benchmark::DoNotOptimize(MUST(env.process().read_u64(buf + off), "zero-page read"));
      }
      break;
    case Kind::kDevicePrivate:
      buf = env.map_touched(kBufferBytes);
      env.to_device(buf, kBufferBytes, mirror.data());
      break;
  }
  BenchNotifierOps ops;
  hmm::MmuIntervalNotifier sub;
  MUST(sub.insert(mm, buf, kBufferBytes, ops), "notifier");
  std::vector<uint64_t> pfns(kWindowPages);
  hmm::HmmRange range;
  range.notifier = &sub;
  range.hmm_pfns = pfns;
  range.default_flags = hmm::kHmmPfnReqFault;
  range.dev_private_owner = env.device_owner();
  uint64_t answered = 0;
  for (auto _ : state) {
    for (uint64_t off = 0; off < kBufferBytes; off += kWindowPages << kPageShift) {
      range.start = buf + off;
      range.end = range.start + (kWindowPages << kPageShift);
      fault_window(mm, sub, ops, range);
      answered += pfns[kWindowPages - 1] & hmm::kHmmPfnValid ? 1 : 0;
    }
  }
  sub.remove();
  if (kind == Kind::kDevicePrivate) env.to_system(buf, kBufferBytes, mirror.data());
  env.unmap(buf, kBufferBytes);
  if (answered != state.iterations() * (kBufferBytes / (kWindowPages << kPageShift))) {
    state.SkipWithError("a window's last page was not answered VALID");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (kBufferBytes >> kPageShift)));
}

void range_fault_args(benchmark::internal::Benchmark* b) {
  for (Design d : devmem::kAllDesigns) {
    for (Kind k : {Kind::kPresent, Kind::kZero, Kind::kDevicePrivate}) {
      b->Args({static_cast<int64_t>(d), static_cast<int64_t>(k)});
    }
  }
  b->ArgNames({"design", "kind"})->MinTime(0.2)->Repetitions(3)->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_RangeFault)->Apply(range_fault_args);

}  // namespace
}  // namespace dpmm::bench

BENCHMARK_MAIN();
