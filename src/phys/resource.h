// A resource tree like the kernel's iomem_resource (kernel/resource.c): nested, sorted,
// non-overlapping ranges of physical address space, with the kernel's conflict rules and error
// codes, and the free-region search that device-private memory uses to find its window.
//
// The tree owns its resources; callers hold ResourceIds (a released resource's id goes stale
// and later calls answer ENOENT). Every operation takes the tree's lock (rank kResourceTree,
// the kernel's resource_lock), so the tree may be shared between threads; the answers that
// leave the lock are snapshots (ResourceInfo).
//
// Kernel -> here:
//   request_resource / request_resource_conflict    request_resource      (-EBUSY)
//   insert_resource / insert_resource_conflict      insert_resource       (-EBUSY)
//   release_resource                                release_resource      (-EINVAL)
//   remove_resource                                 remove_resource       (-EINVAL)
//   __request_region / __request_region_locked      request_region        (-EBUSY)
//   __release_region                                release_region        (-ENOENT: the kernel
//                                                                         only warns)
//   region_intersects / __region_intersects         region_intersects
//   get_free_mem_region (+ request_free_mem_region, devm_request_free_mem_region,
//   alloc_free_mem_region)                          get_free_mem_region and its wrappers
//   setup_arch's "iomem_resource.end = ..."         adjust_root_end
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/lock.h"
#include "base/flags.h"
#include "base/result.h"
#include "base/types.h"
#include "phys/free_region_analysis.h"
#include "phys/iores.h"
#include "phys/phys_limit.h"
#include "phys/phys_range.h"

namespace dpmm::phys {

class ResourceId {
 public:
  constexpr ResourceId() = default;
  explicit constexpr ResourceId(uint64_t v) : v_(v) {}
  constexpr uint64_t raw() const { return v_; }
  constexpr bool valid() const { return v_ != 0; }
  constexpr bool operator==(const ResourceId&) const = default;

 private:
  uint64_t v_ = 0;  // 0: no resource
};

// What a caller fills in before asking for a resource (the fields of struct resource that
// request_resource/insert_resource read).
struct NewResource {
  PhysRange range;
  std::string name;
  IoresourceFlags flags = IoresourceFlags::kMem;
  IoresDesc desc = IoresDesc::kNone;
};

// A snapshot of one resource.
struct ResourceInfo {
  ResourceId id;
  ResourceId parent;  // invalid for the root
  PhysRange range;
  std::string name;
  IoresourceFlags flags = IoresourceFlags::kNone;
  IoresDesc desc = IoresDesc::kNone;
  unsigned depth = 0;  // 0: a direct child of the root (a top-level /proc/iomem line)
  size_t child_count = 0;
};

// GFR_* flags of kernel/resource.c.
enum class GfrFlags : uint8_t {
  kNone = 0,
  kDescending = 1 << 0,     // GFR_DESCENDING: search from the top down
  kRequestRegion = 1 << 1,  // GFR_REQUEST_REGION: claim with __request_region (busy), else
                            // insert_resource
};
DPMM_FLAG_OPS(GfrFlags)

// The machine's side of the search: the step (GFR_DEFAULT_ALIGN = 1 << PA_SECTION_SHIFT, the
// section size) and LIMIT (DIRECT_MAP_PHYSMEM_END and friends; see phys_limit.h).
struct GfrParams {
  uint64_t align;
  PhysLimit limit;
};

class ResourceTree {
 public:
  // The root is iomem_resource: "PCI mem", [0, root_end], IORESOURCE_MEM.
  explicit ResourceTree(PhysAddr root_end = PhysAddr(~uint64_t{0}),
                        std::string root_name = "PCI mem");
  ResourceTree(const ResourceTree&) = delete;
  ResourceTree& operator=(const ResourceTree&) = delete;
  ~ResourceTree();

  // A deep copy (ids are preserved, so an id names the same resource in both trees).
  std::unique_ptr<ResourceTree> clone() const EXCLUDES(lock_);

  ResourceId root() const { return root_id_; }

  // request_resource(root, new): `r` must lie inside `parent` and overlap none of its
  // children; it becomes a child (never adopts). EBUSY naming the conflict (or the parent when
  // `r` is not inside it, or when r.end < r.start); ENOENT for a stale parent.
  Result<ResourceId> request_resource(ResourceId parent, NewResource r) EXCLUDES(lock_);

  // insert_resource(parent, new): descends into the children that contain `r`, then adopts
  // the children `r` covers (a resource with exactly r's range becomes r's child). EBUSY
  // naming the resource that `r` overlaps only partly, or the parent when `r` is not inside it.
  Result<ResourceId> insert_resource(ResourceId parent, NewResource r) EXCLUDES(lock_);

  // release_resource(old): detaches `r` with its whole subtree (their ids go stale).
  // EINVAL for the root or a stale id.
  Status release_resource(ResourceId r) EXCLUDES(lock_);
  // remove_resource(old): detaches `r` and hands its children to its parent in its place.
  Status remove_resource(ResourceId r) EXCLUDES(lock_);

  // __request_region(parent, start, n, name, flags): a busy resource [start, start + n - 1]
  // with the parent's type bits, nested into the deepest non-busy resource that contains it.
  // EBUSY when it conflicts with a busy resource or overlaps a resource only partly. A
  // conflict with a busy IORESOURCE_MUXED resource, when `flags` has kMuxed too, waits for
  // that resource's release (as the kernel sleeps on muxed_resource_wait).
  Result<ResourceId> request_region(ResourceId parent, PhysAddr start, uint64_t n,
                                    std::string name,
                                    IoresourceFlags flags = IoresourceFlags::kNone)
      EXCLUDES(lock_);

