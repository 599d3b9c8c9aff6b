// How `dpmm run` and `dpmm demo` print what a scenario run found: one block of text per design
// and a side-by-side table, or the same as JSON, and progress on a terminal.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "devmem/design.h"
#include "sim/runner.h"

namespace dpmm::cli {

// The design's block: registration (where the memory landed, what it cost, or the error and
// why), the workload's counters and the verdict.
std::string design_report_text(const sim::DesignReport& r);
// design, result, space, descriptors, registration ms, ops, faults, migrations, verdict.
std::string design_table_text(const std::vector<sim::DesignReport>& reports);
// {"design", "registration": {"ok", "error", "reason", "expected"}, "devices": [...],
//  "workload": {...}, "verified", "passed"}
nlohmann::json design_report_json(const sim::DesignReport& r);

// Shows "dpmm <what>: <design> 42%" on stderr while a run goes, only when stderr is a terminal;
// clear() removes the line.
class Progress {
 public:
  explicit Progress(std::string what);
  void update(devmem::Design d, double fraction);
  void clear();
  bool enabled() const { return enabled_; }

 private:
  std::string what_;
  bool enabled_;
  int last_percent_ = -1;
};

}  // namespace dpmm::cli
