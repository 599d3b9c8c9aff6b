// dpmm check: will device-private memory register on this machine?
//
// Reads a /proc/iomem dump (or this machine's), builds the machine, and registers each device
// in order, as drivers do: under `legacy` with request_free_mem_region() of the device's size
// (each success claims its window, so the next device searches below it), under the dpas
// designs from the device private address space, which needs no physical address space.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "base/size.h"
#include "cli/command.h"
#include "cli/output.h"
#include "cli/registration.h"
#include "phys/iomem_parser.h"
#include "phys/machine.h"

namespace dpmm::cli {

namespace {

struct CheckOptions {
  std::string iomem;              // path, "-" for stdin, empty for /proc/iomem
  std::optional<unsigned> phys_bits;
  std::string kaslr = "on";
  std::string arch = "x86_64";
  std::vector<std::string> devices;
  std::optional<std::string> memstart;
  std::string arm64_physmem_end = "after-fix";
  bool json = false;
};

// "address sizes	: 48 bits physical, 48 bits virtual" -> 48.
Result<unsigned> phys_bits_from_cpuinfo(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errno::kENOENT, "{}: cannot be read", path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("address sizes", 0) != 0) continue;
    const size_t colon = line.find(':');
    unsigned bits = 0;
    if (colon != std::string::npos && std::sscanf(line.c_str() + colon + 1, "%u", &bits) == 1) {
      return bits;
    }
    return make_error(Errno::kEINVAL, "{}: unreadable 'address sizes' line: {}", path, line);
  }
  return make_error(Errno::kENOENT,
                    "{} has no 'address sizes' line; pass --phys-bits N", path);
}

Result<phys::ParsedIomem> read_iomem(const std::string& source) {
  if (source == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    auto parsed = phys::parse_iomem(ss.str());
    if (parsed.is_error()) {
      return Error(parsed.error().code(), "<stdin>: " + parsed.error().message());
    }
    return parsed;
  }
  auto parsed = phys::parse_iomem_file(source);
  if (parsed.is_error() && parsed.error().message().rfind(source, 0) != 0) {
    return Error(parsed.error().code(), source + ": " + parsed.error().message());
  }
  return parsed;
}

struct DeviceRequest {
  std::string text;
  uint64_t size;
};

Result<phys::Machine> build_machine(const CheckOptions& o, phys::ParsedIomem parsed) {
  phys::MachineConfig c;
  c.name = o.iomem.empty() ? "this machine" : (o.iomem == "-" ? "<stdin>" : o.iomem);
  c.arch = TRY(arch::parse_arch(o.arch));
  c.phys_bits = *o.phys_bits;
  if (o.kaslr != "on" && o.kaslr != "off") {
    return make_error(Errno::kEINVAL, "--kaslr '{}': expected on or off", o.kaslr);
  }
  c.kaslr = o.kaslr == "on" ? phys::Kaslr::kOn : phys::Kaslr::kOff;
  if (c.arch == arch::ArchKind::kArm64) {
    if (o.arm64_physmem_end != "after-fix" && o.arm64_physmem_end != "before-fix") {
      return make_error(Errno::kEINVAL,
                        "--arm64-physmem-end '{}': expected after-fix or before-fix",
                        o.arm64_physmem_end);
    }
    c.arm64_physmem_end = o.arm64_physmem_end == "after-fix" ? phys::Arm64PhysmemEnd::kAfterFix
                                                             : phys::Arm64PhysmemEnd::kBeforeFix;
    if (o.memstart) {
      c.memstart_addr = PhysAddr(TRY(parse_size(*o.memstart)));
    } else {
      // Without KASLR arm64 puts memstart_addr at the lowest RAM address rounded down to
      // ARM64_MEMSTART_ALIGN (1 GiB with 4 KiB pages); use the dump's lowest System RAM.
      for (const auto& r : parsed.tree->walk()) {
        if (r.depth == 0 && r.name == "System RAM") {
          c.memstart_addr = PhysAddr(r.range.start.raw() & ~((uint64_t{1} << 30) - 1));
          break;
        }
      }
    }
  }
  auto m = phys::Machine::create(std::move(c), std::move(parsed.tree));
  if (m.is_error()) return m;
  for (auto& w : parsed.warnings) m->add_note(std::move(w));
  return m;
}

nlohmann::json limit_json(const phys::PhysLimit& l) {
  return {{"end", hex(l.end.raw())},
          {"cause", std::string(phys::limit_cause_name(l.cause))},
          {"reason", l.reason}};
}

