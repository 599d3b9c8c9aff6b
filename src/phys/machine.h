// A machine: the facts about a computer that decide where device-private memory can go.
//
// The architecture and paging mode (arch/), the CPU's physical address bits, KASLR and the
// kernel options that trim the direct map, arm64's memstart_addr and whether the kernel has
// eeb8fdfcf090 ("arm64: Expose the end of the linear map in PHYSMEM_END"), and the iomem
// resource tree. From them follow the two bounds of the free-region search
// (free-mem-region.md §3): iomem_end() and direct_map_physmem_end(), and their minimum,
// free_region_limit().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "base/result.h"
#include "base/types.h"
#include "phys/free_region_analysis.h"
#include "phys/phys_limit.h"
#include "phys/phys_range.h"
#include "phys/resource.h"

namespace dpmm::phys {

enum class Kaslr : bool { kOff, kOn };
enum class P2pDma : bool { kOff, kOn };  // CONFIG_PCI_P2PDMA
// Whether the arm64 kernel has eeb8fdfcf090: after it, PHYSMEM_END (later
// DIRECT_MAP_PHYSMEM_END) is the end of the linear map; before it, the generic
// (1 << MAX_PHYSMEM_BITS) - 1.
enum class Arm64PhysmemEnd : uint8_t { kBeforeFix, kAfterFix };

std::string_view kaslr_name(Kaslr k);                     // "on" / "off"
std::string_view arm64_physmem_end_name(Arm64PhysmemEnd e);  // "before-fix" / "after-fix"

struct MachineConfig {
  std::string name;
  std::string description;
  arch::ArchKind arch = arch::ArchKind::kX86_64;
  arch::PagingMode paging = arch::PagingMode::kFourLevel;  // x86_64 only
  unsigned phys_bits = 46;                                 // CPU physical address bits
  Kaslr kaslr = Kaslr::kOn;
  unsigned kaslr_padding_tb = 10;  // CONFIG_RANDOMIZE_MEMORY_PHYSICAL_PADDING
  P2pDma p2pdma = P2pDma::kOff;
  PhysAddr memstart_addr{0};  // arm64: PHYS_OFFSET, the physical base of the linear map
  Arm64PhysmemEnd arm64_physmem_end = Arm64PhysmemEnd::kAfterFix;

  bool operator==(const MachineConfig&) const = default;
};

class Machine {
 public:
  // Validates the config (phys_bits in [32, 52] for x86_64 and [32, 52] for arm64, paging 5
  // only on x86_64, padding <= 1024 TiB) and that every top-level resource of `tree` lies
  // below 2^phys_bits; sets the tree's root end to iomem_end(). EINVAL naming what is wrong.
  static Result<Machine> create(MachineConfig config, std::unique_ptr<ResourceTree> tree);

  Machine(Machine&&) = default;
  Machine& operator=(Machine&&) = default;

  // The same machine (a copy of its tree) with another config, validated as create().
  Result<Machine> with_config(MachineConfig config) const;

  const MachineConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  arch::ArchKind arch() const { return config_.arch; }
  unsigned phys_bits() const { return config_.phys_bits; }
  arch::ArchParams params() const;

  ResourceTree& iomem() { return *tree_; }
  const ResourceTree& iomem() const { return *tree_; }

  // The top-level "System RAM" resources, in address order.
  std::vector<PhysRange> system_ram() const;
  uint64_t system_ram_bytes() const;

  // iomem_resource.end: x86_64 2^phys_bits - 1 (arch/x86/kernel/setup.c); arm64 2^64 - 1.
  PhysAddr iomem_end() const;
  // DIRECT_MAP_PHYSMEM_END with its cause:
  //   x86_64, KASLR on, P2PDMA off: (ceil(ram_end / 1 TiB) + padding) TiB - 1, unless that is
  //     not below (1 << MAX_PHYSMEM_BITS) (arch/x86/mm/kaslr.c kernel_randomize_memory());
  //   x86_64 otherwise: (1 << MAX_PHYSMEM_BITS) - 1;
  //   arm64 after eeb8fdfcf090: memstart_addr + 2^linear_map_bits - 1 (__pa(PAGE_END - 1));
  //   arm64 before it: (1 << MAX_PHYSMEM_BITS) - 1 (include/linux/mm.h fallback).
  PhysLimit direct_map_physmem_end() const;
  // min(iomem_end(), direct_map_physmem_end()), with the cause of the smaller (phys_bits
  // when they are equal).
  PhysLimit free_region_limit() const;
  // GFR_DEFAULT_ALIGN (the section size) and free_region_limit().
  GfrParams gfr_params() const;

  // request_free_mem_region(&iomem_resource, size, name) on this machine.
  Result<ResourceInfo> request_free_mem_region(uint64_t size, std::string name);
  // The search's view of this machine for a request of `size` bytes (0: no particular size).
  FreeRegionAnalysis free_region_analysis(uint64_t size) const;

  // Remarks collected while the machine was built (e.g. "the iomem dump was elided").
  const std::vector<std::string>& notes() const { return notes_; }
  void add_note(std::string note) { notes_.push_back(std::move(note)); }

 private:
  Machine(MachineConfig config, std::unique_ptr<ResourceTree> tree)
      : config_(std::move(config)), tree_(std::move(tree)) {}

  MachineConfig config_;
  std::unique_ptr<ResourceTree> tree_;
  std::vector<std::string> notes_;
};

}  // namespace dpmm::phys
