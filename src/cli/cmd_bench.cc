// dpmm bench: the macro benchmarks of issue 6 (the micro ones are bench/*_benchmark.cc).
//
// Scaling: the generated mixed workload of `dpmm run` (sim/workload.h: CPU loads and stores
// on a shared buffer, with a fraction of the operations migrating pages to the device and
// back, every load checked) under each design, at each thread count, for a fixed duration;
// operations per second. The time is the runner's workload time, which also holds the
// workload's set-up (a process, its buffer written once, the device files opened) and the
// final check of every byte: a few milliseconds against the duration.
//
// Memory: the dmirror driver loaded with one device-private device whose memory is a single
// pagemap (as a GPU driver registers all its memory) of each size; the descriptor bytes the
// registration took, its wall time, and the process's resident set (/proc/self/statm) before
// and after, so the growth is what registration cost in RAM.
//
// Both run on the built-in workstation-46bit machine (128 GiB of RAM, room for legacy's
// request_free_mem_region up to 80 GiB), so every design can register every default size.
//
// Exit: 0 every workload verified and every size registered; 1 otherwise; 2 bad options.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/size.h"
#include "cli/command.h"
#include "cli/output.h"
#include "cli/run_report.h"
#include "devmem/design.h"
#include "drivers/dmirror/dmirror.h"
#include "drivers/dmirror/dmirror_device.h"
#include "migrate/device_kernel.h"
#include "phys/builtin_machines.h"
#include "sim/runner.h"
#include "sim/scenario.h"

