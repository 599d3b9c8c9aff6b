// Internal to the resource tree (resource.cc, get_free_mem_region.cc): one struct resource.
#pragma once

#include <cstdint>
#include <string>

#include "phys/iores.h"
#include "phys/phys_range.h"
#include "phys/resource.h"

namespace dpmm::phys {

// The kernel's parent/sibling/child links: siblings sorted by start and disjoint, every child
// inside its parent.
struct ResourceTree::Node {
  uint64_t id = 0;
  uint64_t start = 0;
  uint64_t end = 0;  // inclusive
  std::string name;
  IoresourceFlags flags = IoresourceFlags::kNone;
  IoresDesc desc = IoresDesc::kNone;
  Node* parent = nullptr;
  Node* sibling = nullptr;
  Node* child = nullptr;

  PhysRange range() const { return PhysRange{PhysAddr(start), PhysAddr(end)}; }
};

// "[P0x1000-P0x1fff] 'name'"
std::string node_words(uint64_t start, uint64_t end, const std::string& name);

}  // namespace dpmm::phys
