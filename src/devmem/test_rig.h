// Test helpers for devmem: a machine, its node and a DeviceMemory in one object, a fake
// driver's ops, and a snapshot of everything registration may change.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "devmem/design.h"
#include "devmem/dev_pagemap.h"
#include "devmem/device_memory.h"
#include "page/node_from_machine.h"
#include "phys/builtin_machines.h"

namespace dpmm::devmem::testing {

// A driver that counts folio_free calls and never migrates anything.
class FakeOps final : public DevPagemapOps {
 public:
  explicit FakeOps(PagemapOps provided = PagemapOps::kFolioFree | PagemapOps::kMigrateToRam)
      : provided_(provided) {}
  PagemapOps provided() const override { return provided_; }
  void folio_free(page::Folio folio) override {
    last_freed.store(folio.head(), std::memory_order_relaxed);
    frees.fetch_add(1, std::memory_order_acq_rel);
  }
  VmFaultCode migrate_to_ram(mm::VmFault&) override { return VmFaultCode::kSigBus; }

  std::atomic<int> frees{0};
  std::atomic<page::Page*> last_freed{nullptr};

 private:
  PagemapOps provided_;
};

inline const int kOwnerToken = 0;

// "legacy", "dpas", "dpas_zone": names for parameterised tests.
inline std::string design_test_name(const ::testing::TestParamInfo<Design>& p) {
  std::string n(design_name(p.param));
  for (char& ch : n) ch = ch == '-' ? '_' : ch;
  return n;
}

inline DevPagemapConfig private_config(DevPagemapOps* ops, uint64_t bytes,
                                       std::string name = "dmirror") {
  DevPagemapConfig c;
  c.type = MemoryType::kDevicePrivate;
  c.ops = ops;
  c.owner = &kOwnerToken;
  c.nr_pages = PageCount::from_bytes_round_up(bytes);
  c.name = std::move(name);
  return c;
}

struct Rig {
  phys::Machine machine;
  std::unique_ptr<page::Node> node;
  std::unique_ptr<DeviceMemory> dm;
};

// The built-in machine `name` (config edited by `edit`), its node built for `design`, and a
// DeviceMemory over both.
template <typename Edit>
std::unique_ptr<Rig> make_rig(std::string_view name, Design design, Edit edit) {
  phys::Machine m = MUST(phys::builtin_machine(name), "built-in machine");
  phys::MachineConfig c = m.config();
  edit(c);
  m = MUST(m.with_config(c), "edited config");
  auto rig = std::unique_ptr<Rig>(new Rig{std::move(m), nullptr, nullptr});
  page::NodeOptions opts;
  opts.device_private_zone = device_private_zone(design);
  rig->node = MUST(page::node_from_machine(rig->machine, opts), "node");
  rig->dm = MUST(DeviceMemory::create(rig->machine, *rig->node, design), "device memory");
  return rig;
}
inline std::unique_ptr<Rig> make_rig(std::string_view name, Design design) {
  return make_rig(name, design, [](phys::MachineConfig&) {});
}

// Everything a registration may change, for "nothing left behind" checks.
struct Snapshot {
  std::vector<std::string> iomem;
  uint64_t memmap_sections = 0;
  std::vector<std::string> zones;  // type, present, spanned, start of each device zone
  size_t dp_ranges = 0;
  size_t nr_pagemaps = 0;
  bool operator==(const Snapshot&) const = default;
};

inline Snapshot snapshot(Rig& r) {
  Snapshot s;
  for (const phys::ResourceInfo& i : r.machine.iomem().walk()) {
    s.iomem.push_back(phys::describe_resource(i));
  }
  s.memmap_sections = r.node->memmap().nr_present_sections();
  for (page::ZoneType t : {page::ZoneType::kDevice, page::ZoneType::kDevicePrivate}) {
    if (!r.node->has_zone(t)) continue;
    const page::ZoneStats z = r.node->zone(t).stats();
    s.zones.push_back(fmt::format("{} present {} spanned {} start {}",
                                  page::zone_type_name(t), z.present.raw(), z.spanned.raw(),
                                  z.zone_start_pfn.raw()));
  }
  s.dp_ranges = r.dm->device_private_space().nr_ranges();
  s.nr_pagemaps = r.dm->nr_pagemaps();
  return s;
}

}  // namespace dpmm::devmem::testing
