#include "sim/workload.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include <fmt/format.h>
#include <xxhash.h>

#include "base/lock.h"
#include "base/thread.h"
#include "base/trace.h"
#include "drivers/dmirror/dmirror.h"
#include "migrate/device_kernel.h"
#include "mm/process.h"
#include "sim/pattern.h"

namespace dpmm::sim {

namespace {

using dmirror::DmirrorIoctl;
using dmirror::HmmDmirrorCmd;

constexpr uint64_t kMaxMigratePages = 16;
constexpr double kZipfExponent = 0.99;

// Picks page numbers in [0, n) by the access pattern.
class PagePicker {
 public:
  PagePicker(AccessPattern pattern, uint64_t n) : pattern_(pattern), n_(n) {
    if (pattern_ != AccessPattern::kZipf) return;
    cdf_.resize(n_);
    double sum = 0;
    for (uint64_t i = 0; i < n_; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), kZipfExponent);
      cdf_[i] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  uint64_t next(std::mt19937_64& rng) {
    switch (pattern_) {
      case AccessPattern::kSequential:
        return cursor_++ % n_;
      case AccessPattern::kRandom:
        return rng() % n_;
      case AccessPattern::kZipf: {
        const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
        return static_cast<uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) -
                                     cdf_.begin()) % n_;
      }
    }
    return 0;
  }

 private:
  AccessPattern pattern_;
  uint64_t n_;
  uint64_t cursor_ = 0;
  std::vector<double> cdf_;
};

// What one thread saw; merged into the report after the join.
struct ThreadResult {
  uint64_t ops = 0;
  uint64_t bytes_checked = 0;
  uint64_t device_full = 0;  // MIGRATE_TO_DEV that found no device memory (-ENOENT)
  std::vector<std::string> failures;
};

struct Shared {
  const GeneratedWorkload& w;
  mm::Process& process;
  VirtAddr base;
  uint64_t slice_pages;
  std::vector<std::byte>& shadow;  // each thread writes only its own slice
  std::atomic<uint64_t> done{0};
  uint64_t total;
  const std::function<void(double)>& progress;
};

void worker(Shared& sh, unsigned t, dmirror::DmirrorFile& file, ThreadResult& out) {
  std::mt19937_64 rng(splitmix64(sh.w.seed * 1000003 + t));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  PagePicker picker(sh.w.pattern, sh.slice_pages);
  const uint64_t first_page = t * sh.slice_pages;
  auto fail = [&](std::string what) {
    if (out.failures.size() < 4) out.failures.push_back(fmt::format("thread {}: {}", t, what));
  };
  std::vector<std::byte> mirror(kMaxMigratePages * kPageSize);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(sh.w.duration_ms.value_or(0));
  for (uint64_t i = 0; i < sh.w.ops && out.failures.empty(); ++i) {
    if (sh.w.duration_ms && (i & 63) == 0 && std::chrono::steady_clock::now() >= deadline) break;
    const uint64_t page = first_page + picker.next(rng);
    if (unit(rng) < sh.w.migrate_fraction) {
      const uint64_t npages =
          std::min<uint64_t>(1 + rng() % kMaxMigratePages, first_page + sh.slice_pages - page);
      const bool to_device = (rng() & 1) != 0;
      HmmDmirrorCmd cmd{.addr = (sh.base + (page << kPageShift)).raw(),
                        .ptr = reinterpret_cast<uint64_t>(mirror.data()),
                        .npages = npages};
      TraceScope scope(to_device ? "sim_migrate_to_device" : "sim_migrate_to_system",
                       TraceCategory::kSim, npages);
      const int64_t ret = file.ioctl(
          to_device ? DmirrorIoctl::kMigrateToDev : DmirrorIoctl::kMigrateToSys, cmd);
      if (to_device && ret == errno_neg(Errno::kENOENT)) {
        out.device_full++;
      } else if (ret != 0) {
        fail(fmt::format("{} of {} pages at page {}: {} ({})",
                         to_device ? "MIGRATE_TO_DEV" : "MIGRATE_TO_SYS", npages, page,
                         errno_name(static_cast<Errno>(-ret)), ret));
      } else if (to_device) {
        const uint64_t bytes = npages << kPageShift;
        out.bytes_checked += bytes;
        const int64_t at = first_difference(
            std::span<const std::byte>(mirror.data(), bytes),
            std::span<const std::byte>(sh.shadow).subspan(page << kPageShift, bytes));
        if (at >= 0) {
          fail(fmt::format("the device read byte {:#x} of the buffer wrong after migrating",
                           (page << kPageShift) + at));
        }
      }
    } else {
      const uint64_t offset = (page << kPageShift) + (rng() % (kPageSize / 8)) * 8;
      const VirtAddr addr = sh.base + offset;
      if (unit(rng) < sh.w.read_fraction) {
        auto v = sh.process.read_u64(addr);
        uint64_t want = 0;
        std::memcpy(&want, sh.shadow.data() + offset, 8);
        out.bytes_checked += 8;
        if (v.is_error()) {
          fail(fmt::format("CPU load at offset {:#x}: {}", offset, v.error().to_string()));
        } else if (*v != want) {
          fail(fmt::format("CPU load at offset {:#x} read {:#x}, expected {:#x}", offset, *v,
                           want));
        }
      } else {
        const uint64_t v = rng();
        if (auto r = sh.process.write_u64(addr, v); r.is_error()) {
          fail(fmt::format("CPU store at offset {:#x}: {}", offset, r.error().to_string()));
        } else {
          std::memcpy(sh.shadow.data() + offset, &v, 8);
        }
      }
    }
    out.ops++;
    const uint64_t d = sh.done.fetch_add(1, std::memory_order_relaxed) + 1;
    if (t == 0 && sh.progress && (i & 255) == 0) {
      sh.progress(static_cast<double>(d) / static_cast<double>(sh.total));
    }
  }
}

}  // namespace

