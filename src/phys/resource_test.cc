#include "phys/resource.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "base/thread.h"

namespace dpmm::phys {
namespace {

using F = IoresourceFlags;

PhysRange R(uint64_t start, uint64_t end) { return PhysRange{PhysAddr(start), PhysAddr(end)}; }

NewResource Mem(uint64_t start, uint64_t end, std::string name, F flags = F::kMem) {
  return NewResource{R(start, end), std::move(name), flags, IoresDesc::kNone};
}

// The tree as "depth:start-end:name" lines, for exact comparisons.
std::vector<std::string> shape(const ResourceTree& t) {
  std::vector<std::string> out;
  for (const ResourceInfo& r : t.walk()) {
    out.push_back(fmt::format("{}:{:x}-{:x}:{}", r.depth, r.range.start.raw(), r.range.end.raw(),
                              r.name));
  }
  return out;
}

TEST(ResourceTree, RequestResourceConflictsAreEbusy) {
  ResourceTree t(PhysAddr(0xffff'ffff));
  const ResourceId a = *t.request_resource(t.root(), Mem(0x1000, 0x1fff, "a"));
  ASSERT_TRUE(t.request_resource(t.root(), Mem(0x3000, 0x3fff, "b")).is_ok());

  auto overlap = t.request_resource(t.root(), Mem(0x1800, 0x27ff, "c"));
  ASSERT_TRUE(overlap.is_error());
  EXPECT_EQ(overlap.error().code(), Errno::kEBUSY);
  EXPECT_NE(overlap.error().message().find("conflicts with [P0x1000-P0x1fff] 'a'"),
            std::string::npos)
      << overlap.error().message();

  // Containing an existing resource is a conflict too: request_resource never adopts.
  EXPECT_EQ(t.request_resource(t.root(), Mem(0x0, 0x4fff, "big")).error().code(), Errno::kEBUSY);
  // Outside the root, and end < start, conflict with the root itself.
  auto outside = t.request_resource(t.root(), Mem(0xffff'f000, 0x1'0000'0fff, "out"));
  EXPECT_EQ(outside.error().code(), Errno::kEBUSY);
  EXPECT_NE(outside.error().message().find("does not lie inside"), std::string::npos);
  EXPECT_EQ(t.request_resource(t.root(), Mem(0x9000, 0x8fff, "neg")).error().code(), Errno::kEBUSY);

  // A child must lie inside its parent; siblings inside it are sorted.
  ASSERT_TRUE(t.request_resource(a, Mem(0x1800, 0x18ff, "a.2")).is_ok());
  ASSERT_TRUE(t.request_resource(a, Mem(0x1000, 0x10ff, "a.1")).is_ok());
  EXPECT_EQ(t.request_resource(a, Mem(0x1f00, 0x20ff, "a.x")).error().code(), Errno::kEBUSY);
  EXPECT_EQ(shape(t), (std::vector<std::string>{"0:1000-1fff:a", "1:1000-10ff:a.1",
                                                "1:1800-18ff:a.2", "0:3000-3fff:b"}));
  EXPECT_EQ(t.size(), 4u);
}

TEST(ResourceTree, InsertResourceAdoptsCoveredChildren) {
  ResourceTree t;
  ASSERT_TRUE(t.request_resource(t.root(), Mem(0x1000, 0x1fff, "a")).is_ok());
  ASSERT_TRUE(t.request_resource(t.root(), Mem(0x3000, 0x3fff, "b")).is_ok());
  ASSERT_TRUE(t.request_resource(t.root(), Mem(0x8000, 0x8fff, "c")).is_ok());

  const ResourceId win = *t.insert_resource(t.root(), Mem(0x0, 0x4fff, "window"));
  EXPECT_EQ(shape(t), (std::vector<std::string>{"0:0-4fff:window", "1:1000-1fff:a",
                                                "1:3000-3fff:b", "0:8000-8fff:c"}));
  EXPECT_EQ(t.info(win)->child_count, 2u);

  // Inside "window", partly overlapping "a": the conflict is "a".
  auto partial = t.insert_resource(t.root(), Mem(0x1800, 0x37ff, "partial"));
  ASSERT_TRUE(partial.is_error());
  EXPECT_EQ(partial.error().code(), Errno::kEBUSY);
  EXPECT_NE(partial.error().message().find("'a'"), std::string::npos) << partial.error().message();

  // Descends into "window" and sits between a and b.
  ASSERT_TRUE(t.insert_resource(t.root(), Mem(0x2000, 0x2fff, "gap")).is_ok());
  // An exact duplicate of "b" goes in above it (the kernel's equal-range rule).
  ASSERT_TRUE(t.insert_resource(t.root(), Mem(0x3000, 0x3fff, "b-parent")).is_ok());
  EXPECT_EQ(shape(t),
            (std::vector<std::string>{"0:0-4fff:window", "1:1000-1fff:a", "1:2000-2fff:gap",
                                      "1:3000-3fff:b-parent", "2:3000-3fff:b", "0:8000-8fff:c"}));

  // remove_resource hands the children back; release_resource drops the subtree.
  ASSERT_TRUE(t.remove_resource(win).is_ok());
  EXPECT_EQ(shape(t), (std::vector<std::string>{"0:1000-1fff:a", "0:2000-2fff:gap",
                                                "0:3000-3fff:b-parent", "1:3000-3fff:b",
                                                "0:8000-8fff:c"}));
  EXPECT_EQ(t.info(win).error().code(), Errno::kENOENT);
  const ResourceId bp = t.children(t.root())->at(2).id;
  const ResourceId b = t.children(bp)->at(0).id;
  ASSERT_TRUE(t.release_resource(bp).is_ok());
  EXPECT_EQ(t.info(b).error().code(), Errno::kENOENT);
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.release_resource(t.root()).error().code(), Errno::kEINVAL);
  EXPECT_EQ(t.release_resource(bp).error().code(), Errno::kEINVAL);
}

TEST(ResourceTree, RequestRegionNestsInsideNonBusyResources) {
  ResourceTree t;
  const ResourceId ram =
      *t.request_resource(t.root(), Mem(0x0, 0xfff'ffff, "System RAM", F::kSystemRam | F::kBusy));
  const ResourceId win =
      *t.request_resource(t.root(), NewResource{R(0x1000'0000, 0x1fff'ffff), "PCI Bus 0000:00",
                                                F::kMem | F::kWindow, IoresDesc::kNone});
  const ResourceId bar = *t.request_resource(win, Mem(0x1000'0000, 0x100f'ffff, "0000:01:00.0"));

  // Lands inside the BAR (non-busy window -> non-busy BAR), busy, with the window's type.
  const ResourceId drv = *t.request_region(t.root(), PhysAddr(0x1000'0000), 0x1000, "mydrv");
  const ResourceInfo d = *t.info(drv);
  EXPECT_EQ(d.parent, bar);
  EXPECT_EQ(d.depth, 2u);
  EXPECT_EQ(d.flags, F::kMem | F::kBusy);
  EXPECT_EQ(d.range, R(0x1000'0000, 0x1000'0fff));

  // Busy things block: RAM, and the driver's own claim.
  auto in_ram = t.request_region(t.root(), PhysAddr(0x1000), 0x1000, "x");
  ASSERT_TRUE(in_ram.is_error());
  EXPECT_EQ(in_ram.error().code(), Errno::kEBUSY);
  EXPECT_NE(in_ram.error().message().find("'System RAM' (busy)"), std::string::npos)
      << in_ram.error().message();
  EXPECT_EQ(t.request_region(t.root(), PhysAddr(0x1000'0800), 0x100, "y").error().code(),
            Errno::kEBUSY);
  // Straddling the window's start: nests into the window, which does not contain it.
  EXPECT_EQ(t.request_region(t.root(), PhysAddr(0x0fff'f000), 0x2000, "z").error().code(),
            Errno::kEBUSY);
  // The system RAM flag is copied from a System RAM parent only, not from an MEM window.
  ASSERT_TRUE(t.remove_resource(ram).is_ok());
  const ResourceId low = *t.request_region(t.root(), PhysAddr(0x2000), 0x1000, "low");
  EXPECT_EQ(t.info(low)->flags, F::kMem | F::kBusy);

  // __release_region looks through non-busy resources for an exact busy match.
  auto wrong = t.release_region(t.root(), PhysAddr(0x1000'0000), 0x800);
  ASSERT_TRUE(wrong.is_error());
  EXPECT_EQ(wrong.error().message(),
            "Trying to free nonexistent resource <0000000010000000-00000000100007ff>");
  ASSERT_TRUE(t.release_region(t.root(), PhysAddr(0x1000'0000), 0x1000).is_ok());
  EXPECT_EQ(t.info(drv).error().code(), Errno::kENOENT);
  EXPECT_EQ(t.children(bar)->size(), 0u);
}

TEST(ResourceTree, MuxedRequestWaitsForRelease) {
  ResourceTree t;
  ASSERT_TRUE(t.request_region(t.root(), PhysAddr(0x1000), 0x10, "first", F::kMuxed).is_ok());
  // Without kMuxed in the request the conflict is plain EBUSY.
  EXPECT_EQ(t.request_region(t.root(), PhysAddr(0x1000), 0x10, "plain").error().code(),
            Errno::kEBUSY);
  std::atomic<bool> got{false};
  Thread waiter("muxed-waiter", [&] {
    auto r = t.request_region(t.root(), PhysAddr(0x1000), 0x10, "second", F::kMuxed);
    EXPECT_TRUE(r.is_ok());
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(got.load());
  ASSERT_TRUE(t.release_region(t.root(), PhysAddr(0x1000), 0x10).is_ok());
  waiter.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(t.walk().at(0).name, "second");
}

TEST(ResourceTree, RegionIntersectsLooksAtDirectChildrenOnly) {
  ResourceTree t;
  const ResourceId ram = *t.request_resource(
      t.root(), Mem(0x0, 0xffff, "System RAM", F::kSystemRam | F::kBusy));
  ASSERT_TRUE(t.request_resource(t.root(), NewResource{R(0x10000, 0x1ffff), "Reserved", F::kMem,
                                                       IoresDesc::kReserved})
                  .is_ok());
  ASSERT_TRUE(t.request_resource(ram, Mem(0x8000, 0x8fff, "Kernel code", F::kMem)).is_ok());
  const F sysram = F::kSystemRam;
  EXPECT_EQ(t.region_intersects(t.root(), PhysAddr(0x1000), 0x1000, sysram, IoresDesc::kNone),
            RegionIntersection::kIntersects);
  EXPECT_EQ(t.region_intersects(t.root(), PhysAddr(0xf000), 0x2000, sysram, IoresDesc::kNone),
            RegionIntersection::kMixed);
  EXPECT_EQ(t.region_intersects(t.root(), PhysAddr(0x10000), 0x1000, sysram, IoresDesc::kNone),
            RegionIntersection::kDisjoint);
  EXPECT_EQ(t.region_intersects(t.root(), PhysAddr(0x30000), 0x1000, sysram, IoresDesc::kNone),
            RegionIntersection::kDisjoint);
  EXPECT_EQ(t.region_intersects(t.root(), PhysAddr(0x10000), 0x1000, F::kMem,
                                IoresDesc::kReserved),
            RegionIntersection::kIntersects);
  // flags 0 and IORES_DESC_NONE match everything (what get_free_mem_region asks).
  EXPECT_EQ(t.region_intersects(t.root(), PhysAddr(0xf000), 0x2000, F::kNone, IoresDesc::kNone),
            RegionIntersection::kIntersects);
  // Under `ram`, only "Kernel code" (not System RAM flagged) is a child.
  EXPECT_EQ(t.region_intersects(ram, PhysAddr(0x8000), 0x10, sysram, IoresDesc::kNone),
            RegionIntersection::kDisjoint);
}

TEST(ResourceTree, AdjustRootEndAndClone) {
  ResourceTree t;
  ASSERT_TRUE(t.request_resource(t.root(), Mem(0x1000, 0x1fff, "a")).is_ok());
  EXPECT_EQ(t.adjust_root_end(PhysAddr(0x1800)).error().code(), Errno::kEBUSY);
  ASSERT_TRUE(t.adjust_root_end(PhysAddr(0xffff)).is_ok());
  EXPECT_EQ(t.info(t.root())->range, R(0, 0xffff));
  auto c = t.clone();
  ASSERT_TRUE(c->request_resource(c->root(), Mem(0x2000, 0x2fff, "only-in-clone")).is_ok());
  EXPECT_EQ(shape(t), (std::vector<std::string>{"0:1000-1fff:a"}));
  EXPECT_EQ(shape(*c), (std::vector<std::string>{"0:1000-1fff:a", "0:2000-2fff:only-in-clone"}));
  EXPECT_EQ(c->info(c->root())->range, R(0, 0xffff));
}

// Every resource lies inside its parent, and siblings are sorted and disjoint.
void check_invariants(const ResourceTree& t) {
  std::map<uint64_t, ResourceInfo> by_id;
  const ResourceInfo root = *t.info(t.root());
  by_id[root.id.raw()] = root;
  const auto all = t.walk();
  for (const ResourceInfo& r : all) by_id[r.id.raw()] = r;
  std::map<uint64_t, const ResourceInfo*> last_child;
  for (const ResourceInfo& r : all) {
    RC_ASSERT(r.range.start <= r.range.end);
    const ResourceInfo& p = by_id.at(r.parent.raw());
    RC_ASSERT(p.range.contains(r.range));
    auto it = last_child.find(r.parent.raw());
    if (it != last_child.end()) RC_ASSERT(it->second->range.end < r.range.start);
    last_child[r.parent.raw()] = &by_id.at(r.id.raw());
  }
  RC_ASSERT(all.size() == t.size());
}

RC_GTEST_PROP(ResourceTreeProperty, RandomOperationsKeepTheTreeWellFormed, ()) {
  ResourceTree t(PhysAddr(0xffff));
  std::vector<ResourceId> ids{t.root()};
  const int steps = *rc::gen::inRange(1, 60);
  for (int i = 0; i < steps; ++i) {
    const uint64_t start = *rc::gen::inRange<uint64_t>(0, 0x10000) & ~uint64_t{0xff};
    const uint64_t len = (*rc::gen::inRange<uint64_t>(1, 0x40)) << 8;
    const ResourceId target = *rc::gen::elementOf(ids);
    const F flags = *rc::gen::element(F::kMem, F::kMem | F::kBusy);
    const auto nr = Mem(start, start + len - 1, fmt::format("r{}", i), flags);
    switch (*rc::gen::inRange(0, 5)) {
      case 0:
        if (auto r = t.request_resource(target, nr); r.is_ok()) ids.push_back(*r);
        break;
      case 1:
        if (auto r = t.insert_resource(target, nr); r.is_ok()) ids.push_back(*r);
        break;
      case 2:
        if (auto r = t.request_region(target, PhysAddr(start), len, nr.name); r.is_ok()) {
          ids.push_back(*r);
        }
        break;
      case 3:
        (void)t.release_resource(target);
        break;
      case 4:
        (void)t.remove_resource(target);
        break;
    }
    check_invariants(t);
  }
}

}  // namespace
}  // namespace dpmm::phys
