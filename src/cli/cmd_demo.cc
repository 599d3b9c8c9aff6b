// dpmm demo: the seed's story on an embedded machine that needs no file.
//
// A VM-like x86_64 machine with 43 physical address bits whose 64-bit PCI window fills the
// space after RAM, and an 80 GiB device-private GPU: where its memory can go under each design.
// The concurrent workload part of the demo needs the device-memory layers (pagemaps,
// migrate_vma, dmirror), which are not built yet; until then the demo says so.
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/size.h"
#include "cli/command.h"
#include "cli/output.h"
#include "cli/registration.h"
#include "phys/builtin_machines.h"
#include "phys/iomem_parser.h"

namespace dpmm::cli {

namespace {

struct DemoOptions {
  std::string machine = "vm-43bit-pci-full";
  std::string device = "80GiB";
  bool json = false;
};

int run_demo(const DemoOptions& o) {
  auto size = parse_size(o.device);
  if (size.is_error()) return fail_input("--device", size.error());
  auto m = phys::builtin_machine(o.machine);
  if (m.is_error()) return fail_input("--machine", m.error());
  phys::Machine& machine = *m;

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
  text += fmt::format("\nlegacy search limit: {:#x} ({})\n\n", limit.end.raw(), limit.reason);

  const uint64_t sizes[] = {*size};
  const std::vector<DeviceOutcome> outcomes = register_devices(machine, sizes);
  text += to_text(outcomes[0], 0);

  nlohmann::json designs = nlohmann::json::array();
  for (const DesignOutcome& d : outcomes[0].designs) {
    nlohmann::json j = {{"design", d.design}, {"space", d.space}};
    if (d.ok()) {
      j["registration"] = {{"ok", true}, {"start", hex(d.start)}, {"end", hex(d.end)}};
    } else {
      j["registration"] = {{"ok", false}, {"error", error_json(*d.error)}, {"reason", d.reason}};
    }
    // No workload has run yet, so nothing has been verified.
    j["verified"] = false;
    designs.push_back(std::move(j));
  }
  text +=
      "\nThe workload part of the demo (CPU threads and the device migrating one buffer both ways,\n"
      "with a checksum over every byte) needs the device-memory layers, which are not built yet.\n";
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
