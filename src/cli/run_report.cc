#include "cli/run_report.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "base/size.h"
#include "cli/output.h"

namespace dpmm::cli {

namespace {

std::string_view space_name(devmem::PagemapSpace s) {
  return s == devmem::PagemapSpace::kDevicePrivate ? "device-private" : "physical";
}

uint64_t event_count(const sim::DesignReport& r, const std::string& name) {
  auto it = r.events.find(name);
  return it == r.events.end() ? 0 : it->second.count;
}

uint64_t event_args(const sim::DesignReport& r, const std::string& name) {
  auto it = r.events.find(name);
  return it == r.events.end() ? 0 : it->second.arg_sum;
}

uint64_t descriptor_bytes(const sim::DesignReport& r) {
  uint64_t b = 0;
  for (const auto& d : r.devices) b += d.descriptor_bytes;
  return b;
}

// The counters a reader looks for first, by tracepoint name (the full set is in --json), and
// whether the event's number is a page count (faults and exclusive carry an address).
struct Headline {
  std::string_view name;
  bool arg_is_pages;
};
constexpr Headline kHeadline[] = {
    {"handle_mm_fault", false},        {"migrate_to_ram", true},
    {"pages_to_device", true},         {"pages_to_system", true},
    {"migrate_vma_setup", true},       {"migrate_vma_finalize", true},
    {"migrate_device_range", true},    {"hmm_range_fault", true},
    {"hmm_range_fault_ebusy", true},   {"mmu_interval_invalidate", true},
    {"make_device_exclusive", false},
};

}  // namespace

std::string design_report_text(const sim::DesignReport& r) {
  const std::string name(devmem::design_name(r.design));
  std::string t;
  if (r.setup_error) {
    const Error& e = *r.setup_error;
    t += fmt::format("  {:<10} registration FAILS: {} ({}) after {:.1f} ms{}\n", name,
                     errno_name(e.code()), errno_neg(e.code()), r.setup_ms,
                     r.setup_error_expected ? " (as the scenario expects)" : "");
    t += fmt::format("             {}\n", e.message());
    return t;
  }
  t += fmt::format("  {:<10} registration ok in {:.1f} ms\n", name, r.setup_ms);
  for (const auto& d : r.devices) {
    for (const auto& range : d.ranges) {
      t += fmt::format("             {} ({}): {} [{:#x}-{:#x}]\n", d.name,
                       d.type == sim::DeviceType::kPrivate ? "private" : "coherent",
                       space_name(range.space), range.start, range.end);
    }
    t += fmt::format("             {} of descriptors\n", format_size(d.descriptor_bytes));
  }
  t += fmt::format("             workload: {} operations in {:.1f} ms\n", r.steps, r.workload_ms);
  for (const Headline& h : kHeadline) {
    auto it = r.events.find(std::string(h.name));
    if (it == r.events.end()) continue;
    t += fmt::format("               {:<26} {:>10} calls", h.name, it->second.count);
    t += h.arg_is_pages ? fmt::format(", {} pages\n", it->second.arg_sum) : "\n";
  }
  for (const auto& z : r.zones) {
    if (z.present.raw() == 0) continue;
    t += fmt::format("               zone {:<16} present {:>10} pages, free {:>10}\n",
                     page::zone_type_name(z.type), z.present.raw(), z.nr_free_pages);
  }
  for (const auto& f : r.failures) t += fmt::format("             FAILED: {}\n", f);
  t += fmt::format("             {} bytes checked, checksum {:016x}: {}\n", r.bytes_checked,
                   r.checksum, r.verified ? "every byte verified" : "NOT verified");
  return t;
}

std::string design_table_text(const std::vector<sim::DesignReport>& reports) {
  std::string t =
      fmt::format("{:<10} {:<8} {:<15} {:>12} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}  {}\n", "design",
                  "result", "space", "descriptors", "reg ms", "ops", "faults", "to dev",
                  "to sys", "work ms", "verdict");
  for (const auto& r : reports) {
    const bool ok = !r.setup_error.has_value();
    std::string space = "-";
    if (ok && !r.devices.empty() && !r.devices[0].ranges.empty()) {
      space = std::string(space_name(r.devices[0].ranges[0].space));
    }
    t += fmt::format(
        "{:<10} {:<8} {:<15} {:>12} {:>9.1f} {:>9} {:>8} {:>9} {:>9} {:>9.1f}  {}\n",
        devmem::design_name(r.design), ok ? "ok" : std::string(errno_name(r.setup_error->code())),
        space, ok ? format_size(descriptor_bytes(r)) : "-", r.setup_ms, r.steps,
        event_count(r, "handle_mm_fault"), event_args(r, "pages_to_device"),
        event_args(r, "pages_to_system"), r.workload_ms,
        ok ? (r.verified ? "verified" : "FAILED")
           : (r.setup_error_expected ? "fails as expected" : "cannot register"));
  }
  return t;
}

nlohmann::json design_report_json(const sim::DesignReport& r) {
  nlohmann::json j = {{"design", std::string(devmem::design_name(r.design))}};
  if (r.setup_error) {
    j["registration"] = {{"ok", false},
                         {"error", error_json(*r.setup_error)},
                         {"reason", r.setup_error->message()},
                         {"expected", r.setup_error_expected},
                         {"ms", r.setup_ms}};
  } else {
    j["registration"] = {{"ok", true}, {"ms", r.setup_ms}};
    // The first device's first range: where "the" device memory landed in one-device runs.
    if (!r.devices.empty() && !r.devices[0].ranges.empty()) {
      const auto& range = r.devices[0].ranges[0];
      j["registration"]["space"] = std::string(space_name(range.space));
      j["registration"]["start"] = hex(range.start);
      j["registration"]["end"] = hex(range.end);
    }
  }
  j["descriptor_bytes"] = descriptor_bytes(r);
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : r.devices) {
    nlohmann::json ranges = nlohmann::json::array();
    for (const auto& range : d.ranges) {
      ranges.push_back({{"space", std::string(space_name(range.space))},
                        {"start", hex(range.start)},
                        {"end", hex(range.end)}});
    }
    devices.push_back({{"name", d.name},
                       {"type", d.type == sim::DeviceType::kPrivate ? "private" : "coherent"},
                       {"minor", d.minor},
                       {"ranges", ranges},
                       {"descriptor_bytes", d.descriptor_bytes}});
  }
  j["devices"] = devices;
  nlohmann::json events = nlohmann::json::object();
  for (const auto& [name, tot] : r.events) {
    events[name] = {{"count", tot.count}, {"arg_sum", tot.arg_sum}, {"total_ns", tot.total_ns}};
  }
  nlohmann::json zones = nlohmann::json::array();
  for (const auto& z : r.zones) {
    zones.push_back({{"zone", std::string(page::zone_type_name(z.type))},
                     {"present", z.present.raw()},
                     {"managed", z.managed.raw()},
                     {"free", z.nr_free_pages}});
  }
  j["workload"] = {{"operations", r.steps},
                   {"ms", r.workload_ms},
                   {"events", events},
                   {"zones", zones},
                   {"failures", r.failures},
                   {"bytes_checked", r.bytes_checked},
                   {"checksum", fmt::format("{:016x}", r.checksum)}};
  j["verified"] = r.verified;
  j["passed"] = r.passed();
  return j;
}

Progress::Progress(std::string what)
    : what_(std::move(what)), enabled_(::isatty(STDERR_FILENO) != 0) {}

void Progress::update(devmem::Design d, double fraction) {
  if (!enabled_) return;
  const int percent = static_cast<int>(fraction * 100.0);
  if (percent == last_percent_) return;
  last_percent_ = percent;
  fmt::print(stderr, "\r\x1b[Kdpmm {}: {} {}%", what_, devmem::design_name(d), percent);
  std::fflush(stderr);
}

void Progress::clear() {
  if (!enabled_) return;
  fmt::print(stderr, "\r\x1b[K");
  std::fflush(stderr);
  last_percent_ = -1;
}

}  // namespace dpmm::cli