void run_generated(const GeneratedWorkload& w, unsigned minor, migrate::DeviceKernel& dk,
                   dmirror::DmirrorDriver& driver, DesignReport& report,
                   const std::function<void(double)>& progress) {
  auto fail = [&](std::string what) { report.failures.push_back(std::move(what)); };
  auto created = mm::Process::create(dk.kernel());
  if (created.is_error()) return fail(created.error().to_string());
  std::unique_ptr<mm::Process> process = std::move(*created);
  const uint64_t pages = w.buffer >> kPageShift;
  const uint64_t slice = pages / w.threads;
  if (slice == 0) {
    return fail(fmt::format("workload.buffer: {} pages cannot be shared by {} threads", pages,
                            w.threads));
  }
  auto base = process->mmap_anon(w.buffer, mm::MmapProt::kRead | mm::MmapProt::kWrite);
  if (base.is_error()) return fail(base.error().to_string());
  std::vector<std::byte> shadow(w.buffer);
  fill_pattern(Pattern::kRandom, w.seed, 0, shadow);
  if (auto r = process->write(*base, shadow); r.is_error()) return fail(r.error().to_string());

  std::vector<std::unique_ptr<dmirror::DmirrorFile>> files;
  for (unsigned t = 0; t < w.threads; ++t) {
    auto f = driver.open(*process, minor);
    if (f.is_error()) return fail(fmt::format("open: {}", f.error().to_string()));
    files.push_back(std::move(*f));
  }
  Shared sh{w, *process, *base, slice, shadow, {}, w.ops * w.threads, progress};
  std::vector<ThreadResult> results(w.threads);
  {
    std::vector<Thread> threads;
    for (unsigned t = 0; t < w.threads; ++t) {
      threads.emplace_back(fmt::format("workload-{}", t),
                           [&sh, t, &files, &results] { worker(sh, t, *files[t], results[t]); });
    }
  }
  for (const ThreadResult& r : results) {
    report.steps += r.ops;
    report.bytes_checked += r.bytes_checked;
    for (const std::string& f : r.failures) fail(f);
  }
  // Every byte, read back by the CPU (faulting device pages home).
  std::vector<std::byte> got(w.buffer);
  if (auto r = process->read(*base, got); r.is_error()) {
    fail(fmt::format("final read: {}", r.error().to_string()));
  } else {
    report.bytes_checked += got.size();
    const int64_t at = first_difference(got, shadow);
    if (at >= 0) {
      fail(fmt::format("final check: byte {:#x} is {:#04x}, expected {:#04x}", at,
                       static_cast<unsigned>(got[at]), static_cast<unsigned>(shadow[at])));
    }
    report.checksum = XXH3_64bits(got.data(), got.size());
  }
  report.zones = zone_snapshot(dk.kernel());
  report.verified = report.failures.empty();
  files.clear();
}

}  // namespace dpmm::sim
