#include "page/node.h"

#include <algorithm>
#include <cassert>

#include "base/bits.h"

namespace dpmm::page {

namespace {

// 4 GiB: the top of ZONE_DMA32 (MAX_DMA32_PFN, arch/x86/include/asm/dma.h).
constexpr Pfn kMaxDma32Pfn = Pfn((uint64_t{4} << 30) >> kPageShift);

// The parts of `ram` inside [lo, hi).
std::vector<PfnRange> clip(const std::vector<PfnRange>& ram, Pfn lo, Pfn hi) {
  std::vector<PfnRange> out;
  for (const PfnRange& r : ram) {
    const Pfn s = std::max(r.start, lo);
    const Pfn e = std::min(r.end, hi);
    if (s < e) out.push_back(PfnRange{s, e});
  }
  return out;
}

Status validate(const NodeConfig& c, const Memmap& memmap) {
  if (!bits::fits(c.nid, kNodesWidth)) {
    return make_error(Errno::kEINVAL, "node {}: ids above {} do not fit the page flags", c.nid,
                      (1u << kNodesWidth) - 1);
  }
  if (c.ram.empty()) return make_error(Errno::kEINVAL, "node {}: no RAM ranges", c.nid);
  for (size_t i = 0; i < c.ram.size(); ++i) {
    const PfnRange& r = c.ram[i];
    if (r.empty()) return make_error(Errno::kEINVAL, "node {}: empty RAM range {}", c.nid, r);
    if (i > 0 && c.ram[i - 1].end > r.start) {
      return make_error(Errno::kEINVAL, "node {}: RAM range {} unsorted or overlapping {}", c.nid,
                        r, c.ram[i - 1]);
    }
    if (!memmap.in_window(r.start) || !memmap.in_window(r.end - PageCount(1))) {
      return make_error(Errno::kERANGE,
                        "node {}: RAM {} lies outside the {} vmemmap window [{}, {}): its "
                        "descriptors would lie beyond the end of vmemmap",
                        c.nid, r, arch::arch_name(c.arch.kind), c.window.start, c.window.end);
    }
  }
  if (c.movable_start.has_value() &&
      c.movable_start->raw() % (uint64_t{1} << kMaxPageOrder) != 0) {
    return make_error(Errno::kEINVAL, "node {}: movable_start {} is not {}-page aligned", c.nid,
                      *c.movable_start, uint64_t{1} << kMaxPageOrder);
  }
  return ok();
}

}  // namespace

Node::Node(NodeConfig config) : config_(std::move(config)) {}

Result<std::unique_ptr<Node>> Node::create(NodeConfig config) {
  std::unique_ptr<Node> node(new Node(std::move(config)));
  const NodeConfig& c = node->config_;
  node->memmap_ = std::make_unique<Memmap>(c.arch, c.window);
  Memmap& mm = *node->memmap_;
  TRY(validate(c, mm));

  // Sections covering the RAM (a section shared by two ranges is added once).
  const uint64_t per = mm.pages_per_section().raw();
  uint64_t next_free_section = 0;
  for (const PfnRange& r : c.ram) {
    uint64_t first = mm.pfn_to_section_nr(r.start);
    const uint64_t last = mm.pfn_to_section_nr(r.end - PageCount(1));
    first = std::max(first, next_free_section);
    if (first > last) continue;
    TRY(mm.add_sections(mm.section_nr_to_pfn(first), PageCount((last - first + 1) * per)));
    next_free_section = last + 1;
  }

  const Pfn node_end = c.ram.back().end;
  const Pfn movable = c.movable_start.value_or(node_end);
  const Pfn normal_end = std::min(movable, node_end);
  node->zone_range_[static_cast<unsigned>(ZoneType::kDma32)] =
      PfnRange{Pfn(0), std::min(kMaxDma32Pfn, normal_end)};
  node->zone_range_[static_cast<unsigned>(ZoneType::kNormal)] =
      PfnRange{std::min(kMaxDma32Pfn, normal_end), normal_end};
  node->zone_range_[static_cast<unsigned>(ZoneType::kMovable)] = PfnRange{normal_end, node_end};
  for (ZoneType t : {ZoneType::kDma32, ZoneType::kNormal, ZoneType::kMovable}) {
    const unsigned i = static_cast<unsigned>(t);
    const PfnRange zr = *node->zone_range_[i];
    std::vector<PfnRange> ram = clip(c.ram, zr.start, zr.end);
    if (ram.empty()) {
      node->zone_range_[i].reset();
      continue;
    }
    node->zones_[i] = std::make_unique<Zone>(t, c.nid, mm, std::move(ram), c.deferred_init);
  }
  node->zones_[static_cast<unsigned>(ZoneType::kDevice)] =
      std::make_unique<Zone>(ZoneType::kDevice, c.nid, mm);
  if (c.device_private_zone == DevicePrivateZone::kPresent) {
    node->zones_[static_cast<unsigned>(ZoneType::kDevicePrivate)] =
        std::make_unique<Zone>(ZoneType::kDevicePrivate, c.nid, mm);
  }
  return node;
}

Zone& Node::zone(ZoneType t) {
  assert(has_zone(t) && "node has no such zone");
  return *zones_[static_cast<unsigned>(t)];
}

const Zone& Node::zone(ZoneType t) const {
  assert(has_zone(t) && "node has no such zone");
  return *zones_[static_cast<unsigned>(t)];
}

Result<Zone*> Node::zone_if_present(ZoneType t) {
  if (!has_zone(t)) {
    return make_error(Errno::kENOENT, "node {} has no {} zone", nid(), zone_type_name(t));
  }
  return zones_[static_cast<unsigned>(t)].get();
}

Result<Zone*> Node::zone_for_pfn(Pfn pfn) {
  for (ZoneType t : {ZoneType::kDma32, ZoneType::kNormal, ZoneType::kMovable}) {
    const auto& r = zone_range_[static_cast<unsigned>(t)];
    if (r.has_value() && r->contains(pfn)) return zones_[static_cast<unsigned>(t)].get();
  }
  return make_error(Errno::kENOENT, "{} is in no RAM zone of node {}", pfn, nid());
}

Zone& Node::page_zone(const Page* page) {
  assert(page->node_id() == nid() && "page of another node");
  return zone(page->zone_id());
}

Result<Page*> Node::alloc_pages(Order order, ZoneType highest) {
  if (zone_is_device(highest) || highest == ZoneType::kCount) {
    return make_error(Errno::kEINVAL, "alloc_pages: {} is not a RAM zone",
                      zone_type_name(highest));
  }
  std::optional<Error> last;
  for (int i = static_cast<int>(highest); i >= 0; --i) {
    const ZoneType t = static_cast<ZoneType>(i);
    if (!has_zone(t)) continue;
    Result<Page*> r = zone(t).alloc_pages(order);
    if (r.is_ok()) return r;
    if (r.error().code() != Errno::kENOMEM) return r;
    last = r.error();
  }
  if (last.has_value()) {
    return make_error(Errno::kENOMEM, "alloc_pages: node {} has no free {} block in any zone "
                      "up to {}", nid(), order, zone_type_name(highest));
  }
  return make_error(Errno::kENOMEM, "alloc_pages: node {} has no RAM zone up to {}", nid(),
                    zone_type_name(highest));
}

void Node::deferred_init_all() {
  for (auto& z : zones_) {
    if (z != nullptr) z->deferred_init_all();
  }
}

std::string Node::zoneinfo() const {
  std::string out;
  for (const auto& z : zones_) {
    if (z != nullptr) out += format_zoneinfo(z->stats());
  }
  return out;
}

}  // namespace dpmm::page
