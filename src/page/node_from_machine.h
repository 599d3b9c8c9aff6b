// Building a node's memmap and zones from a phys::Machine (its arch, vmemmap window and
// System RAM), the way free_area_init does from memblock at boot.
#pragma once

#include <memory>
#include <optional>

#include "base/result.h"
#include "page/node.h"
#include "phys/machine.h"

namespace dpmm::page {

struct NodeOptions {
  unsigned nid = 0;
  std::optional<Pfn> movable_start;
  DevicePrivateZone device_private_zone = DevicePrivateZone::kAbsent;
  DeferredInit deferred_init = DeferredInit::kYes;
};

// The machine's top-level System RAM as whole pages (partial pages at either end dropped,
// as memblock does), with the machine's arch params and vmemmap window.
//   EINVAL  the machine has no whole page of System RAM
Result<NodeConfig> node_config_from_machine(const phys::Machine& machine, NodeOptions options);

// node_config_from_machine + Node::create (its errors, e.g. ERANGE when RAM lies outside an
// arm64 vmemmap window).
Result<std::unique_ptr<Node>> node_from_machine(const phys::Machine& machine, NodeOptions options);

}  // namespace dpmm::page