  // __release_region(parent, start, n): releases the busy resource that is exactly
  // [start, start + n - 1], looking through non-busy resources that contain it. The kernel
  // warns "Trying to free nonexistent resource"; here that is ENOENT with the same words.
  Status release_region(ResourceId parent, PhysAddr start, uint64_t n) EXCLUDES(lock_);

  // region_intersects over the direct children of `parent` only: REGION_DISJOINT when no
  // child matching (flags, desc) overlaps [start, start + size - 1], REGION_INTERSECTS when
  // only matching ones do, REGION_MIXED when matching and other ones do (IoresDesc::kNone
  // matches any desc). A stale parent or a size of 0 answers REGION_DISJOINT.
  RegionIntersection region_intersects(ResourceId parent, PhysAddr start, uint64_t size,
                                       IoresourceFlags flags, IoresDesc desc) const
      EXCLUDES(lock_);

  // get_free_mem_region(dev, base, size, align, name, desc, flags): see resource.cc for the
  // search. Every failure is ERANGE (-34), with a message giving the limit, what set it and
  // the largest free windows (FreeRegionAnalysis::describe). EINVAL for align not a power of
  // two, ENOENT for a stale base.
  Result<ResourceInfo> get_free_mem_region(ResourceId base, uint64_t size,
                                           const GfrParams& params, std::string name,
                                           IoresDesc desc, GfrFlags flags) EXCLUDES(lock_);
  // request_free_mem_region(base, size, name): descending, busy, IORES_DESC_DEVICE_PRIVATE.
  Result<ResourceInfo> request_free_mem_region(ResourceId base, uint64_t size, std::string name,
                                               const GfrParams& params) EXCLUDES(lock_);
  // devm_request_free_mem_region(dev, base, size): the same, named dev_name(dev).
  Result<ResourceInfo> devm_request_free_mem_region(std::string dev_name, ResourceId base,
                                                    uint64_t size, const GfrParams& params)
      EXCLUDES(lock_);
  // alloc_free_mem_region(base, size, align, name): ascending, inserted (not busy),
  // IORES_DESC_CXL (the CXL region driver's call).
  Result<ResourceInfo> alloc_free_mem_region(ResourceId base, uint64_t size, uint64_t align,
                                             std::string name, const PhysLimit& limit)
      EXCLUDES(lock_);

  // The gaps the search sees under `base` (see free_region_analysis.h); `size` may be 0.
  Result<FreeRegionAnalysis> analyze_free_mem_region(ResourceId base, uint64_t size,
                                                     const GfrParams& params) const
      EXCLUDES(lock_);

  // Moves the root's end, as x86 setup_arch() sets iomem_resource.end from the CPU's
  // physical address bits. EBUSY when a child of the root would stick out.
  Status adjust_root_end(PhysAddr end) EXCLUDES(lock_);

  Result<ResourceInfo> info(ResourceId r) const EXCLUDES(lock_);
  Result<std::vector<ResourceInfo>> children(ResourceId r) const EXCLUDES(lock_);
  // Every resource but the root, depth first, in /proc/iomem order.
  std::vector<ResourceInfo> walk() const EXCLUDES(lock_);
  // Number of resources, the root excluded.
  size_t size() const EXCLUDES(lock_);

 private:
  struct Node;

  Node* lookup_locked(ResourceId r) const REQUIRES(lock_);
  static std::unique_ptr<Node> new_node(NewResource r);
  Node* adopt_locked(std::unique_ptr<Node> n) REQUIRES(lock_);
  void forget_subtree_locked(Node* n) REQUIRES(lock_);
  ResourceInfo snapshot_locked(const Node* n) const REQUIRES(lock_);
  Node* request_resource_locked(Node* root, Node* n) REQUIRES(lock_);
  Node* insert_resource_locked(Node* parent, Node* n) REQUIRES(lock_);
  // What __release_resource's release_child says: drop the children with `old`, or hand them
  // to its parent.
  enum class ReleaseChildren : bool { kNo, kYes };
  Status release_resource_locked(Node* old, ReleaseChildren release_child) REQUIRES(lock_);
  Result<Node*> request_region_locked(Node* parent, uint64_t start, uint64_t n,
                                      const std::string& name, IoresourceFlags flags)
      REQUIRES(lock_);
  RegionIntersection region_intersects_locked(const Node* parent, uint64_t start, uint64_t end,
                                              IoresourceFlags flags, IoresDesc desc) const
      REQUIRES(lock_);
  const Node* first_overlapping_child_locked(const Node* parent, uint64_t start,
                                             uint64_t end) const REQUIRES(lock_);
  std::vector<PhysRange> child_ranges_locked(const Node* parent) const REQUIRES(lock_);
  Result<Node*> gfr_claim_locked(Node* base, uint64_t addr, uint64_t size,
                                 const std::string& name, IoresDesc desc, GfrFlags flags)
      REQUIRES(lock_);
  Error gfr_failure_locked(const Node* base, uint64_t size, const GfrParams& params,
                           const std::string& detail) const REQUIRES(lock_);

  mutable Mutex lock_{LockRank::kResourceTree};
  CondVar muxed_wait_;  // muxed_resource_wait
  std::unordered_map<uint64_t, std::unique_ptr<Node>> nodes_ GUARDED_BY(lock_);
  uint64_t next_id_ GUARDED_BY(lock_) = 1;
  Node* root_ GUARDED_BY(lock_) = nullptr;
  ResourceId root_id_;
};

// "[P0x1000-P0x1fff] 'name'"
std::string describe_resource(const ResourceInfo& r);

}  // namespace dpmm::phys
