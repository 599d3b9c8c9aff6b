// dpmm run SCENARIO.toml: runs a scenario file (sim/scenario.h) under each of its designs and
// reports what happened, with a verdict per design; --trace writes every design's events as a
// Chrome trace-event file (open it in Perfetto or chrome://tracing).
//
// Exit: 0 every design passed (verified, or failed registration as the scenario expects);
// 1 some design did not; 2 the scenario file or an option is bad.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"
#include "cli/run_report.h"
#include "sim/runner.h"
#include "sim/scenario.h"
#include "sim/trace_recorder.h"

namespace dpmm::cli {

namespace {

struct RunOptions {
  std::string file;
  std::vector<std::string> designs;
  std::string trace;
  bool json = false;
};

int run_scenario(const RunOptions& o) {
  auto loaded = sim::load_scenario_file(o.file);
  if (loaded.is_error()) return fail_input("", loaded.error());
  sim::Scenario& s = *loaded;
  if (!o.designs.empty()) {
    s.designs.clear();
    for (const std::string& d : o.designs) {
      auto design = devmem::parse_design(d);
      if (design.is_error()) return fail_input("--design", design.error());
      s.designs.push_back(*design);
    }
  }
  std::ofstream trace_out;
  if (!o.trace.empty()) {
    trace_out.open(o.trace);
    if (!trace_out) {
      return fail_input("--trace", make_error(Errno::kENOENT, "{}: cannot create", o.trace));
    }
  }

  Progress progress("run");
  sim::RunOptions ro;
  ro.keep_events = o.trace.empty() ? sim::KeepEvents::kNo : sim::KeepEvents::kYes;
  ro.progress = [&progress](devmem::Design d, double f) { progress.update(d, f); };
  std::vector<sim::DesignRun> runs;
  for (devmem::Design d : s.designs) {
    runs.push_back(sim::run_design(s, d, ro));
    progress.clear();
  }

  std::vector<sim::DesignReport> reports;
  bool passed = true;
  std::string text = fmt::format("scenario {} ({})\n", s.name, s.source);
  if (!s.description.empty()) text += fmt::format("{}\n", s.description);
  text += fmt::format("machine {}, {} device(s), {}\n\n", s.machine.name(), s.devices.size(),
                      s.generated ? "generated workload" : fmt::format("{} steps", s.steps.size()));
  nlohmann::json designs = nlohmann::json::array();
  for (const auto& run : runs) {
    reports.push_back(run.report);
    passed = passed && run.report.passed();
    text += design_report_text(run.report) + "\n";
    designs.push_back(design_report_json(run.report));
  }
  text += design_table_text(reports);
  text += passed ? "\nPASS\n" : "\nFAIL\n";

  if (trace_out.is_open()) {
    std::vector<std::pair<std::string, const sim::TraceRecorder*>> traces;
    for (const auto& run : runs) {
      traces.emplace_back(std::string(devmem::design_name(run.report.design)), run.trace.get());
    }
    sim::write_chrome_trace_file(trace_out, traces);
  }
  print_output(o.json, {{"scenario", s.name}, {"designs", designs}, {"passed", passed}}, text);
  return passed ? kExitOk : kExitFails;
}

}  // namespace

void add_run_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run", "Run a scenario file (machine, devices, workload) under each design and verify it");
  cmd->add_option("SCENARIO", opts->file, "The scenario TOML (see scenarios/)")->required();
  cmd->add_option("--design", opts->designs,
                  "Run only this design (legacy, dpas, dpas-zone); repeatable");
  cmd->add_option("--trace", opts->trace, "Write the events as Chrome trace-event JSON here");
  cmd->add_flag("--json", opts->json, "Print one JSON object");
  cmd->callback([&action, opts] { action = [opts] { return run_scenario(*opts); }; });
}

}  // namespace dpmm::cli