int run_check(const CheckOptions& o) {
  const std::string source = o.iomem.empty() ? "/proc/iomem" : o.iomem;
  std::vector<DeviceRequest> devices;
  for (const auto& d : o.devices) {
    auto size = parse_size(d);
    if (size.is_error()) return fail_input("--device", size.error());
    if (*size == 0) return fail_input("--device", make_error(Errno::kEINVAL, "size is zero"));
    devices.push_back({d, *size});
  }
  CheckOptions opts = o;
  if (!opts.phys_bits) {
    if (!o.iomem.empty()) {
      return fail_input("--phys-bits",
                        make_error(Errno::kEINVAL,
                                   "required with --iomem: /proc/iomem does not record the "
                                   "physical address bits (see 'address sizes' in /proc/cpuinfo "
                                   "of the machine the dump came from)"));
    }
    auto bits = phys_bits_from_cpuinfo("/proc/cpuinfo");
    if (bits.is_error()) return fail_input("/proc/cpuinfo", bits.error());
    opts.phys_bits = *bits;
  }
  auto parsed = read_iomem(source);
  if (parsed.is_error()) return fail_input("", parsed.error());
  auto machine_or = build_machine(opts, std::move(parsed).value());
  if (machine_or.is_error()) return fail_input("", machine_or.error());
  phys::Machine& machine = *machine_or;

  const phys::PhysLimit limit = machine.free_region_limit();
  nlohmann::json out;
  out["machine"] = {
      {"iomem", source},
      {"arch", std::string(arch::arch_name(machine.arch()))},
      {"phys_bits", machine.phys_bits()},
      {"kaslr", opts.kaslr},
      {"system_ram_bytes", machine.system_ram_bytes()},
      {"search_limit", limit_json(limit)},
      {"notes", machine.notes()},
  };
  std::string text = fmt::format(
      "machine: {} ({}, {} physical address bits, KASLR {}, {} of System RAM)\n", source,
      arch::arch_name(machine.arch()), machine.phys_bits(), opts.kaslr,
      format_size(machine.system_ram_bytes()));
  text += fmt::format("legacy search limit: {:#x} ({})\n", limit.end.raw(), limit.reason);
  for (const auto& n : machine.notes()) text += fmt::format("note: {}\n", n);

  std::vector<uint64_t> sizes;
  for (const auto& d : devices) sizes.push_back(d.size);
  bool any_fails = false;
  out["devices"] = nlohmann::json::array();
  const std::vector<DeviceOutcome> outcomes = register_devices(machine, sizes);
  for (size_t i = 0; i < outcomes.size(); ++i) {
    for (const auto& design : outcomes[i].designs) any_fails |= !design.ok();
    out["devices"].push_back(to_json(outcomes[i]));
    text += "\n" + to_text(outcomes[i], i);
  }
  if (devices.empty()) {
    const phys::FreeRegionAnalysis a = machine.free_region_analysis(0);
    out["largest_window"] = a.largest_window
                                ? nlohmann::json{{"start", hex(a.largest_window->start.raw())},
                                                 {"end", hex(a.largest_window->end.raw())},
                                                 {"size", a.largest_window->size()}}
                                : nlohmann::json(nullptr);
    text += fmt::format("\nno --device given; {}\n", a.describe());
  }
  print_output(o.json, out, text);
  return any_fails ? kExitFails : kExitOk;
}

}  // namespace

void add_check_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<CheckOptions>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Will device-private memory register on this machine? Reads /proc/iomem (as root prints "
      "it) and answers for each device, in registration order, under each design.");
  cmd->add_option("--iomem", opts->iomem,
                  "A /proc/iomem dump, or - for standard input (default: this machine's "
                  "/proc/iomem)");
  cmd->add_option("--phys-bits", opts->phys_bits,
                  "CPU physical address bits ('address sizes' in /proc/cpuinfo); required with "
                  "--iomem, read from /proc/cpuinfo otherwise")
      ->check(CLI::Range(32, 52));
  cmd->add_option("--kaslr", opts->kaslr, "on|off (default on; off if booted with nokaslr)");
  cmd->add_option("--arch", opts->arch, "x86_64|arm64 (default x86_64)");
  cmd->add_option("--device", opts->devices,
                  "Device memory size, e.g. 80GiB, 24G, 0x600000000 (repeat for several devices)")
      ->take_all();
  cmd->add_option("--memstart", opts->memstart,
                  "arm64: memstart_addr (default: the lowest System RAM, 1 GiB aligned)");
  cmd->add_option("--arm64-physmem-end", opts->arm64_physmem_end,
                  "arm64: after-fix (kernel has eeb8fdfcf090, default) or before-fix");
  cmd->add_flag("--json", opts->json, "Print one JSON object");
  cmd->callback([&action, opts] { action = [opts] { return run_check(*opts); }; });
}

}  // namespace dpmm::cli
