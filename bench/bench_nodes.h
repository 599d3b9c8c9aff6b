// Node set-ups shared by the benchmarks: one NUMA node of a given arch and RAM size, built as
// page/node.h builds it at boot.
#pragma once

#include <cstdint>
#include <memory>

#include "arch/arch.h"
#include "base/result.h"
#include "base/types.h"
#include "page/node.h"

namespace dpmm::bench {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;

// Where each arch's RAM starts: x86_64 at 4 GiB (so it is all ZONE_NORMAL), arm64 at
// 0x80000000 with memstart_addr there too (the arm64-server machine's layout).
inline PhysAddr ram_base(arch::ArchKind kind) {
  return kind == arch::ArchKind::kX86_64 ? PhysAddr(4 * kGiB) : PhysAddr(0x8000'0000);
}

// One node with `ram_bytes` of RAM (a section multiple) starting at ram_base(kind).
inline page::NodeConfig node_config(arch::ArchKind kind, uint64_t ram_bytes,
                                    page::DeferredInit init) {
  page::NodeConfig c;
  const PhysAddr base = ram_base(kind);
  c.arch = arch::params_for(kind);
  c.window = arch::vmemmap_window(c.arch, kind == arch::ArchKind::kArm64 ? base : PhysAddr(0));
  c.ram = {page::PfnRange{Pfn::from_phys(base), Pfn::from_phys(base + ram_bytes)}};
  c.deferred_init = init;
  return c;
}

inline std::unique_ptr<page::Node> make_node(arch::ArchKind kind, uint64_t ram_bytes,
                                             page::DeferredInit init) {
  return MUST(page::Node::create(node_config(kind, ram_bytes, init)), "benchmark node");
}

}  // namespace dpmm::bench
