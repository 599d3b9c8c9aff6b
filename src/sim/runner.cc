#include "sim/runner.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstring>
#include <random>

#include <fmt/format.h>
#include <xxhash.h>

#include "base/thread.h"
#include "drivers/dmirror/dmirror.h"
#include "drivers/dmirror/dmirror_device.h"
#include "migrate/device_kernel.h"
#include "mm/process.h"
#include "sim/pattern.h"
#include "sim/workload.h"

namespace dpmm::sim {

namespace {

using dmirror::DmirrorIoctl;
using dmirror::HmmDmirrorCmd;

constexpr size_t kMaxFailures = 8;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

unsigned minor_for(const Scenario& s, const std::string& device) {
  unsigned next_private = dmirror::kPrivateDeviceOne;
  unsigned next_coherent = dmirror::kCoherenceDeviceOne;
  for (const DeviceSpec& d : s.devices) {
    const unsigned minor = d.type == DeviceType::kPrivate ? next_private++ : next_coherent++;
    if (d.name == device) return minor;
  }
  assert(false && "device names are checked by parse_scenario");
  return 0;
}

mm::MmapProt prot_of(const std::string& p) {
  mm::MmapProt prot = mm::MmapProt::kNone;
  if (p.find('r') != std::string::npos) prot |= mm::MmapProt::kRead;
  if (p.find('w') != std::string::npos) prot |= mm::MmapProt::kWrite;
  return prot;
}

std::string errno_text(int64_t ret) {
  return fmt::format("{} ({})", errno_name(static_cast<Errno>(-ret)), ret);
}

// A buffer a process mapped, with the bytes the program believes it holds.
struct Buffer {
  VirtAddr addr;
  uint64_t size = 0;
  std::vector<std::byte> expected;
};

struct Proc {
  std::unique_ptr<mm::Process> process;
  std::map<std::string, Buffer> buffers;
  std::map<unsigned, std::unique_ptr<dmirror::DmirrorFile>> files;  // by minor
};

// Runs the scripted steps. Owns the processes; its destructor closes every file (which evicts
// the device's pages) before the processes exit.
class ScriptRun {
 public:
  ScriptRun(const Scenario& s, migrate::DeviceKernel& dk, dmirror::DmirrorDriver& driver,
            DesignReport& report)
      : s_(s), dk_(dk), driver_(driver), report_(report) {}
  ~ScriptRun() {
    for (auto& [name, p] : procs_) p.files.clear();
    procs_.clear();
  }

  void run(const std::function<void(double)>& progress) {
    auto main = mm::Process::create(dk_.kernel());
    if (main.is_error()) return fail(fmt::format("creating the main process: {}",
                                                 main.error().to_string()));
    procs_["main"].process = std::move(*main);
    size_t done = 0;
    for (const ScriptStep& st : s_.steps) {
      if (!step(st)) return;
      report_.steps++;
      if (progress) progress(static_cast<double>(++done) / static_cast<double>(s_.steps.size()));
    }
    verify_all();
  }

 private:
  void fail(std::string what) {
    if (report_.failures.size() < kMaxFailures) report_.failures.push_back(std::move(what));
  }
  std::string where(const ScriptStep& st) const {
    return fmt::format("{}:{}: {}", s_.source, st.line, script_op_name(st.op));
  }

  Result<dmirror::DmirrorFile*> file(Proc& p, unsigned minor) {
    auto it = p.files.find(minor);
    if (it != p.files.end()) return it->second.get();
    auto f = TRY(driver_.open(*p.process, minor));
    return p.files.emplace(minor, std::move(f)).first->second.get();
  }

  // Compares `got` with the buffer's expected bytes at `offset`.
  bool check(const ScriptStep& st, const Buffer& b, uint64_t offset,
             std::span<const std::byte> got, std::string_view who) {
    report_.bytes_checked += got.size();
    const int64_t at = first_difference(
        got, std::span<const std::byte>(b.expected).subspan(offset, got.size()));
    if (at < 0) return true;
    fail(fmt::format("{}: {} read byte {:#x} of buffer '{}' as {:#04x}, expected {:#04x}",
                     where(st), who, offset + at, st.buffer,
                     static_cast<unsigned>(got[at]),
                     static_cast<unsigned>(b.expected[offset + at])));
    return false;
  }

