// dpmm demo: the seed's story on an embedded machine that needs no file.
//
// A VM-like x86_64 machine with 43 physical address bits whose 64-bit PCI window fills the
// space after RAM, and an 80 GiB device-private GPU. For each design the demo builds the
// machine's node, registers the GPU's memory as a real DEVICE_PRIVATE pagemap through the
// design's seam (legacy: request_free_mem_region + memremap_pages; dpas, dpas-zone:
// memremap_device_private_pagemap), and reports the kernel's result, where the memory landed,
// the descriptor memory it took and how long registration took, measured in this run.
// The concurrent workload part needs migrate_vma and the dmirror device, which are not built
// yet; until then the demo says so and claims nothing about data.
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
#include "devmem/design.h"
#include "devmem/dev_pagemap.h"
#include "devmem/device_memory.h"
#include "page/node_from_machine.h"
#include "phys/builtin_machines.h"

namespace dpmm::cli {

namespace {

struct DemoOptions {
  std::string machine = "vm-43bit-pci-full";
  std::string device = "80GiB";
  bool json = false;
};

// The demo GPU's driver: it never allocates device pages yet, so nothing is ever freed or
// migrated; the ops exist because registration requires them.
class DemoGpuOps final : public devmem::DevPagemapOps {
 public:
  devmem::PagemapOps provided() const override {
    return devmem::PagemapOps::kFolioFree | devmem::PagemapOps::kMigrateToRam;
  }
  void folio_free(page::Folio) override {}
  devmem::VmFaultCode migrate_to_ram(mm::VmFault&) override {
    return devmem::VmFaultCode::kSigBus;
  }
};

const int kDemoOwner = 0;

struct DesignRun {
  devmem::Design design;
  Status status;
  devmem::PagemapRange range;
  uint64_t descriptor_bytes = 0;
  double registration_ms = 0;
};

Result<DesignRun> run_design(const phys::Machine& base, devmem::Design design, uint64_t bytes) {
  // Each design gets a fresh copy of the machine, so one design's claimed window cannot change
  // another's answer.
  phys::Machine machine = TRY(base.with_config(base.config()));
  page::NodeOptions opts;
  opts.device_private_zone = devmem::device_private_zone(design);
  std::unique_ptr<page::Node> node = TRY(page::node_from_machine(machine, opts));
  std::unique_ptr<devmem::DeviceMemory> dm =
      TRY(devmem::DeviceMemory::create(machine, *node, design));

  DemoGpuOps ops;
  devmem::DevPagemapConfig config;
  config.type = devmem::MemoryType::kDevicePrivate;
  config.ops = &ops;
  config.owner = &kDemoOwner;
  config.nr_pages = PageCount::from_bytes_round_up(bytes);
  config.name = "nvidia-uvm-hmm";
  devmem::DevPagemap pgmap(config);

  DesignRun run{design, ok(), {}, 0, 0};
  const uint64_t memmap_before = node->memmap().descriptor_bytes_initialized();
  const auto t0 = std::chrono::steady_clock::now();
  run.status = dm->register_pagemap(pgmap);
  const auto t1 = std::chrono::steady_clock::now();
  run.registration_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  if (run.status.is_error()) return run;
  run.range = pgmap.range();
  // legacy's descriptors are memmap sections; the dpas designs' are the pagemap's own array.
  run.descriptor_bytes = devmem::uses_device_private_space(design)
                             ? pgmap.range().nr_pages().raw() * sizeof(page::Page)
                             : node->memmap().descriptor_bytes_initialized() - memmap_before;
  dm->unregister_pagemap(pgmap);
  return run;
}

int run_demo(const DemoOptions& o) {
  auto size = parse_size(o.device);
  if (size.is_error()) return fail_input("--device", size.error());
  if (*size == 0) return fail_input("--device", make_error(Errno::kEINVAL, "size is zero"));
  auto m = phys::builtin_machine(o.machine);
  if (m.is_error()) return fail_input("--machine", m.error());
  const phys::Machine& machine = *m;

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
  text += fmt::format("\nregistering a {} DEVICE_PRIVATE pagemap under each design:\n",
                      format_size(*size));

  nlohmann::json designs = nlohmann::json::array();
  std::vector<DesignRun> runs;
  // Registration initialises a descriptor per page and takes seconds for 80 GiB: show progress
  // on a terminal, and nothing when stderr is not one.
  const bool progress = ::isatty(STDERR_FILENO) != 0;
  for (devmem::Design d : devmem::kAllDesigns) {
    if (progress) {
      fmt::print(stderr, "\r\x1b[Kdpmm demo: registering {} under {} ...", format_size(*size),
                 devmem::design_name(d));
      std::fflush(stderr);
    }
    auto run = run_design(machine, d, *size);
    if (run.is_error()) return fail_input("demo", run.error());
    runs.push_back(std::move(run).value());
  }
  if (progress) fmt::print(stderr, "\r\x1b[K");
  for (const DesignRun& r : runs) {
    const std::string name(devmem::design_name(r.design));
    nlohmann::json j = {{"design", name}, {"verified", false}};
    if (r.status.is_error()) {
      const Error& e = r.status.error();
      j["registration"] = {{"ok", false}, {"error", error_json(e)}, {"reason", e.message()}};
      text += fmt::format("\n  {:<10} FAILS  {} ({}) after {:.1f} ms\n", name,
                          errno_name(e.code()), errno_neg(e.code()), r.registration_ms);
      text += fmt::format("             {}\n", e.message());
    } else {
      const bool dpas = r.range.space == devmem::PagemapSpace::kDevicePrivate;
      const std::string space = dpas ? "device-private" : "physical";
      j["registration"] = {{"ok", true},
                           {"space", space},
                           {"start", hex(r.range.start)},
                           {"end", hex(r.range.end)}};
      text += fmt::format("\n  {:<10} ok     {} [{:#x}-{:#x}]\n", name, space, r.range.start,
                          r.range.end);
      text += fmt::format("             {} of descriptors ({} pages x {} B), registered in {:.1f} ms\n",
                          format_size(r.descriptor_bytes), r.range.nr_pages().raw(),
                          sizeof(page::Page), r.registration_ms);
    }
    j["registration_ms"] = r.registration_ms;
    j["descriptor_bytes"] = r.descriptor_bytes;
    designs.push_back(std::move(j));
  }

  text += fmt::format("\n{:<10} {:<8} {:<16} {:>14} {:>12}\n", "design", "result", "space",
                      "descriptors", "time (ms)");
  for (const DesignRun& r : runs) {
    const bool okay = r.status.is_ok();
    text += fmt::format(
        "{:<10} {:<8} {:<16} {:>14} {:>12.1f}\n", devmem::design_name(r.design),
        okay ? "ok" : std::string(errno_name(r.status.error().code())),
        okay ? (r.range.space == devmem::PagemapSpace::kDevicePrivate ? "device-private"
                                                                       : "physical")
             : "-",
        okay ? format_size(r.descriptor_bytes) : "-", r.registration_ms);
  }
  text +=
      "\nThe workload part of the demo (CPU threads and the device migrating one buffer both ways,\n"
      "with a checksum over every byte) needs migrate_vma and the dmirror device, which are not\n"
      "built yet; no data has been moved or verified.\n";
  const nlohmann::json out = {{"machine", machine.name()},
                              {"device_size", *size},
                              {"designs", std::move(designs)},
                              {"workload", "not available yet"}};
  print_output(o.json, out, text);
  return kExitOk;
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
