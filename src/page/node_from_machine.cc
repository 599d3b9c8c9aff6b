#include "page/node_from_machine.h"

#include "base/bits.h"

namespace dpmm::page {

Result<NodeConfig> node_config_from_machine(const phys::Machine& machine, NodeOptions options) {
  NodeConfig c;
  c.nid = options.nid;
  c.arch = machine.params();
  c.window = arch::vmemmap_window(c.arch, machine.config().memstart_addr);
  c.movable_start = options.movable_start;
  c.device_private_zone = options.device_private_zone;
  c.deferred_init = options.deferred_init;
  for (const phys::PhysRange& r : machine.system_ram()) {
    const uint64_t start = bits::align_up(r.start.raw(), kPageSize);
    const uint64_t end = bits::align_down(r.end.raw() + 1, kPageSize);  // exclusive
    if (start >= end) continue;
    const Pfn s = Pfn::from_phys(PhysAddr(start));
    const Pfn e = Pfn::from_phys(PhysAddr(end));
    // Adjacent top-level RAM resources become one range.
    if (!c.ram.empty() && c.ram.back().end == s) {
      c.ram.back().end = e;
    } else {
      c.ram.push_back(PfnRange{s, e});
    }
  }
  if (c.ram.empty()) {
    return make_error(Errno::kEINVAL, "machine {}: no whole page of System RAM", machine.name());
  }
  return c;
}

Result<std::unique_ptr<Node>> node_from_machine(const phys::Machine& machine,
                                                NodeOptions options) {
  NodeConfig c = TRY(node_config_from_machine(machine, std::move(options)));
  return Node::create(std::move(c));
}

}  // namespace dpmm::page
