#include "page/node.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace dpmm::page {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMiB = uint64_t{1} << 20;

Pfn pfn_at(uint64_t bytes) { return Pfn::from_phys(PhysAddr(bytes)); }

NodeConfig small_x86_node() {
  NodeConfig c;
  // 1 MiB .. 2 GiB below 4 GiB, and 4 GiB .. 4.5 GiB above.
  c.ram = {{pfn_at(1 * kMiB), pfn_at(2 * kGiB)}, {pfn_at(4 * kGiB), pfn_at(4 * kGiB + 512 * kMiB)}};
  return c;
}

TEST(NodeTest, X86ZoneBoundaries) {
  auto node = Node::create(small_x86_node()).value();
  ASSERT_TRUE(node->has_zone(ZoneType::kDma32));
  ASSERT_TRUE(node->has_zone(ZoneType::kNormal));
  EXPECT_FALSE(node->has_zone(ZoneType::kMovable));
  EXPECT_TRUE(node->has_zone(ZoneType::kDevice));
  EXPECT_FALSE(node->has_zone(ZoneType::kDevicePrivate));
  EXPECT_EQ(node->zone_if_present(ZoneType::kMovable).error().code(), Errno::kENOENT);

  const ZoneStats dma32 = node->zone(ZoneType::kDma32).stats();
  EXPECT_EQ(dma32.zone_start_pfn, pfn_at(1 * kMiB));
  EXPECT_EQ(dma32.present, PageCount((2 * kGiB - 1 * kMiB) / 4096));
  EXPECT_EQ(dma32.spanned, dma32.present);
  const ZoneStats normal = node->zone(ZoneType::kNormal).stats();
  EXPECT_EQ(normal.zone_start_pfn, pfn_at(4 * kGiB));
  EXPECT_EQ(normal.present, PageCount(512 * kMiB / 4096));

  EXPECT_EQ(node->zone_for_pfn(pfn_at(1 * kGiB)).value()->type(), ZoneType::kDma32);
  EXPECT_EQ(node->zone_for_pfn(pfn_at(4 * kGiB)).value()->type(), ZoneType::kNormal);
  // 3 GiB is a hole, but zone boundaries say DMA32 spans below 4 GiB.
  EXPECT_EQ(node->zone_for_pfn(pfn_at(3 * kGiB)).value()->type(), ZoneType::kDma32);
  EXPECT_EQ(node->zone_for_pfn(pfn_at(5 * kGiB)).error().code(), Errno::kENOENT);

  // Allocation prefers the highest zone and page_zone finds it back from the flags.
  Page* p = node->alloc_pages(Order(0)).value();
  EXPECT_EQ(p->zone_id(), ZoneType::kNormal);
  EXPECT_EQ(&node->page_zone(p), &node->zone(ZoneType::kNormal));
  EXPECT_EQ(node->memmap().page_to_pfn(p).value() >= pfn_at(4 * kGiB), true);
  node->free_pages(p, Order(0));
  Page* low = node->alloc_pages(Order(0), ZoneType::kDma32).value();
  EXPECT_EQ(low->zone_id(), ZoneType::kDma32);
  node->free_pages(low, Order(0));
}

TEST(NodeTest, MovableZoneWhenConfigured) {
  NodeConfig c = small_x86_node();
  c.movable_start = pfn_at(4 * kGiB + 256 * kMiB);
  c.device_private_zone = DevicePrivateZone::kPresent;
  auto node = Node::create(c).value();
  ASSERT_TRUE(node->has_zone(ZoneType::kMovable));
  ASSERT_TRUE(node->has_zone(ZoneType::kDevicePrivate));
  EXPECT_EQ(node->zone(ZoneType::kNormal).stats().present, PageCount(256 * kMiB / 4096));
  EXPECT_EQ(node->zone(ZoneType::kMovable).stats().present, PageCount(256 * kMiB / 4096));
  EXPECT_EQ(node->zone(ZoneType::kMovable).stats().zone_start_pfn, *c.movable_start);
  EXPECT_EQ(node->zone_for_pfn(*c.movable_start).value()->type(), ZoneType::kMovable);
  EXPECT_EQ(node->alloc_pages(Order(3)).value()->zone_id(), ZoneType::kMovable);
  EXPECT_EQ(node->alloc_pages(Order(3), ZoneType::kNormal).value()->zone_id(), ZoneType::kNormal);
  EXPECT_EQ(node->alloc_pages(Order(0), ZoneType::kDevice).error().code(), Errno::kEINVAL);
}

