// dpmm demo: the seed's story on an embedded machine that needs no file.
//
// A VM-like x86_64 machine with 43 physical address bits whose 64-bit PCI window fills the
// space after RAM, and an 80 GiB device-private GPU (a dmirror device whose memory is one
// pagemap of that size). For each design the demo loads the driver, which registers the GPU's
// memory through the design's seam (legacy: request_free_mem_region + memremap_pages; dpas,
// dpas-zone: memremap_device_private_pagemap), and reports the kernel's result, where the
// memory landed, the descriptor memory it took and how long registration took. Where it
// registered, two CPU threads then load and store into one buffer while they migrate its pages
// to the GPU and back, every load checked against what was stored, and every byte checked at
// the end. The numbers are the model's own, measured in this run.
//
// Exit 0 when every design that registered verified every byte (a design that cannot register
// is the story, not a failure); 1 otherwise; 2 for bad options.
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
#include "phys/builtin_machines.h"
#include "sim/runner.h"
#include "sim/scenario.h"

namespace dpmm::cli {

namespace {

struct DemoOptions {
  std::string machine = "vm-43bit-pci-full";
  std::string device = "80GiB";
  bool json = false;
};

// The demo's scenario: one device-private GPU whose memory is a single pagemap (as a GPU
// driver registers it), and a short concurrent workload.
constexpr std::string_view kDemoScenario = R"(
name = "demo"
description = "The seed's story: a device-private GPU on a machine of your choice"
machine = "{machine}"

[[device]]
name = "gpu"
type = "private"
size = {bytes}
chunk = {bytes}

[workload]
threads = 2
buffer = "16MiB"
pattern = "random"
read_fraction = 0.6
migrate_fraction = 0.1
ops = 20000
seed = 1
)";

int run_demo(const DemoOptions& o) {
  auto size = parse_size(o.device);
  if (size.is_error()) return fail_input("--device", size.error());
  if (*size == 0) return fail_input("--device", make_error(Errno::kEINVAL, "size is zero"));
  if (*size % kPageSize != 0) {
    return fail_input("--device", make_error(Errno::kEINVAL, "{} is not a multiple of 4 KiB",
                                             *size));
  }
  auto m = phys::builtin_machine(o.machine);
  if (m.is_error()) return fail_input("--machine", m.error());
  const phys::Machine& machine = *m;
  auto scenario = sim::parse_scenario(
      fmt::format(fmt::runtime(kDemoScenario), fmt::arg("machine", o.machine),
                  fmt::arg("bytes", *size)),
      "demo", "");
  if (scenario.is_error()) return fail_input("demo", scenario.error());

  const phys::PhysLimit limit = machine.free_region_limit();
  std::string text = fmt::format("machine {}: {}\n", machine.name(), machine.config().description);
  text += fmt::format("{}, {} physical address bits, KASLR {}, {} of System RAM\n\n",
                      arch::arch_name(machine.arch()), machine.phys_bits(),
                      phys::kaslr_name(machine.config().kaslr),
                      format_size(machine.system_ram_bytes()));
  text += "/proc/iomem (top level):\n";
  for (const auto& r : machine.iomem().walk()) {
    if (r.depth != 0) continue;
    text += fmt::format("  {:016x}-{:016x} : {} ({})\n", r.range.start.raw(), r.range.end.raw(),
                        r.name, format_size(r.range.size()));
  }
  text += fmt::format("\nlegacy search limit: {:#x} ({})\n", limit.end.raw(), limit.reason);
  text += fmt::format(
      "\nregistering a {} DEVICE_PRIVATE GPU under each design, then 2 CPU threads load and "
      "store a 16 MiB buffer while migrating its pages to the GPU and back:\n\n",
      format_size(*size));

  // Registration initialises a descriptor per page and takes a second for 80 GiB: progress on
  // a terminal, nothing when stderr is not one.
  Progress progress("demo");
  sim::RunOptions ro;
  ro.progress = [&progress](devmem::Design d, double f) { progress.update(d, f); };
  std::vector<sim::DesignReport> reports;
  nlohmann::json designs = nlohmann::json::array();
  bool all_verified = true;
  for (devmem::Design d : devmem::kAllDesigns) {
    sim::DesignRun run = sim::run_design(*scenario, d, ro);
    progress.clear();
    text += design_report_text(run.report) + "\n";
    designs.push_back(design_report_json(run.report));
    if (!run.report.setup_error) all_verified = all_verified && run.report.verified;
    reports.push_back(std::move(run.report));
  }
  text += design_table_text(reports);
  const nlohmann::json out = {{"machine", machine.name()},
                              {"device_size", *size},
                              {"designs", std::move(designs)}};
  print_output(o.json, out, text);
  return all_verified ? kExitOk : kExitFails;
}

}  // namespace

void add_demo_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "The seed's story: an 80 GiB device-private GPU on a 43-bit VM, under each design");
  cmd->add_option("--machine", opts->machine, "A built-in machine (see `dpmm machines`)");
  cmd->add_option("--device", opts->device, "Device memory size (default 80GiB)");
  cmd->add_flag("--json", opts->json, "Print one JSON object");
  cmd->callback([&action, opts] { action = [opts] { return run_demo(*opts); }; });
}

}  // namespace dpmm::cli
