#include "phys/resource.h"
#include "phys/resource_node.h"

#include <cassert>
#include <utility>

#include <fmt/format.h>

namespace dpmm::phys {

std::string node_words(uint64_t start, uint64_t end, const std::string& name) {
  return fmt::format("[{}-{}] '{}'", PhysAddr(start), PhysAddr(end), name);
}

std::string describe_resource(const ResourceInfo& r) {
  return fmt::format("{} '{}'", r.range, r.name);
}

ResourceTree::ResourceTree(PhysAddr root_end, std::string root_name) {
  MutexLocker l(lock_);
  auto root = std::make_unique<Node>();
  root->start = 0;
  root->end = root_end.raw();
  root->name = std::move(root_name);
  root->flags = IoresourceFlags::kMem;
  root_ = adopt_locked(std::move(root));
  root_id_ = ResourceId(root_->id);
}

ResourceTree::~ResourceTree() = default;

std::unique_ptr<ResourceTree> ResourceTree::clone() const {
  // Copy under our lock, install under the copy's: the two locks share a rank and are never
  // held together.
  std::unordered_map<uint64_t, std::unique_ptr<Node>> nodes;
  uint64_t root_id = 0;
  uint64_t next_id = 0;
  {
    MutexLocker l(lock_);
    std::unordered_map<const Node*, Node*> map;
    for (const auto& [id, n] : nodes_) {
      auto c = std::make_unique<Node>(*n);
      map[n.get()] = c.get();
      nodes.emplace(id, std::move(c));
    }
    auto translate = [&](Node* p) { return p ? map.at(p) : nullptr; };
    for (auto& [id, c] : nodes) {
      c->parent = translate(c->parent);
      c->sibling = translate(c->sibling);
      c->child = translate(c->child);
    }
    root_id = root_->id;
    next_id = next_id_;
  }
  auto copy = std::make_unique<ResourceTree>();
  MutexLocker cl(copy->lock_);
  copy->nodes_ = std::move(nodes);
  copy->root_ = copy->nodes_.at(root_id).get();
  copy->root_id_ = ResourceId(root_id);
  copy->next_id_ = next_id;
  return copy;
}

ResourceTree::Node* ResourceTree::lookup_locked(ResourceId r) const {
  auto it = nodes_.find(r.raw());
  return it == nodes_.end() ? nullptr : it->second.get();
}

ResourceTree::Node* ResourceTree::adopt_locked(std::unique_ptr<Node> n) {
  if (n->id == 0) n->id = next_id_++;
  Node* raw_node = n.get();
  nodes_.emplace(raw_node->id, std::move(n));
  return raw_node;
}

void ResourceTree::forget_subtree_locked(Node* n) {
  for (Node* c = n->child; c;) {
    Node* next = c->sibling;
    forget_subtree_locked(c);
    c = next;
  }
  nodes_.erase(n->id);
}

ResourceInfo ResourceTree::snapshot_locked(const Node* n) const {
  ResourceInfo info;
  info.id = ResourceId(n->id);
  info.parent = n->parent ? ResourceId(n->parent->id) : ResourceId();
  info.range = n->range();
  info.name = n->name;
  info.flags = n->flags;
  info.desc = n->desc;
  unsigned depth = 0;
  for (const Node* p = n->parent; p && p != root_; p = p->parent) ++depth;
  info.depth = depth;
  for (const Node* c = n->child; c; c = c->sibling) ++info.child_count;
  return info;
}

// __request_resource(): links `n` under `root` when it fits inside and touches no child;
// returns nullptr then, else the conflict (`root` itself when `n` does not fit inside it).
ResourceTree::Node* ResourceTree::request_resource_locked(Node* root, Node* n) {
  if (n->end < n->start || n->start < root->start || n->end > root->end) return root;
  Node** link = &root->child;
  for (;;) {
    Node* tmp = *link;
    if (!tmp || tmp->start > n->end) {
      n->sibling = tmp;
      *link = n;
      n->parent = root;
      return nullptr;
    }
    link = &tmp->sibling;
    if (tmp->end < n->start) continue;
    return tmp;
  }
}

// __insert_resource(): descend while one child contains `n` (and is not equal to it), then
// adopt the run of children that `n` covers; a partly overlapping one is the conflict.
ResourceTree::Node* ResourceTree::insert_resource_locked(Node* parent, Node* n) {
  Node* first = nullptr;
  for (;; parent = first) {
    first = request_resource_locked(parent, n);
    if (!first) return nullptr;
    if (first == parent) return first;
    assert(first != n && "a resource inserted twice");
    if (first->start > n->start || first->end < n->end) break;
    if (first->start == n->start && first->end == n->end) break;
  }
  Node* next = first;
  for (;; next = next->sibling) {
    if (next->start < n->start || next->end > n->end) return next;
    if (!next->sibling || next->sibling->start > n->end) break;
  }
  n->parent = parent;
  n->sibling = next->sibling;
  n->child = first;
  next->sibling = nullptr;
  for (Node* c = first; c; c = c->sibling) c->parent = n;
  if (parent->child == first) {
    parent->child = n;
  } else {
    Node* prev = parent->child;
    while (prev->sibling != first) prev = prev->sibling;
    prev->sibling = n;
  }
  return nullptr;
}

// A detached node holding `r`, for the request and insert paths to place.
std::unique_ptr<ResourceTree::Node> ResourceTree::new_node(NewResource r) {
  auto n = std::make_unique<Node>();
  n->start = r.range.start.raw();
  n->end = r.range.end.raw();
  n->name = std::move(r.name);
  n->flags = r.flags;
  n->desc = r.desc;
  return n;
}

Result<ResourceId> ResourceTree::request_resource(ResourceId parent, NewResource r) {
  MutexLocker l(lock_);
  Node* p = lookup_locked(parent);
  if (!p) return make_error(Errno::kENOENT, "request_resource: no resource with id {}", parent.raw());
  std::unique_ptr<Node> n = new_node(std::move(r));
  if (Node* conflict = request_resource_locked(p, n.get())) {
    if (conflict == p) {
      return make_error(Errno::kEBUSY, "request_resource: {} does not lie inside {}",
                        node_words(n->start, n->end, n->name),
                        node_words(p->start, p->end, p->name));
    }
    return make_error(Errno::kEBUSY, "request_resource: {} conflicts with {}",
                      node_words(n->start, n->end, n->name),
                      node_words(conflict->start, conflict->end, conflict->name));
  }
  return ResourceId(adopt_locked(std::move(n))->id);
}

Result<ResourceId> ResourceTree::insert_resource(ResourceId parent, NewResource r) {
  MutexLocker l(lock_);
  Node* p = lookup_locked(parent);
  if (!p) return make_error(Errno::kENOENT, "insert_resource: no resource with id {}", parent.raw());
  std::unique_ptr<Node> n = new_node(std::move(r));
  if (Node* conflict = insert_resource_locked(p, n.get())) {
    if (conflict->parent == nullptr || conflict == p) {
      return make_error(Errno::kEBUSY, "insert_resource: {} does not lie inside {}",
                        node_words(n->start, n->end, n->name),
                        node_words(conflict->start, conflict->end, conflict->name));
    }
    return make_error(Errno::kEBUSY, "insert_resource: {} partly overlaps {}",
                      node_words(n->start, n->end, n->name),
                      node_words(conflict->start, conflict->end, conflict->name));
  }
  return ResourceId(adopt_locked(std::move(n))->id);
}

// __release_resource(): unlink `old` from its parent's children; with ReleaseChildren::kNo its
// children take its place.
Status ResourceTree::release_resource_locked(Node* old, ReleaseChildren release_child) {
  if (!old->parent) return make_error(Errno::kEINVAL, "the root resource cannot be released");
  Node** link = &old->parent->child;
  for (;;) {
    Node* tmp = *link;
    if (!tmp) break;
    if (tmp == old) {
      if (release_child == ReleaseChildren::kYes || !tmp->child) {
        *link = tmp->sibling;
        forget_subtree_locked(old);
        return ok();
      }
      Node* last = tmp->child;
      for (Node* c = tmp->child;; c = c->sibling) {
        c->parent = tmp->parent;
        last = c;
        if (!c->sibling) break;
      }
      *link = tmp->child;
      last->sibling = tmp->sibling;
      nodes_.erase(old->id);
      return ok();
    }
    link = &tmp->sibling;
  }
  return make_error(Errno::kEINVAL, "resource {} is not among its parent's children",
                    node_words(old->start, old->end, old->name));
}

Status ResourceTree::release_resource(ResourceId r) {
  MutexLocker l(lock_);
  Node* n = lookup_locked(r);
  if (!n) return make_error(Errno::kEINVAL, "release_resource: no resource with id {}", r.raw());
  return release_resource_locked(n, ReleaseChildren::kYes);
}

Status ResourceTree::remove_resource(ResourceId r) {
  MutexLocker l(lock_);
  Node* n = lookup_locked(r);
  if (!n) return make_error(Errno::kEINVAL, "remove_resource: no resource with id {}", r.raw());
  return release_resource_locked(n, ReleaseChildren::kNo);
}

// __request_region_locked().
Result<ResourceTree::Node*> ResourceTree::request_region_locked(Node* parent, uint64_t start,
                                                                uint64_t n,
                                                                const std::string& name,
                                                                IoresourceFlags flags) {
  auto res = std::make_unique<Node>();
  res->name = name;
  res->start = start;
  res->end = start + n - 1;
  for (;;) {
    res->flags = type_bits(parent->flags) | IoresourceFlags::kBusy | flags;
    res->desc = parent->desc;
    Node* conflict = request_resource_locked(parent, res.get());
    if (!conflict) return adopt_locked(std::move(res));
    // The kernel warns here when the conflict is device-private memory ("Unaddressable
    // device %s %pR conflicts with %pR"); the error below names the conflict instead.
    if (conflict != parent && !has(conflict->flags, IoresourceFlags::kBusy)) {
      parent = conflict;
      continue;
    }
    if (has(conflict->flags & flags, IoresourceFlags::kMuxed)) {
      muxed_wait_.wait(lock_);
      continue;
    }
    const std::string what = node_words(res->start, res->end, name);
    if (conflict == parent) {
      return make_error(Errno::kEBUSY, "request_region: {} does not lie inside {}", what,
                        node_words(parent->start, parent->end, parent->name));
    }
    return make_error(
        Errno::kEBUSY, "request_region: {} conflicts with {}{}", what,
        node_words(conflict->start, conflict->end, conflict->name),
        has(conflict->flags, IoresourceFlags::kBusy) ? " (busy)" : " (overlaps it partly)");
  }
}

Result<ResourceId> ResourceTree::request_region(ResourceId parent, PhysAddr start, uint64_t n,
                                                std::string name, IoresourceFlags flags) {
  MutexLocker l(lock_);
  Node* p = lookup_locked(parent);
  if (!p) return make_error(Errno::kENOENT, "request_region: no resource with id {}", parent.raw());
  Node* res = TRY(request_region_locked(p, start.raw(), n, name, flags));
  return ResourceId(res->id);
}

Status ResourceTree::release_region(ResourceId parent, PhysAddr start, uint64_t n) {
  MutexLocker l(lock_);
  Node* p = lookup_locked(parent);
  if (!p) return make_error(Errno::kENOENT, "release_region: no resource with id {}", parent.raw());
  const uint64_t s = start.raw();
  const uint64_t e = s + n - 1;
  Node** link = &p->child;
  for (;;) {
    Node* res = *link;
    if (!res) break;
    if (res->start <= s && res->end >= e) {
      if (!has(res->flags, IoresourceFlags::kBusy)) {
        link = &res->child;
        continue;
      }
      if (res->start != s || res->end != e) break;
      *link = res->sibling;
      const bool muxed = has(res->flags, IoresourceFlags::kMuxed);
      forget_subtree_locked(res);
      if (muxed) muxed_wait_.notify_all();
      return ok();
    }
    link = &res->sibling;
  }
  return make_error(Errno::kENOENT, "Trying to free nonexistent resource <{:016x}-{:016x}>", s, e);
}

RegionIntersection ResourceTree::region_intersects_locked(const Node* parent, uint64_t start,
                                                          uint64_t end, IoresourceFlags flags,
                                                          IoresDesc desc) const {
  int type = 0;
  int other = 0;
  for (const Node* p = parent->child; p; p = p->sibling) {
    const bool is_type =
        has(p->flags, flags) && (desc == IoresDesc::kNone || desc == p->desc);
    if (p->start <= end && p->end >= start) is_type ? ++type : ++other;
  }
  if (other == 0) return type ? RegionIntersection::kIntersects : RegionIntersection::kDisjoint;
  return type ? RegionIntersection::kMixed : RegionIntersection::kDisjoint;
}

RegionIntersection ResourceTree::region_intersects(ResourceId parent, PhysAddr start,
                                                   uint64_t size, IoresourceFlags flags,
                                                   IoresDesc desc) const {
  MutexLocker l(lock_);
  const Node* p = lookup_locked(parent);
  if (!p || size == 0) return RegionIntersection::kDisjoint;
  return region_intersects_locked(p, start.raw(), start.raw() + size - 1, flags, desc);
}

Status ResourceTree::adjust_root_end(PhysAddr end) {
  MutexLocker l(lock_);
  for (const Node* c = root_->child; c; c = c->sibling) {
    if (c->end > end.raw()) {
      return make_error(Errno::kEBUSY, "cannot end the root at {}: {} lies beyond it", end,
                        node_words(c->start, c->end, c->name));
    }
  }
  root_->end = end.raw();
  return ok();
}

Result<ResourceInfo> ResourceTree::info(ResourceId r) const {
  MutexLocker l(lock_);
  const Node* n = lookup_locked(r);
  if (!n) return make_error(Errno::kENOENT, "no resource with id {}", r.raw());
  return snapshot_locked(n);
}

Result<std::vector<ResourceInfo>> ResourceTree::children(ResourceId r) const {
  MutexLocker l(lock_);
  const Node* n = lookup_locked(r);
  if (!n) return make_error(Errno::kENOENT, "no resource with id {}", r.raw());
  std::vector<ResourceInfo> out;
  for (const Node* c = n->child; c; c = c->sibling) out.push_back(snapshot_locked(c));
  return out;
}

std::vector<ResourceInfo> ResourceTree::walk() const {
  MutexLocker l(lock_);
  std::vector<ResourceInfo> out;
  // next_resource(): child first, else the next sibling of the nearest ancestor that has one.
  const Node* n = root_->child;
  while (n) {
    out.push_back(snapshot_locked(n));
    if (n->child) {
      n = n->child;
      continue;
    }
    while (!n->sibling && n->parent && n->parent != root_) n = n->parent;
    n = n->sibling;
  }
  return out;
}

size_t ResourceTree::size() const {
  MutexLocker l(lock_);
  return nodes_.size() - 1;
}

std::vector<PhysRange> ResourceTree::child_ranges_locked(const Node* parent) const {
  std::vector<PhysRange> out;
  for (const Node* c = parent->child; c; c = c->sibling) out.push_back(c->range());
  return out;
}

}  // namespace dpmm::phys
