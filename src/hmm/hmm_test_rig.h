// Test rig for the hmm layer: a small machine with device memory under one design, and test
// devices that own DEVICE_PRIVATE pagemaps and can plant their pages behind a process's PTEs
// (what migrate_vma does, done by hand so these tests need nothing above devmem and mm).
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/lock.h"
#include "devmem/design.h"
#include "devmem/dev_pagemap.h"
#include "devmem/device_memory.h"
#include "hmm/hmm_pfn.h"
#include "mm/device_private.h"
#include "mm/fault.h"
#include "mm/kernel.h"
#include "mm/process.h"

namespace dpmm::hmm::testing {

class TestDevice;

// The Kernel, its DeviceMemory and the device-private handler joining them.
class HmmRig final : public mm::DevicePrivateFaultHandler {
 public:
  explicit HmmRig(devmem::Design design);
  ~HmmRig() override;

  mm::Kernel& kernel() { return *kernel_; }
  devmem::DeviceMemory& dm() { return *dm_; }
  devmem::Design design() const { return design_; }
  HmmPfnFormat format() const { return hmm_pfn_format(devmem::swap_numbering_kind(design_)); }

  // mm::DevicePrivateFaultHandler
  page::Page* softleaf_to_page(arch::Softleaf entry) override;
  mm::FaultResult migrate_to_ram(mm::VmFault& vmf) override;
  void folio_split(page::Folio orig, std::optional<page::Folio> tail) override {
    devmem::zone_device_private_split_cb(orig, tail);
  }

 private:
  devmem::Design design_;
  std::unique_ptr<mm::Kernel> kernel_;
  std::unique_ptr<devmem::DeviceMemory> dm_;
};

enum class Writable : bool { kNo, kYes };

// A device with `npages` pages of device-private memory, its own owner token and a byte store
// for its pages. Destroy every process using its pages first.
class TestDevice final : public devmem::DevPagemapOps {
 public:
  TestDevice(HmmRig& rig, uint64_t npages, std::string name);
  ~TestDevice() override;

  const void* owner() const { return &owner_token_; }
  devmem::DevPagemap& pgmap() { return *pgmap_; }

  // Moves the present anon page at `addr` of `p` to a new device page: the PTE becomes a
  // device-private entry (writable or not), the bytes move to the device, the device page takes
  // the mapping (reference and mapcount), the RAM page is freed. Returns the device page.
  page::Page* plant(mm::Process& p, VirtAddr addr, Writable w);

  // The same for the PMD-mapped THP at the 2 MiB-aligned `addr`: the device's first 512
  // pages (which must be free; the device needs at least 512) become an order-9
  // device-private folio mapped by one device-private PMD. Returns its head.
  page::Page* plant_huge(mm::Process& p, VirtAddr addr, Writable w);

  // The device's copy of a device page.
  std::array<std::byte, kPageSize> bytes(const page::Page* page);

  int migrate_to_ram_calls() const { return migrate_calls_.load(); }
  int frees() const { return frees_.load(); }

  // devmem::DevPagemapOps
  devmem::PagemapOps provided() const override {
    return devmem::PagemapOps::kFolioFree | devmem::PagemapOps::kMigrateToRam;
  }
  void folio_free(page::Folio folio) override;
  devmem::VmFaultCode migrate_to_ram(mm::VmFault& vmf) override;

 private:
  // migrate_to_ram of a PMD-mapped device THP (vmf.pte nullopt): a RAM THP takes its place.
  devmem::VmFaultCode migrate_huge_to_ram(mm::VmFault& vmf);

  HmmRig& rig_;
  const int owner_token_ = 0;
  std::unique_ptr<devmem::DevPagemap> pgmap_;
  Mutex lock_{LockRank::kLeaf};
  std::vector<page::Page*> free_ GUARDED_BY(lock_);
  std::map<const page::Page*, std::array<std::byte, kPageSize>> store_ GUARDED_BY(lock_);
  std::atomic<int> migrate_calls_{0};
  std::atomic<int> frees_{0};
};

// The PTE word at `addr` (0 when there is no table).
uint64_t pte_word(mm::Mm& mm, VirtAddr addr);
// The page a present PTE at `addr` maps.
page::Page* present_page(mm::Mm& mm, VirtAddr addr);
Pfn present_pfn(mm::Mm& mm, VirtAddr addr);

// "legacy", "dpas", "dpas_zone".
std::string design_param_name(const ::testing::TestParamInfo<devmem::Design>& p);

}  // namespace dpmm::hmm::testing