TEST(NodeTest, FallbackToLowerZonesThenEnomem) {
  NodeConfig c;
  c.ram = {{pfn_at(0), pfn_at(4 * kMiB)}, {pfn_at(4 * kGiB), pfn_at(4 * kGiB + 4 * kMiB)}};
  auto node = Node::create(c).value();
  std::vector<Page*> got;
  for (int i = 0; i < 2; ++i) got.push_back(node->alloc_pages(Order(10)).value());
  EXPECT_EQ(got[0]->zone_id(), ZoneType::kNormal);
  EXPECT_EQ(got[1]->zone_id(), ZoneType::kDma32);
  Result<Page*> none = node->alloc_pages(Order(0));
  ASSERT_TRUE(none.is_error());
  EXPECT_EQ(none.error().code(), Errno::kENOMEM);
  for (Page* p : got) node->free_pages(p, Order(10));
  EXPECT_EQ(node->zone(ZoneType::kNormal).stats().nr_free_pages, 1024u);
}

TEST(NodeTest, RejectsBadConfigs) {
  NodeConfig c;
  EXPECT_EQ(Node::create(c).error().code(), Errno::kEINVAL);  // no RAM
  c.ram = {{pfn_at(4 * kGiB), pfn_at(4 * kGiB)}};
  EXPECT_EQ(Node::create(c).error().code(), Errno::kEINVAL);  // empty range
  c.ram = {{pfn_at(4 * kGiB), pfn_at(5 * kGiB)}, {pfn_at(4 * kGiB + kMiB), pfn_at(6 * kGiB)}};
  EXPECT_EQ(Node::create(c).error().code(), Errno::kEINVAL);  // overlap
  c.ram = {{pfn_at(4 * kGiB), pfn_at(5 * kGiB)}};
  c.movable_start = pfn_at(4 * kGiB) + PageCount(3);
  EXPECT_EQ(Node::create(c).error().code(), Errno::kEINVAL);  // misaligned movable
  c.movable_start.reset();
  c.nid = 64;
  EXPECT_EQ(Node::create(c).error().code(), Errno::kEINVAL);  // node id too large
  // arm64 with the vmemmap at memstart_addr = 2 GiB: RAM below it has no descriptors.
  NodeConfig a;
  a.arch = arch::arm64_params();
  a.window = arch::vmemmap_window(a.arch, PhysAddr(2 * kGiB));
  a.ram = {{pfn_at(1 * kGiB), pfn_at(3 * kGiB)}};
  Result<std::unique_ptr<Node>> r = Node::create(a);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kERANGE);
  a.ram = {{pfn_at(2 * kGiB), pfn_at(3 * kGiB)}};
  EXPECT_TRUE(Node::create(a).is_ok());
}

TEST(NodeTest, DeferredInitBuildsA256GiBNodeFast) {
  NodeConfig c;
  c.ram = {{pfn_at(1 * kMiB), pfn_at(3 * kGiB)}, {pfn_at(4 * kGiB), pfn_at(257 * kGiB)}};
  const auto t0 = std::chrono::steady_clock::now();
  auto node = Node::create(c).value();
  const auto build = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(build).count(), 1000);

  const uint64_t total = (3 * kGiB - 1 * kMiB + 253 * kGiB) / 4096;
  Zone& normal = node->zone(ZoneType::kNormal);
  const ZoneStats s0 = normal.stats();
  EXPECT_EQ(s0.present, PageCount(253 * kGiB / 4096));
  EXPECT_EQ(s0.spanned, s0.present);
  EXPECT_EQ(s0.managed, PageCount(32768)) << "one section initialised up front";
  EXPECT_EQ(s0.deferred, s0.present - s0.managed);
  EXPECT_EQ(node->zone(ZoneType::kDma32).stats().present.raw() + s0.present.raw(), total);
  // Descriptors: reserved for every section, touched only for the initialised ones.
  EXPECT_EQ(node->memmap().nr_present_sections(), 24u + 2024u);
  EXPECT_EQ(node->memmap().descriptor_bytes_initialized(),
            (32768u - 256u + 32768u) * 64u);  // DMA32's first section starts at 1 MiB

  // Take more than the initialised section holds: the zone grows on demand.
  std::vector<Page*> got;
  for (int i = 0; i < 100; ++i) got.push_back(node->alloc_pages(Order(10)).value());
  for (Page* p : got) EXPECT_EQ(p->zone_id(), ZoneType::kNormal);
  const ZoneStats s1 = normal.stats();
  EXPECT_EQ(s1.managed, PageCount(4 * 32768)) << "grown by whole sections";
  EXPECT_EQ(s1.nr_deferred_grows, 3u);
  EXPECT_EQ(s1.nr_free_pages, 4u * 32768 - 100 * 1024);
  EXPECT_TRUE(normal.check().is_ok());
  for (Page* p : got) node->free_pages(p, Order(10));
  EXPECT_EQ(normal.stats().nr_free_blocks[10], 4u * 32);
}