  // The outcome of a device command against the step's expectations.
  bool expect(const ScriptStep& st, int64_t ret, const HmmDmirrorCmd& cmd) {
    if (ret < 0) {
      if (st.expect_error && *st.expect_error == errno_name(static_cast<Errno>(-ret))) return true;
      fail(fmt::format("{}: the device returned {}{}", where(st), errno_text(ret),
                       st.expect_error ? fmt::format(", expected {}", *st.expect_error) : ""));
      return false;
    }
    if (st.expect_error) {
      fail(fmt::format("{}: succeeded, expected {}", where(st), *st.expect_error));
      return false;
    }
    if (st.expect_pages && cmd.cpages != *st.expect_pages) {
      fail(fmt::format("{}: {} pages, expected {}", where(st), cmd.cpages, *st.expect_pages));
      return false;
    }
    return true;
  }

  bool step(const ScriptStep& st) {
    Proc& p = procs_.at(st.process);
    switch (st.op) {
      case ScriptOpKind::kMmap: {
        mm::MmapFlags flags = mm::MmapFlags::kAnonymous |
                              (st.shared ? mm::MmapFlags::kShared : mm::MmapFlags::kPrivate);
        auto addr = p.process->mmap(VirtAddr(0), st.size, prot_of(st.prot), flags);
        if (addr.is_error()) {
          fail(fmt::format("{}: {}", where(st), addr.error().to_string()));
          return false;
        }
        p.buffers[st.buffer] = Buffer{*addr, st.size, std::vector<std::byte>(st.size)};
        return true;
      }
      case ScriptOpKind::kMunmap: {
        Buffer& b = p.buffers.at(st.buffer);
        if (auto r = p.process->munmap(b.addr, b.size); r.is_error()) {
          fail(fmt::format("{}: {}", where(st), r.error().to_string()));
          return false;
        }
        p.buffers.erase(st.buffer);
        return true;
      }
      case ScriptOpKind::kMprotect: {
        Buffer& b = p.buffers.at(st.buffer);
        if (auto r = p.process->mprotect(b.addr, b.size, prot_of(st.prot)); r.is_error()) {
          fail(fmt::format("{}: {}", where(st), r.error().to_string()));
          return false;
        }
        return true;
      }
      case ScriptOpKind::kFill: {
        Buffer& b = p.buffers.at(st.buffer);
        fill_pattern(st.pattern, st.seed, 0, b.expected);
        if (auto r = p.process->write(b.addr, b.expected); r.is_error()) {
          fail(fmt::format("{}: the CPU write failed: {}", where(st), r.error().to_string()));
          return false;
        }
        return true;
      }
      case ScriptOpKind::kCpuRead: {
        Buffer& b = p.buffers.at(st.buffer);
        std::vector<std::byte> got(b.size);
        if (auto r = p.process->read(b.addr, got); r.is_error()) {
          fail(fmt::format("{}: the CPU read failed: {}", where(st), r.error().to_string()));
          return false;
        }
        return check(st, b, 0, got, "the CPU");
      }
      case ScriptOpKind::kFork: {
        auto child = p.process->fork();
        if (child.is_error()) {
          fail(fmt::format("{}: {}", where(st), child.error().to_string()));
          return false;
        }
        Proc& c = procs_[st.buffer];
        c.process = std::move(*child);
        c.buffers = p.buffers;  // private memory is copied; the shadows follow
        return true;
      }
      case ScriptOpKind::kRelease: {
        auto f = file(procs_.at("main"), minor_for(s_, st.device));
        if (f.is_error()) {
          fail(fmt::format("{}: open: {}", where(st), f.error().to_string()));
          return false;
        }
        HmmDmirrorCmd cmd{.addr = kPageSize, .npages = 1};
        const int64_t ret = (*f)->ioctl(DmirrorIoctl::kRelease, cmd);
        return expect(st, ret, cmd);
      }
      case ScriptOpKind::kDeviceRead:
      case ScriptOpKind::kDeviceWrite:
      case ScriptOpKind::kMigrateToDevice:
      case ScriptOpKind::kMigrateToSystem:
      case ScriptOpKind::kExclusive:
        return device_step(st, p);
    }
    return false;
  }

