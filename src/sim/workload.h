// The generated workload: threads of one process hammer a buffer with CPU loads and stores
// while the same threads move pages to the device and back, every load checked against a
// shadow copy. Each thread owns a slice of the buffer (so its shadow is exact) while the page
// tables, the device and its memory are shared by all of them.
#pragma once

#include <functional>
#include <vector>

#include "page/zone.h"
#include "sim/runner.h"
#include "sim/scenario.h"

namespace dpmm::migrate {
class DeviceKernel;
}  // namespace dpmm::migrate
namespace dpmm::dmirror {
class DmirrorDriver;
}  // namespace dpmm::dmirror
namespace dpmm::mm {
class Kernel;
}  // namespace dpmm::mm

namespace dpmm::sim {

// Runs `w` against the device at `minor`, filling the report's workload fields and zones.
void run_generated(const GeneratedWorkload& w, unsigned minor, migrate::DeviceKernel& dk,
                   dmirror::DmirrorDriver& driver, DesignReport& report,
                   const std::function<void(double)>& progress);

// Every zone's counters now.
std::vector<page::ZoneStats> zone_snapshot(mm::Kernel& kernel);

}  // namespace dpmm::sim
