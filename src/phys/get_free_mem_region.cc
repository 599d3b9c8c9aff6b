// get_free_mem_region() and its wrappers (kernel/resource.c, CONFIG_GET_FREE_REGION, v6.1+).
//
// The kernel's loop, in words:
//   size = ALIGN(size, align)
//   descending: addr = min(base->end, LIMIT) - size + 1 (not re-aligned), then addr -= align
//               while addr > align && addr >= base->start
//   ascending:  addr = ALIGN(base->start, align), then addr += align while addr did not wrap
//               and addr <= min(base->end, LIMIT) (only the start is checked against it)
//   for each addr: skip it if [addr, addr + size - 1] overlaps any direct child of `base`
//   (__region_intersects with flags 0 and IORES_DESC_NONE matches every resource); otherwise
//   claim it -- GFR_REQUEST_REGION: __request_region_locked(&iomem_resource, ...) busy, then
//   desc = the caller's; else insert_resource(base, ...) as IORESOURCE_MEM -- and stop. A
//   failed claim ends the loop too, and every way out without a region is -ERANGE.
//
// Here the loop jumps over the candidates that overlap the same child instead of visiting
// them one by one. The jump lands on exactly the candidate the kernel would try next that
// does not overlap that child, and the loop condition only gets stricter as addr moves on, so
// the outcome (address or -ERANGE) is the kernel's.
//
// One place differs on purpose: when size > min(base->end, LIMIT) + 1 the kernel's first
// descending candidate wraps below zero; its windows then wrap too and the loop ends in
// -ERANGE on x86 (the claim fails against iomem_resource.end). This model answers -ERANGE at
// once. The same holds for a size that rounds to 0.
#include <cassert>

#include <fmt/format.h>

#include "base/bits.h"
#include "base/size.h"
#include "phys/resource.h"
#include "phys/resource_node.h"