  bool device_step(const ScriptStep& st, Proc& p) {
    Buffer& b = p.buffers.at(st.buffer);
    auto f = file(p, minor_for(s_, st.device));
    if (f.is_error()) {
      fail(fmt::format("{}: open: {}", where(st), f.error().to_string()));
      return false;
    }
    std::vector<std::byte> mirror(b.size);
    if (st.op == ScriptOpKind::kDeviceWrite) fill_pattern(st.pattern, st.seed, 0, mirror);
    HmmDmirrorCmd cmd{.addr = b.addr.raw(),
                      .ptr = reinterpret_cast<uint64_t>(mirror.data()),
                      .npages = b.size >> kPageShift};
    DmirrorIoctl request = DmirrorIoctl::kRead;
    switch (st.op) {
      case ScriptOpKind::kDeviceRead: request = DmirrorIoctl::kRead; break;
      case ScriptOpKind::kDeviceWrite: request = DmirrorIoctl::kWrite; break;
      case ScriptOpKind::kMigrateToDevice: request = DmirrorIoctl::kMigrateToDev; break;
      case ScriptOpKind::kMigrateToSystem: request = DmirrorIoctl::kMigrateToSys; break;
      case ScriptOpKind::kExclusive: request = DmirrorIoctl::kExclusive; break;
      case ScriptOpKind::kMmap:
      case ScriptOpKind::kMunmap:
      case ScriptOpKind::kMprotect:
      case ScriptOpKind::kFill:
      case ScriptOpKind::kCpuRead:
      case ScriptOpKind::kFork:
      case ScriptOpKind::kRelease:
        assert(false && "not a device step");
    }
    const int64_t ret = (*f)->ioctl(request, cmd);
    if (!expect(st, ret, cmd)) return false;
    if (ret < 0) return true;  // an expected error
    if (st.op == ScriptOpKind::kDeviceWrite) {
      b.expected = mirror;
      return true;
    }
    // READ, MIGRATE_TO_DEV and EXCLUSIVE hand back what the device sees when every page is
    // in its page table.
    const bool mirrors_all = st.op != ScriptOpKind::kMigrateToSystem;
    if (mirrors_all && cmd.cpages == cmd.npages) return check(st, b, 0, mirror, "the device");
    return true;
  }

  void verify_all() {
    XXH3_state_t* h = XXH3_createState();
    XXH3_64bits_reset(h);
    bool ok = true;
    for (auto& [pname, p] : procs_) {
      for (auto& [bname, b] : p.buffers) {
        std::vector<std::byte> got(b.size);
        if (auto r = p.process->read(b.addr, got); r.is_error()) {
          fail(fmt::format("final check: process '{}' cannot read buffer '{}': {}", pname, bname,
                           r.error().to_string()));
          ok = false;
          continue;
        }
        report_.bytes_checked += got.size();
        const int64_t at = first_difference(got, b.expected);
        if (at >= 0) {
          fail(fmt::format("final check: process '{}' buffer '{}' byte {:#x} is {:#04x}, "
                           "expected {:#04x}", pname, bname, at, static_cast<unsigned>(got[at]),
                           static_cast<unsigned>(b.expected[at])));
          ok = false;
        }
        XXH3_64bits_update(h, got.data(), got.size());
      }
    }
    report_.checksum = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    report_.verified = ok && report_.failures.empty();
  }

