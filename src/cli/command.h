// The dpmm command's subcommands. Each lives in its own file and registers itself on the CLI11
// app; the chosen one's action runs after parsing.
//
// Exit codes (every subcommand): 0 success; 1 the answer is "it fails" (e.g. legacy cannot
// register); 2 bad usage or bad input, with a one-line error naming the file, line and problem.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace dpmm::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFails = 1;
inline constexpr int kExitBadInput = 2;

// The action of the subcommand the user picked; returns the process exit code.
using Action = std::function<int()>;

void add_demo_command(CLI::App& app, Action& action);
void add_check_command(CLI::App& app, Action& action);
void add_pte_command(CLI::App& app, Action& action);
void add_machines_command(CLI::App& app, Action& action);
void add_run_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);

}  // namespace dpmm::cli