namespace dpmm::phys {

// The child of `parent` with the lowest start that overlaps [start, end], or nullptr.
const ResourceTree::Node* ResourceTree::first_overlapping_child_locked(const Node* parent,
                                                                      uint64_t start,
                                                                      uint64_t end) const {
  for (const Node* c = parent->child; c; c = c->sibling) {
    if (c->start > end) return nullptr;
    if (c->end >= start) return c;
  }
  return nullptr;
}

Error ResourceTree::gfr_failure_locked(const Node* base, uint64_t size, const GfrParams& params,
                                       const std::string& detail) const {
  const std::vector<PhysRange> used = child_ranges_locked(base);
  const FreeRegionAnalysis a =
      analyze_free_region(used, base->range(), size, params.align, params.limit);
  return make_error(Errno::kERANGE, "no free {} window under {} ({}); {}", format_size(size),
                    node_words(base->start, base->end, base->name), detail, a.describe());
}

// Claims the free window [addr, addr + size - 1] as the kernel does once the window is
// disjoint from base's children.
Result<ResourceTree::Node*> ResourceTree::gfr_claim_locked(Node* base, uint64_t addr,
                                                          uint64_t size,
                                                          const std::string& name,
                                                          IoresDesc desc, GfrFlags flags) {
  if (has(flags, GfrFlags::kRequestRegion)) {
    Node* got = TRY(request_region_locked(root_, addr, size, name, IoresourceFlags::kNone));
    got->desc = desc;
    return got;
  }
  std::unique_ptr<Node> n = new_node(NewResource{
      .range = PhysRange{PhysAddr(addr), PhysAddr(addr + size - 1)},
      .name = name,
      .flags = IoresourceFlags::kMem,
      .desc = desc,
  });
  if (Node* conflict = insert_resource_locked(base, n.get())) {
    return make_error(Errno::kEBUSY, "insert_resource: conflict with {}",
                      node_words(conflict->start, conflict->end, conflict->name));
  }
  Node* inserted = adopt_locked(std::move(n));
  if (inserted->child) {
    // The kernel gives up when the new resource adopted children (impossible for a window
    // disjoint from every child of base); undo the insertion.
    MUST(release_resource_locked(inserted, ReleaseChildren::kNo), "just inserted");
    return make_error(Errno::kEBUSY, "the inserted region adopted children");
  }
  return inserted;
}

Result<ResourceInfo> ResourceTree::get_free_mem_region(ResourceId base_id, uint64_t size,
                                                       const GfrParams& params,
                                                       std::string name, IoresDesc desc,
                                                       GfrFlags flags) {
  const uint64_t align = params.align;
  if (!bits::is_pow2(align)) {
    return make_error(Errno::kEINVAL, "get_free_mem_region: alignment {:#x} is not a power of two",
                      align);
  }
  MutexLocker l(lock_);
  Node* base = lookup_locked(base_id);
  if (!base) {
    return make_error(Errno::kENOENT, "get_free_mem_region: no resource with id {}",
                      base_id.raw());
  }
  const uint64_t asize = (size + align - 1) & ~(align - 1);  // ALIGN(size, align)
  const uint64_t end = std::min(base->end, params.limit.end.raw());
  if (asize == 0) return gfr_failure_locked(base, asize, params, "the size rounds to 0");

  std::string claim_failure;
  auto try_claim = [&](Result<Node*> r) -> Node* {
    if (r.is_ok()) return *r;
    claim_failure = r.error().message();
    return nullptr;
  };

  if (has(flags, GfrFlags::kDescending)) {
    if (asize - 1 > end) {
      return gfr_failure_locked(base, asize, params,
                                "the request is larger than the whole range below the limit");
    }
    uint64_t addr = end - asize + 1;
    while (addr > align && addr >= base->start) {
      const Node* hit = first_overlapping_child_locked(base, addr, addr + asize - 1);
      if (!hit) {
        Node* got = try_claim(gfr_claim_locked(base, addr, asize, name, desc, flags));
        if (!got) break;
        return snapshot_locked(got);
      }
      // Every later candidate whose window still reaches hit->start overlaps `hit` as well.
      if (hit->start < asize) break;
      const uint64_t target = hit->start - asize;  // the highest start that ends below hit
      const uint64_t steps = (addr - target + align - 1) / align;
      if (steps > addr / align) break;  // would step below address 0
      addr -= steps * align;
    }
  } else {
    uint64_t addr = bits::align_up(base->start, align);
    while (addr >= align && addr <= end) {  // addr > addr - align: the last step did not wrap
      if (addr + asize - 1 < addr) break;   // the window wraps: the claim cannot succeed
      const Node* hit = first_overlapping_child_locked(base, addr, addr + asize - 1);
      if (!hit) {
        Node* got = try_claim(gfr_claim_locked(base, addr, asize, name, desc, flags));
        if (!got) break;
        return snapshot_locked(got);
      }
      // Jump over every candidate that still starts inside the last overlapping child.
      const Node* last = hit;
      for (const Node* c = hit->sibling; c && c->start <= addr + asize - 1; c = c->sibling) {
        last = c;
      }
      const uint64_t steps = (last->end - addr) / align + 1;
      if (steps > (~uint64_t{0} - addr) / align) break;  // would wrap past 2^64
      addr += steps * align;
    }
  }
  return gfr_failure_locked(base, asize, params,
                            claim_failure.empty() ? "every candidate overlaps a resource"
                                                  : "claiming the free window failed: " +
                                                        claim_failure);
}

Result<ResourceInfo> ResourceTree::request_free_mem_region(ResourceId base, uint64_t size,
                                                           std::string name,
                                                           const GfrParams& params) {
  return get_free_mem_region(base, size, params, std::move(name),
                             IoresDesc::kDevicePrivateMemory,
                             GfrFlags::kDescending | GfrFlags::kRequestRegion);
}

Result<ResourceInfo> ResourceTree::devm_request_free_mem_region(std::string dev_name,
                                                                ResourceId base, uint64_t size,
                                                                const GfrParams& params) {
  return request_free_mem_region(base, size, std::move(dev_name), params);
}

Result<ResourceInfo> ResourceTree::alloc_free_mem_region(ResourceId base, uint64_t size,
                                                         uint64_t align, std::string name,
                                                         const PhysLimit& limit) {
  return get_free_mem_region(base, size, GfrParams{align, limit}, std::move(name),
                             IoresDesc::kCxl, GfrFlags::kNone);
}

Result<FreeRegionAnalysis> ResourceTree::analyze_free_mem_region(ResourceId base_id,
                                                                 uint64_t size,
                                                                 const GfrParams& params) const {
  if (!bits::is_pow2(params.align)) {
    return make_error(Errno::kEINVAL, "alignment {:#x} is not a power of two", params.align);
  }
  MutexLocker l(lock_);
  const Node* base = lookup_locked(base_id);
  if (!base) return make_error(Errno::kENOENT, "no resource with id {}", base_id.raw());
  const uint64_t asize = (size + params.align - 1) & ~(params.align - 1);
  return analyze_free_region(child_ranges_locked(base), base->range(), asize, params.align,
                             params.limit);
}

}  // namespace dpmm::phys