  const Scenario& s_;
  migrate::DeviceKernel& dk_;
  dmirror::DmirrorDriver& driver_;
  DesignReport& report_;
  std::map<std::string, Proc> procs_;
};

dmirror::DmirrorOptions driver_options(const Scenario& s) {
  dmirror::DmirrorOptions o;
  bool coherent = false;
  for (auto& p : o.private_devices) p.present = dmirror::DevicePresent::kNo;
  for (const DeviceSpec& d : s.devices) {
    if (d.type == DeviceType::kCoherent) {
      coherent = true;
      continue;
    }
    dmirror::DmirrorPrivateDevice& p = o.private_devices[minor_for(s, d.name)];
    p.present = dmirror::DevicePresent::kYes;
    p.chunk_size = d.chunk;
    p.initial_chunks = static_cast<unsigned>(d.size / d.chunk);
  }
  o.coherent = coherent ? dmirror::CoherentDevices::kYes : dmirror::CoherentDevices::kNo;
  return o;
}

}  // namespace

std::vector<page::ZoneStats> zone_snapshot(mm::Kernel& kernel) {
  std::vector<page::ZoneStats> out;
  for (unsigned t = 0; t < static_cast<unsigned>(page::ZoneType::kCount); ++t) {
    const auto type = static_cast<page::ZoneType>(t);
    if (kernel.node().has_zone(type)) out.push_back(kernel.node().zone(type).stats());
  }
  return out;
}

bool DesignReport::passed() const {
  if (setup_error.has_value()) return setup_error_expected;
  return verified;
}

DesignRun run_design(const Scenario& s, devmem::Design design, const RunOptions& options) {
  DesignRun run{DesignReport{}, std::make_unique<TraceRecorder>(options.keep_events)};
  DesignReport& report = run.report;
  report.design = design;
  auto progress = [&](double f) {
    if (options.progress) options.progress(design, f);
  };

  auto machine = s.machine.with_config(s.machine.config());
  if (machine.is_error()) {
    report.setup_error = machine.error();
    return run;
  }
  migrate::DeviceKernelOptions dk_options;
  if (std::any_of(s.devices.begin(), s.devices.end(),
                  [](const DeviceSpec& d) { return d.type == DeviceType::kCoherent; })) {
    // The platform's special-purpose memory for the coherent devices (spm_addr_dev0/1).
    auto spm = dmirror::find_spm_ranges(*machine);
    if (spm.is_error()) {
      report.setup_error = spm.error();
      return run;
    }
    dk_options.coherent_ranges = {(*spm)[0], (*spm)[1]};
  }
  auto dk = migrate::DeviceKernel::create(std::move(*machine), design, dk_options);
  if (dk.is_error()) {
    report.setup_error = dk.error();
    return run;
  }
  set_trace_sink(run.trace.get());
  const auto t0 = std::chrono::steady_clock::now();
  auto driver = dmirror::DmirrorDriver::create(**dk, driver_options(s));
  report.setup_ms = ms_since(t0);
  if (driver.is_error()) {
    set_trace_sink(nullptr);
    report.setup_error = driver.error();
    auto want = s.expect_setup_error.find(design);
    report.setup_error_expected = want != s.expect_setup_error.end() &&
                                  want->second == errno_name(driver.error().code());
    report.events = run.trace->totals();
    return run;
  }
  for (const DeviceSpec& d : s.devices) {
    const unsigned minor = minor_for(s, d.name);
    DeviceReport dr{d.name, d.type, minor, (*driver)->device(minor).chunk_ranges(), 0};
    for (const auto& r : dr.ranges) dr.descriptor_bytes += r.nr_pages().raw() * sizeof(page::Page);
    report.devices.push_back(std::move(dr));
  }
  if (s.expect_setup_error.contains(design)) {
    report.failures.push_back(fmt::format("registration succeeded, expected {}",
                                          s.expect_setup_error.at(design)));
  }

  const auto t1 = std::chrono::steady_clock::now();
  if (s.generated.has_value()) {
    run_generated(*s.generated, minor_for(s, s.generated->device.empty() ? s.devices[0].name
                                                                         : s.generated->device),
                  **dk, **driver, report, progress);
  } else {
    ScriptRun script(s, **dk, **driver, report);
    script.run(progress);
    // Before the processes exit, while the device memory is in use.
    report.zones = zone_snapshot((*dk)->kernel());
  }
  report.workload_ms = ms_since(t1);
  driver->reset();
  set_trace_sink(nullptr);
  report.events = run.trace->totals();
  report.cpu_faults = report.events.contains("handle_mm_fault")
                          ? report.events.at("handle_mm_fault").count
                          : 0;
  if (!report.failures.empty()) report.verified = false;
  return run;
}

}  // namespace dpmm::sim