namespace dpmm::cli {

namespace {

constexpr std::string_view kBenchMachine = "workstation-46bit";
constexpr uint64_t kMaxDurationMs = 600'000;
constexpr unsigned kMaxThreads = 64;

struct BenchOptions {
  std::vector<std::string> designs;
  std::vector<unsigned> threads;
  uint64_t duration_ms = 2000;
  std::string buffer = "16MiB";
  std::vector<std::string> devices;
  bool skip_scaling = false;
  bool skip_memory = false;
  bool json = false;
};

// The scaling workload: one device-private device of 1 GiB, random accesses, half reads,
// 5% migrations (the defaults of a generated workload), stopped by the duration.
constexpr std::string_view kScalingScenario = R"(
name = "bench-scaling"
machine = "{machine}"

[[device]]
name = "gpu"
type = "private"
size = "1GiB"

[workload]
threads = {threads}
buffer = {buffer}
pattern = "random"
read_fraction = 0.5
migrate_fraction = 0.05
ops = 1000000000
duration_ms = {duration}
seed = 1
)";

struct ScalingResult {
  devmem::Design design;
  unsigned threads = 0;
  sim::DesignReport report;
  double ops_per_s() const {
    return report.workload_ms > 0 ? static_cast<double>(report.steps) * 1e3 / report.workload_ms
                                  : 0;
  }
  uint64_t event_count(const std::string& name) const {
    auto it = report.events.find(name);
    return it == report.events.end() ? 0 : it->second.count;
  }
};

struct MemoryResult {
  devmem::Design design = devmem::Design::kLegacy;
  uint64_t device_bytes = 0;
  std::optional<Error> error;
  uint64_t descriptor_bytes = 0;
  uint64_t rss_before = 0;
  uint64_t rss_after = 0;
  double registration_ms = 0;
};

// Resident bytes of this process: the second field of /proc/self/statm, in pages.
uint64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

MemoryResult measure_memory(devmem::Design d, uint64_t bytes) {
  MemoryResult r;
  r.design = d;
  r.device_bytes = bytes;
  auto machine = phys::builtin_machine(kBenchMachine);
  if (machine.is_error()) {
    r.error = machine.error();
    return r;
  }
  auto dk = migrate::DeviceKernel::create(std::move(*machine), d);
  if (dk.is_error()) {
    r.error = dk.error();
    return r;
  }
  dmirror::DmirrorOptions o;
  o.coherent = dmirror::CoherentDevices::kNo;
  o.private_devices[0].chunk_size = bytes;
  o.private_devices[0].initial_chunks = 1;
  o.private_devices[1].present = dmirror::DevicePresent::kNo;
  r.rss_before = resident_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  auto driver = dmirror::DmirrorDriver::create(**dk, o);
  r.registration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.rss_after = resident_bytes();
  if (driver.is_error()) {
    r.error = driver.error();
    return r;
  }
  for (const auto& range : (*driver)->device(dmirror::kPrivateDeviceOne).chunk_ranges()) {
    r.descriptor_bytes += range.nr_pages().raw() * sizeof(page::Page);
  }
  return r;
}

std::string mib(uint64_t bytes) { return fmt::format("{:.1f}", static_cast<double>(bytes) / (1 << 20)); }

int run_bench(const BenchOptions& o) {
  std::vector<devmem::Design> designs;
  for (const std::string& s : o.designs) {
    auto d = devmem::parse_design(s);
    if (d.is_error()) return fail_input("--design", d.error());
    designs.push_back(*d);
  }
  if (designs.empty()) designs.assign(devmem::kAllDesigns.begin(), devmem::kAllDesigns.end());
  std::vector<unsigned> threads = o.threads.empty() ? std::vector<unsigned>{1, 2} : o.threads;
  for (unsigned t : threads) {
    if (t == 0 || t > kMaxThreads) {
      return fail_input("--threads", make_error(Errno::kEINVAL, "{} threads: must be 1..{}", t,
                                                kMaxThreads));
    }
  }
  if (o.duration_ms == 0 || o.duration_ms > kMaxDurationMs) {
    return fail_input("--duration-ms", make_error(Errno::kEINVAL, "{} ms: must be 1..{}",
                                                  o.duration_ms, kMaxDurationMs));
  }
  auto buffer = parse_size(o.buffer);
  if (buffer.is_error()) return fail_input("--buffer", buffer.error());
  if (*buffer == 0 || *buffer % kPageSize != 0) {
    return fail_input("--buffer", make_error(Errno::kEINVAL,
                                             "{}: must be a non-zero multiple of 4 KiB", o.buffer));
  }
  std::vector<uint64_t> sizes;
  const std::vector<std::string> device_texts =
      o.devices.empty() ? std::vector<std::string>{"1GiB", "4GiB", "16GiB", "64GiB"} : o.devices;
  for (const std::string& s : device_texts) {
    auto size = parse_size(s);
    if (size.is_error()) return fail_input("--device", size.error());
    if (*size == 0 || *size % kPageSize != 0) {
      return fail_input("--device", make_error(Errno::kEINVAL,
                                               "{}: must be a non-zero multiple of 4 KiB", s));
    }
    sizes.push_back(*size);
  }

  bool ok = true;
  Progress progress("bench");
  std::string text;
  nlohmann::json out = {{"machine", std::string(kBenchMachine)}};

  if (!o.skip_scaling) {
    std::vector<ScalingResult> results;
    for (devmem::Design d : designs) {
      for (unsigned t : threads) {
        auto scenario = sim::parse_scenario(
            fmt::format(fmt::runtime(kScalingScenario), fmt::arg("machine", kBenchMachine),
                        fmt::arg("threads", t), fmt::arg("buffer", *buffer),
                        fmt::arg("duration", o.duration_ms)),
            "bench", "");
        if (scenario.is_error()) return fail_input("bench", scenario.error());
        // The workload stops on time, not on its operation count: progress is time.
        const auto t0 = std::chrono::steady_clock::now();
        sim::RunOptions ro;
        ro.progress = [&progress, t0, &o](devmem::Design dd, double) {
          const double ms = std::chrono::duration<double, std::milli>(
                                std::chrono::steady_clock::now() - t0)
                                .count();
          progress.update(dd, std::min(1.0, ms / static_cast<double>(o.duration_ms)));
        };
        sim::DesignRun run = sim::run_design(*scenario, d, ro);
        progress.clear();
        ok = ok && run.report.passed();
        results.push_back({d, t, std::move(run.report)});
      }
    }
    text += fmt::format(
        "scaling: mixed migrate/fault workload ({} buffer, random, 50% reads, 5% migrations), "
        "{} ms per run\n",
        format_size(*buffer), o.duration_ms);
    text += fmt::format("  {:<10} {:>7} {:>10} {:>12} {:>10} {:>10} {:>10}  {}\n", "design",
                        "threads", "ops", "ops/s", "faults", "to-dev", "to-sys", "verified");
    nlohmann::json rows = nlohmann::json::array();
    for (const ScalingResult& r : results) {
      const uint64_t to_dev = r.event_count("pages_to_device");
      const uint64_t to_sys = r.event_count("pages_to_system");
      text += fmt::format("  {:<10} {:>7} {:>10} {:>12.0f} {:>10} {:>10} {:>10}  {}\n",
                          devmem::design_name(r.design), r.threads, r.report.steps, r.ops_per_s(),
                          r.report.cpu_faults, to_dev, to_sys,
                          r.report.setup_error ? "setup failed"
                          : r.report.verified  ? "yes"
                                               : "NO");
      nlohmann::json row = {{"design", std::string(devmem::design_name(r.design))},
                            {"threads", r.threads},
                            {"ops", r.report.steps},
                            {"workload_ms", r.report.workload_ms},
                            {"ops_per_s", r.ops_per_s()},
                            {"cpu_faults", r.report.cpu_faults},
                            {"pages_to_device", to_dev},
                            {"pages_to_system", to_sys},
                            {"verified", r.report.verified}};
      if (r.report.setup_error) row["error"] = error_json(*r.report.setup_error);
      if (!r.report.failures.empty()) row["failures"] = r.report.failures;
      rows.push_back(std::move(row));
    }
    out["scaling"] = {{"duration_ms", o.duration_ms}, {"buffer", *buffer}, {"runs", rows}};
  }

  if (!o.skip_memory) {
    if (!text.empty()) text += "\n";
    text += "memory: one device-private pagemap of each size (dmirror device 0)\n";
    text += fmt::format("  {:<10} {:>10} {:>14} {:>12} {:>12} {:>12} {:>10}\n", "design",
                        "device", "descriptors", "RSS before", "RSS after", "RSS growth",
                        "reg ms");
    nlohmann::json rows = nlohmann::json::array();
    for (devmem::Design d : designs) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        progress.update(d, static_cast<double>(i) / static_cast<double>(sizes.size()));
        const MemoryResult r = measure_memory(d, sizes[i]);
        progress.clear();
        nlohmann::json row = {{"design", std::string(devmem::design_name(d))},
                              {"device_bytes", r.device_bytes},
                              {"ok", !r.error.has_value()}};
        if (r.error) {
          ok = false;
          text += fmt::format("  {:<10} {:>10}  {}: {}\n", devmem::design_name(d),
                              format_size(r.device_bytes), errno_name(r.error->code()),
                              r.error->message());
          row["error"] = error_json(*r.error);
          row["reason"] = r.error->message();
        } else {
          const int64_t growth = static_cast<int64_t>(r.rss_after) -
                                 static_cast<int64_t>(r.rss_before);
          text += fmt::format("  {:<10} {:>10} {:>10} MiB {:>8} MiB {:>8} MiB {:>8} MiB {:>10.1f}\n",
                              devmem::design_name(d), format_size(r.device_bytes),
                              mib(r.descriptor_bytes), mib(r.rss_before), mib(r.rss_after),
                              fmt::format("{:.1f}", static_cast<double>(growth) / (1 << 20)),
                              r.registration_ms);
          row["descriptor_bytes"] = r.descriptor_bytes;
          row["rss_before_bytes"] = r.rss_before;
          row["rss_after_bytes"] = r.rss_after;
          row["rss_growth_bytes"] = growth;
          row["registration_ms"] = r.registration_ms;
        }
        rows.push_back(std::move(row));
      }
    }
    out["memory"] = rows;
  }
  out["passed"] = ok;
  text += ok ? "\nPASS\n" : "\nFAIL\n";
  print_output(o.json, out, text);
  return ok ? kExitOk : kExitFails;
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Macro benchmarks: ops/s of a mixed migrate/fault workload at 1 and 2 threads, and "
      "memory use as device memory grows, under each design");
  cmd->add_option("--design", opts->designs,
                  "Run only this design (legacy, dpas, dpas-zone); repeatable");
  cmd->add_option("--threads", opts->threads,
                  "Workload threads; repeatable (default: 1 and 2)");
  cmd->add_option("--duration-ms", opts->duration_ms,
                  "How long each workload run lasts, in ms (default 2000)");
  cmd->add_option("--buffer", opts->buffer, "The workload's buffer (default 16MiB)");
  cmd->add_option("--device", opts->devices,
                  "A device memory size for the memory curve; repeatable (default 1GiB 4GiB "
                  "16GiB 64GiB)");
  cmd->add_flag("--skip-scaling", opts->skip_scaling, "Do not run the workload");
  cmd->add_flag("--skip-memory", opts->skip_memory, "Do not measure the memory curve");
  cmd->add_flag("--json", opts->json, "Print one JSON object");
  cmd->callback([&action, opts] { action = [opts] { return run_bench(*opts); }; });
}

}  // namespace dpmm::cli
