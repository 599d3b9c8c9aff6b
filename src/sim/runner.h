// Runs a Scenario under each of its designs: builds the machine (a DeviceKernel), loads the
// dmirror driver with the scenario's devices, runs the scripted steps or the generated
// workload on model processes and real threads, and checks every byte against a shadow copy
// of what the program wrote. What happened is counted through the tracepoints (base/trace.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "devmem/design.h"
#include "devmem/dev_pagemap.h"
#include "page/zone.h"
#include "sim/scenario.h"
#include "sim/trace_recorder.h"

namespace dpmm::sim {

// One device after the driver loaded: where its memory landed and what that cost.
struct DeviceReport {
  std::string name;
  DeviceType type = DeviceType::kPrivate;
  unsigned minor = 0;
  std::vector<devmem::PagemapRange> ranges;  // one per registered chunk
  uint64_t descriptor_bytes = 0;             // struct pages for those chunks
};

struct DesignReport {
  devmem::Design design = devmem::Design::kLegacy;
  // Registration: the driver's load (every device's first chunks). Its error, if any.
  std::optional<Error> setup_error;
  bool setup_error_expected = false;  // it matched the scenario's expect_setup_error
  double setup_ms = 0;
  std::vector<DeviceReport> devices;
  // The workload.
  uint64_t steps = 0;        // steps or operations run
  double workload_ms = 0;
  std::vector<std::string> failures;  // what did not hold, in words (first ones only)
  uint64_t bytes_checked = 0;         // bytes compared against the shadow copy
  uint64_t checksum = 0;              // XXH3 of every buffer's final bytes, in order
  bool verified = false;              // ran, and every byte checked out
  // Counters.
  std::map<std::string, EventTotals> events;  // by tracepoint name
  uint64_t cpu_faults = 0;                    // handle_mm_fault calls, all processes
  std::vector<page::ZoneStats> zones;         // after the workload, before teardown
  // Passed: verified, or failed registration exactly as the scenario expects.
  bool passed() const;
};

struct RunOptions {
  KeepEvents keep_events = KeepEvents::kNo;
  // Called now and then from the running thread with the design and the fraction done.
  std::function<void(devmem::Design, double)> progress;
};

struct DesignRun {
  DesignReport report;
  std::unique_ptr<TraceRecorder> trace;  // the run's events (kept when asked)
};

// Runs `scenario` under `design`. Never fails as a whole: what went wrong is in the report.
DesignRun run_design(const Scenario& scenario, devmem::Design design, const RunOptions& options);

}  // namespace dpmm::sim
