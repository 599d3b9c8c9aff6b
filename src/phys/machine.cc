#include "phys/machine.h"

#include <fmt/format.h>

#include "base/size.h"

namespace dpmm::phys {

namespace {

constexpr unsigned kTbShift = 40;  // TB_SHIFT in arch/x86/mm/kaslr.c
constexpr unsigned kMinPhysBits = 32;
constexpr unsigned kMaxPhysBits = 52;
constexpr unsigned kMaxPaddingTb = 1024;

}  // namespace

std::string_view kaslr_name(Kaslr k) { return k == Kaslr::kOn ? "on" : "off"; }

std::string_view arm64_physmem_end_name(Arm64PhysmemEnd e) {
  switch (e) {
    case Arm64PhysmemEnd::kBeforeFix: return "before-fix";
    case Arm64PhysmemEnd::kAfterFix: return "after-fix";
  }
  return "?";
}

Result<Machine> Machine::create(MachineConfig config, std::unique_ptr<ResourceTree> tree) {
  assert(tree && "a machine needs a resource tree");
  if (config.phys_bits < kMinPhysBits || config.phys_bits > kMaxPhysBits) {
    return make_error(Errno::kEINVAL, "machine '{}': phys_bits = {} is outside [{}, {}]",
                      config.name, config.phys_bits, kMinPhysBits, kMaxPhysBits);
  }
  if (config.arch == arch::ArchKind::kArm64 && config.paging == arch::PagingMode::kFiveLevel) {
    return make_error(Errno::kEINVAL, "machine '{}': 5-level paging (LA57) is x86_64 only",
                      config.name);
  }
  if (config.kaslr_padding_tb > kMaxPaddingTb) {
    return make_error(Errno::kEINVAL, "machine '{}': kaslr_padding_tb = {} is above {}",
                      config.name, config.kaslr_padding_tb, kMaxPaddingTb);
  }
  const PhysAddr phys_end((uint64_t{1} << config.phys_bits) - 1);
  for (const ResourceInfo& r : MUST(tree->children(tree->root()), "the root always exists")) {
    if (r.range.end > phys_end) {
      return make_error(Errno::kEINVAL,
                        "machine '{}': {} lies beyond the {}-bit physical address space "
                        "(which ends at {})",
                        config.name, describe_resource(r), config.phys_bits, phys_end);
    }
  }
  if (config.arch == arch::ArchKind::kArm64 && !config.memstart_addr.is_page_aligned()) {
    return make_error(Errno::kEINVAL, "machine '{}': memstart_addr {} is not page aligned",
                      config.name, config.memstart_addr);
  }
  Machine m(std::move(config), std::move(tree));
  TRY(m.tree_->adjust_root_end(m.iomem_end()));
  return m;
}

Result<Machine> Machine::with_config(MachineConfig config) const {
  Machine m = TRY(create(std::move(config), tree_->clone()));
  m.notes_ = notes_;
  return m;
}

arch::ArchParams Machine::params() const {
  switch (config_.arch) {
    case arch::ArchKind::kX86_64: return arch::x86_64_params(config_.paging);
    case arch::ArchKind::kArm64: return arch::arm64_params();
  }
  return arch::x86_64_params(config_.paging);
}

std::vector<PhysRange> Machine::system_ram() const {
  std::vector<PhysRange> out;
  for (const ResourceInfo& r : MUST(tree_->children(tree_->root()), "the root always exists")) {
    if (r.name == "System RAM") out.push_back(r.range);
  }
  return out;
}

uint64_t Machine::system_ram_bytes() const {
  uint64_t total = 0;
  for (const PhysRange& r : system_ram()) total += r.size();
  return total;
}

PhysAddr Machine::iomem_end() const {
  switch (config_.arch) {
    case arch::ArchKind::kX86_64: return PhysAddr((uint64_t{1} << config_.phys_bits) - 1);
    case arch::ArchKind::kArm64: return PhysAddr(~uint64_t{0});
  }
  return PhysAddr(~uint64_t{0});
}

PhysLimit Machine::direct_map_physmem_end() const {
  const arch::ArchParams p = params();
  const PhysLimit generic{
      p.max_physmem_end(), LimitCause::kMaxPhysmemBits,
      fmt::format("(1 << MAX_PHYSMEM_BITS) - 1 with MAX_PHYSMEM_BITS = {}", p.max_physmem_bits)};
  switch (config_.arch) {
    case arch::ArchKind::kX86_64: {
      if (config_.kaslr == Kaslr::kOff) return generic;
      if (config_.p2pdma == P2pDma::kOn) {
        PhysLimit l = generic;
        l.reason += " (KASLR does not trim the direct map when CONFIG_PCI_P2PDMA=y, 7ffb791423c7)";
        return l;
      }
      // kernel_randomize_memory(): the direct map gets DIV_ROUND_UP(max_pfn << PAGE_SHIFT,
      // 1 TiB) + padding TiB when that is smaller than the whole 2^MAX_PHYSMEM_BITS.
      const std::vector<PhysRange> ram = system_ram();
      const uint64_t ram_end = ram.empty() ? 0 : (ram.back().end.raw() + 1) & ~(kPageSize - 1);
      const uint64_t ram_tb = (ram_end + (uint64_t{1} << kTbShift) - 1) >> kTbShift;
      const uint64_t memory_tb = ram_tb + config_.kaslr_padding_tb;
      const uint64_t size_tb = uint64_t{1} << (p.max_physmem_bits - kTbShift);
      if (memory_tb >= size_tb) {
        PhysLimit l = generic;
        l.reason += fmt::format(" (KASLR on, but RAM + padding = {} TiB does not trim it)",
                                memory_tb);
        return l;
      }
      return PhysLimit{
          PhysAddr((memory_tb << kTbShift) - 1), LimitCause::kKaslrDirectMapEnd,
          fmt::format("KASLR trims the direct map to (ceil(RAM end {} / 1 TiB) = {} + padding "
                      "{}) = {} TiB, so DIRECT_MAP_PHYSMEM_END = {} TiB - 1",
                      PhysAddr(ram_end), ram_tb, config_.kaslr_padding_tb, memory_tb,
                      memory_tb)};
    }
    case arch::ArchKind::kArm64: {
      if (config_.arm64_physmem_end == Arm64PhysmemEnd::kBeforeFix) {
        PhysLimit l = generic;
        l.reason += " (arm64 kernel without eeb8fdfcf090: not limited to the linear map)";
        return l;
      }
      const uint64_t end = config_.memstart_addr.raw() + (uint64_t{1} << p.linear_map_bits) - 1;
      return PhysLimit{PhysAddr(end), LimitCause::kArm64LinearMapEnd,
                       fmt::format("the end of the linear map, memstart_addr {} + 2^{} - 1 "
                                   "(PHYSMEM_END since eeb8fdfcf090)",
                                   config_.memstart_addr, p.linear_map_bits)};
    }
  }
  return generic;
}

PhysLimit Machine::free_region_limit() const {
  PhysLimit dm = direct_map_physmem_end();
  const PhysAddr io = iomem_end();
  if (dm.end < io) return dm;
  switch (config_.arch) {
    case arch::ArchKind::kX86_64:
      return PhysLimit{io, LimitCause::kPhysBits,
                       fmt::format("iomem_resource.end = 2^{} - 1 from the CPU's {} physical "
                                   "address bits",
                                   config_.phys_bits, config_.phys_bits)};
    case arch::ArchKind::kArm64:
      return PhysLimit{io, LimitCause::kIomemEnd, "iomem_resource.end = 2^64 - 1"};
  }
  return dm;
}

GfrParams Machine::gfr_params() const {
  return GfrParams{params().section_size(), free_region_limit()};
}

Result<ResourceInfo> Machine::request_free_mem_region(uint64_t size, std::string name) {
  return tree_->request_free_mem_region(tree_->root(), size, std::move(name), gfr_params());
}

FreeRegionAnalysis Machine::free_region_analysis(uint64_t size) const {
  return MUST(tree_->analyze_free_mem_region(tree_->root(), size, gfr_params()),
              "the root exists and the section size is a power of two");
}

}  // namespace dpmm::phys
