// dpmm machines: the built-in machine descriptions, and any machine's memory map.
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "base/size.h"
#include "cli/command.h"
#include "cli/output.h"
#include "phys/builtin_machines.h"
#include "phys/iomem_parser.h"
#include "phys/machine_toml.h"

namespace dpmm::cli {

namespace {

struct MachinesOptions {
  std::string name;  // a built-in name or a TOML file; empty lists the built-in ones
  bool json = false;
};

Result<phys::Machine> load(const std::string& name) {
  if (name.find('/') != std::string::npos || name.ends_with(".toml")) {
    return phys::load_machine_file(name);
  }
  return phys::builtin_machine(name);
}

int run_machines(const MachinesOptions& o) {
  if (o.name.empty()) {
    nlohmann::json list = nlohmann::json::array();
    std::string text;
    for (const auto& n : phys::builtin_machine_names()) {
      auto m = MUST(phys::builtin_machine(n), "built-in machines are tested to load");
      list.push_back({{"name", n}, {"description", m.config().description}});
      text += fmt::format("{:<20} {}\n", n, m.config().description);
    }
    print_output(o.json, nlohmann::json{{"machines", list}}, text);
    return kExitOk;
  }
  auto m = load(o.name);
  if (m.is_error()) return fail_input(o.name, m.error());
  const phys::PhysLimit limit = m->free_region_limit();
  nlohmann::json j = {{"name", m->name()},
                      {"arch", std::string(arch::arch_name(m->arch()))},
                      {"phys_bits", m->phys_bits()},
                      {"kaslr", std::string(phys::kaslr_name(m->config().kaslr))},
                      {"system_ram_bytes", m->system_ram_bytes()},
                      {"search_limit", {{"end", hex(limit.end.raw())}, {"reason", limit.reason}}},
                      {"iomem", phys::format_iomem(m->iomem())}};
  std::string text = fmt::format("{}: {}\n{}, {} physical address bits, KASLR {}, {} RAM\n",
                                 m->name(), m->config().description, arch::arch_name(m->arch()),
                                 m->phys_bits(), phys::kaslr_name(m->config().kaslr),
                                 format_size(m->system_ram_bytes()));
  text += fmt::format("legacy search limit: {:#x} ({})\n\n", limit.end.raw(), limit.reason);
  text += phys::format_iomem(m->iomem());
  print_output(o.json, j, text);
  return kExitOk;
}

}  // namespace

void add_machines_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<MachinesOptions>();
  CLI::App* cmd = app.add_subcommand(
      "machines", "List the built-in machines, or show one machine's memory map");
  cmd->add_option("machine", opts->name, "A built-in machine name or a machine TOML file");
  cmd->add_flag("--json", opts->json, "Print one JSON object");
  cmd->callback([&action, opts] { action = [opts] { return run_machines(*opts); }; });
}

}  // namespace dpmm::cli
