#include <cstdio>

#include <CLI/CLI.hpp>

#include "cli/command.h"

int main(int argc, char** argv) {
  using namespace dpmm::cli;
  CLI::App app{
      "dpmm: Linux device-private memory (HMM, migrate_vma, ZONE_DEVICE) modelled in user space "
      "under three designs: legacy, dpas, dpas-zone"};
  app.require_subcommand(1);
  Action action;
  add_demo_command(app, action);
  add_check_command(app, action);
  add_pte_command(app, action);
  add_machines_command(app, action);
  add_run_command(app, action);
  add_bench_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the problem; dpmm's contract is exit code 2 for any bad usage.
    app.exit(e);
    return kExitBadInput;
  }
  return action ? action() : kExitBadInput;
}