TEST(NodeTest, DeferredInitAllMatchesEagerInit) {
  NodeConfig c;
  c.ram = {{pfn_at(4 * kGiB), pfn_at(4 * kGiB + 384 * kMiB + 12 * 4096)}};
  auto lazy = Node::create(c).value();
  c.deferred_init = DeferredInit::kNo;
  auto eager = Node::create(c).value();
  EXPECT_NE(lazy->zone(ZoneType::kNormal).stats().managed,
            eager->zone(ZoneType::kNormal).stats().managed);
  lazy->deferred_init_all();
  const ZoneStats a = lazy->zone(ZoneType::kNormal).stats();
  const ZoneStats b = eager->zone(ZoneType::kNormal).stats();
  EXPECT_EQ(a.managed, b.managed);
  EXPECT_EQ(a.present, a.managed);
  EXPECT_EQ(a.deferred, PageCount(0));
  EXPECT_EQ(a.nr_free_pages, b.nr_free_pages);
  EXPECT_EQ(a.nr_free_blocks, b.nr_free_blocks);
  EXPECT_FALSE(lazy->zone(ZoneType::kNormal).deferred_grow_zone());
}

TEST(NodeTest, DeviceZonesCountPagemapPagesApart) {
  NodeConfig c = small_x86_node();
  c.device_private_zone = DevicePrivateZone::kPresent;
  auto node = Node::create(c).value();
  Zone& dev = node->zone(ZoneType::kDevice);
  Zone& priv = node->zone(ZoneType::kDevicePrivate);
  EXPECT_FALSE(dev.has_buddy());
  EXPECT_EQ(dev.alloc_pages(Order(0)).error().code(), Errno::kEINVAL);
  // A legacy pagemap in physical address space widens the span; an offset-addressed one not.
  const PfnRange phys{pfn_at(64 * kGiB), pfn_at(64 * kGiB + 256 * kMiB)};
  ASSERT_TRUE(dev.add_device_pages(phys.pages(), phys).is_ok());
  ASSERT_TRUE(priv.add_device_pages(PageCount(1000), std::nullopt).is_ok());
  EXPECT_EQ(dev.stats().present, PageCount(65536));
  EXPECT_EQ(dev.stats().zone_start_pfn, phys.start);
  EXPECT_EQ(dev.stats().spanned, PageCount(65536));
  EXPECT_TRUE(dev.spans(phys.start));
  EXPECT_EQ(priv.stats().present, PageCount(1000));
  EXPECT_EQ(priv.stats().spanned, PageCount(0));
  EXPECT_EQ(node->zone(ZoneType::kNormal).stats().present, PageCount(131072))
      << "device memory is not counted with RAM";
  EXPECT_EQ(priv.remove_device_pages(PageCount(1001)).error().code(), Errno::kEINVAL);
  ASSERT_TRUE(priv.remove_device_pages(PageCount(1000)).is_ok());
  EXPECT_EQ(priv.stats().present, PageCount(0));
  EXPECT_EQ(node->zone(ZoneType::kNormal).add_device_pages(PageCount(1), std::nullopt)
                .error()
                .code(),
            Errno::kEINVAL);

  const std::string info = node->zoneinfo();
  EXPECT_NE(info.find("Node 0, zone    DMA32"), std::string::npos) << info;
  EXPECT_NE(info.find("zone DevicePrivate\n  pages free     0\n        spanned  0\n"
                      "        present  0"),
            std::string::npos)
      << info;
  EXPECT_NE(info.find("zone   Device\n  pages free     0\n        spanned  65536\n"
                      "        present  65536"),
            std::string::npos)
      << info;
}

}  // namespace
}  // namespace dpmm::page
