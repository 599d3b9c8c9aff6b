// A small device driver for the migrate tests: one pagemap (device-private or coherent) whose
// pages it hands out from a free list, with the device's bytes in host memory (private) or in
// the coherent range's backing store (coherent), and the three driver steps of
// kernel-baseline §4: to the device, to the system, and eviction of the whole pagemap.
// Its migrate_to_ram migrates the faulting page with migrate_vma_* (dmirror_devmem_fault).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "base/lock.h"
#include "devmem/dev_pagemap.h"
#include "migrate/device_kernel.h"
#include "migrate/migrate_device.h"
#include "mm/fault.h"
#include "mm/huge_memory.h"
#include "mm/process.h"
#include "page/folio_lock.h"
#include "phys/test_machine.h"

namespace dpmm::migrate::testing {

inline constexpr mm::MmapProt kRw = mm::MmapProt::kRead | mm::MmapProt::kWrite;
inline constexpr uint64_t kCoherentBase = uint64_t{1} << 40;  // 1 TiB, above the test RAM
inline constexpr uint64_t kCoherentBytes = uint64_t{256} << 20;

// x86_64, 256 MiB of RAM at 4 GiB, 46-bit physical space, no KASLR (as mm's test machine).
inline std::unique_ptr<DeviceKernel> make_device_kernel(devmem::Design design) {
  phys::Machine m = phys::testing::small_machine("migrate-test", arch::ArchKind::kX86_64, 256);
  DeviceKernelOptions o;
  o.deferred_init = page::DeferredInit::kNo;
  o.coherent_ranges = {phys::PhysRange{PhysAddr(kCoherentBase),
                                       PhysAddr(kCoherentBase + kCoherentBytes - 1)}};
  return MUST(DeviceKernel::create(std::move(m), design, o), "device kernel");
}

inline std::string design_test_name(const ::testing::TestParamInfo<devmem::Design>& p) {
  std::string n(devmem::design_name(p.param));
  for (char& ch : n) ch = ch == '-' ? '_' : ch;
  return n;
}

class TestDevice final : public devmem::DevPagemapOps {
 public:
  // `nr_pages` device pages; coherent devices take the first nr_pages of the coherent range.
  TestDevice(DeviceKernel& dk, devmem::MemoryType type, uint64_t nr_pages, const void* owner)
      : dk_(dk), type_(type), owner_(owner) {
    devmem::DevPagemapConfig c;
    c.type = type;
    c.ops = this;
    c.owner = owner;
    c.name = "migrate-test";
    if (type == devmem::MemoryType::kDevicePrivate) {
      c.nr_pages = PageCount(nr_pages);
    } else {
      c.range = phys::PhysRange{PhysAddr(kCoherentBase),
                                PhysAddr(kCoherentBase + kCoherentBytes - 1)};
    }
    pgmap_ = std::make_unique<devmem::DevPagemap>(c);
    MUST(dk.device_memory().register_pagemap(*pgmap_), "test pagemap registers");
    const uint64_t n = std::min<uint64_t>(nr_pages, pgmap_->nr_pages().raw());
    private_bytes_.resize(type == devmem::MemoryType::kDevicePrivate ? n * kPageSize : 0);
    free_.with([&](std::vector<page::Page*>& f) {
      for (uint64_t i = n; i-- > 0;) f.push_back(page_at(i));
    });
    nr_pages_ = n;
  }
  ~TestDevice() override {
    evict_all();
    dk_.device_memory().unregister_pagemap(*pgmap_);
  }

  // ---- DevPagemapOps ----
  devmem::PagemapOps provided() const override {
    return type_ == devmem::MemoryType::kDevicePrivate
               ? devmem::PagemapOps::kFolioFree | devmem::PagemapOps::kMigrateToRam
               : devmem::PagemapOps::kFolioFree;
  }
  void folio_free(page::Folio folio) override {
    frees.fetch_add(1);
    free_.with([&](std::vector<page::Page*>& f) {
      for (uint64_t i = 0; i < folio.nr_pages().raw(); ++i) f.push_back(folio.head() + i);
    });
  }
  // dmirror_devmem_fault: migrate the faulting page back, one page.
  devmem::VmFaultCode migrate_to_ram(mm::VmFault& vmf) override {
    std::vector<MigratePfn> src(1), dst(1);
    MigrateVma args;
    args.vma = vmf.vma;
    args.start = vmf.address;
    args.end = vmf.address + kPageSize;
    args.src = src;
    args.dst = dst;
    args.pgmap_owner = owner_;
    args.flags = MigrateVmaSelect::kDevicePrivate;
    args.fault_page = vmf.page;
    mm::Mm& mm = *vmf.mm;
    mm.mmap_assert_locked();
    if (migrate_vma_setup(mm, args).is_error()) return devmem::VmFaultCode::kSigBus;
    if (on_fault_collected) on_fault_collected(mm, args);
    const bool ok = alloc_and_copy_to_system(args.src.first(args.npages),
                                             args.dst.first(args.npages));
    if (!ok) {
      migrate_vma_finalize(mm, args);
      return devmem::VmFaultCode::kOom;
    }
    migrate_vma_pages(mm, args);
    migrate_vma_finalize(mm, args);
    // finalize never unlocks the fault page: do_swap_page does, after this returns.
    EXPECT_TRUE(page::folio_test_locked(page::page_folio(vmf.page)));
    faults.fetch_add(1);
    return devmem::VmFaultCode::kHandled;
  }

  // ---- driver steps ----
  struct Outcome {
    uint64_t cpages = 0;   // collected
    uint64_t migrated = 0; // still kMigrate after migrate_vma_pages
  };
  // dmirror_migrate_to_device: SELECT_SYSTEM over [start, start + n pages). `skip(i)` true
  // leaves dst[i] 0 (the driver declines that page). `on_collected` sees the state between
  // setup and the driver's copy.
  Outcome migrate_to_device(mm::Mm& mm, VirtAddr start, uint64_t n,
                            std::function<bool(uint64_t)> skip = {},
                            MigrateVmaSelect select = MigrateVmaSelect::kSystem,
                            std::function<void(mm::Mm&, MigrateVma&)> on_collected = {}) {
    std::vector<MigratePfn> src(n), dst(n);
    ReadLocker guard(mm.mmap_lock());
    MigrateVma args;
    args.vma = mm.vma_lookup(start);
    args.start = start;
    args.end = start + n * kPageSize;
    args.src = src;
    args.dst = dst;
    args.pgmap_owner = owner_;
    args.flags = select;
    MUST(migrate_vma_setup(mm, args), "migrate_vma_setup to the device");
    if (on_collected) on_collected(mm, args);
    const devmem::DeviceMemory& dm = dk_.device_memory();
    for (uint64_t i = 0; i < args.npages; ++i) {
      if (!src[i].is_migrate() || (skip && skip(i))) continue;
      page::Page* dpage = alloc_page();
      if (dpage == nullptr) continue;
      page::Page* spage = migrate_pfn_to_page(dm, src[i]);
      std::span<std::byte> to = bytes(dpage);
      if (spage == nullptr) {
        std::memset(to.data(), 0, kPageSize);
      } else {
        std::memcpy(to.data(), dk_.kernel().page_bytes(dm.page_to_pfn(spage)).data(), kPageSize);
      }
      dst[i] = migrate_pfn_from_page(dm, dpage);
      if (src[i].has(MigratePfnFlags::kWrite)) dst[i].set(MigratePfnFlags::kWrite);
    }
    migrate_vma_pages(mm, args);
    Outcome o{args.cpages, 0};
    for (uint64_t i = 0; i < args.npages; ++i) o.migrated += src[i].is_migrate() ? 1 : 0;
    migrate_vma_finalize(mm, args);
    return o;
  }

  // dmirror_migrate_to_system: SELECT_DEVICE_PRIVATE (or COHERENT) with this owner.
  Outcome migrate_to_system(mm::Mm& mm, VirtAddr start, uint64_t n,
                            const void* owner = nullptr) {
    std::vector<MigratePfn> src(n), dst(n);
    ReadLocker guard(mm.mmap_lock());
    MigrateVma args;
    args.vma = mm.vma_lookup(start);
    args.start = start;
    args.end = start + n * kPageSize;
    args.src = src;
    args.dst = dst;
    args.pgmap_owner = owner != nullptr ? owner : owner_;
    args.flags = type_ == devmem::MemoryType::kDevicePrivate ? MigrateVmaSelect::kDevicePrivate
                                                             : MigrateVmaSelect::kDeviceCoherent;
    MUST(migrate_vma_setup(mm, args), "migrate_vma_setup to the system");
    EXPECT_TRUE(alloc_and_copy_to_system(args.src.first(args.npages),
                                         args.dst.first(args.npages)));
    migrate_vma_pages(mm, args);
    Outcome o{args.cpages, 0};
    for (uint64_t i = 0; i < args.npages; ++i) o.migrated += src[i].is_migrate() ? 1 : 0;
    migrate_vma_finalize(mm, args);
    return o;
  }

  // dmirror_device_evict_chunk: migrate_device_range over every page of the pagemap.
  uint64_t evict_all() {
    const uint64_t n = nr_pages_;
    std::vector<MigratePfn> src(n), dst(n);
    mm::Kernel& k = dk_.kernel();
    MUST(migrate_device_range(k, src, pgmap_->range().index(0), n), "migrate_device_range");
    EXPECT_TRUE(alloc_and_copy_to_system(src, dst));
    migrate_device_pages(k, src, dst);
    uint64_t migrated = 0;
    for (uint64_t i = 0; i < n; ++i) migrated += src[i].is_migrate() ? 1 : 0;
    migrate_device_finalize(k, src, dst);
    return migrated;
  }

  // ---- device memory ----
  page::Page* alloc_page() {
    page::Page* p = free_.with([](std::vector<page::Page*>& f) -> page::Page* {
      if (f.empty()) return nullptr;
      page::Page* top = f.back();
      f.pop_back();
      return top;
    });
    if (p == nullptr) return nullptr;
    MUST(devmem::zone_device_page_init(p, *pgmap_, Order(0)), "free device page initialises");
    return p;
  }
  // An order-9 device folio of the device's first 512 pages (zone_device_folio_init), locked
  // with one reference; null when one of them is in use.
  page::Page* alloc_huge() {
    constexpr uint64_t kNr = uint64_t{1} << mm::kHpagePmdOrder;
    if (nr_pages_ < kNr) return nullptr;
    const bool got = free_.with([&](std::vector<page::Page*>& f) {
      for (uint64_t i = 0; i < kNr; ++i)
        if (std::find(f.begin(), f.end(), page_at(i)) == f.end()) return false;
      std::erase_if(f, [&](page::Page* p) {
        const uint64_t i = MUST(pgmap_->page_index(p), "a page of this pagemap");
        return i < kNr;
      });
      return true;
    });
    if (!got) return nullptr;
    MUST(devmem::zone_device_folio_init(page_at(0), *pgmap_, Order(mm::kHpagePmdOrder)),
         "512 free device pages initialise");
    return page_at(0);
  }
  std::span<std::byte> bytes(page::Page* p) {
    const uint64_t i = MUST(pgmap_->page_index(p), "a page of this pagemap");
    if (type_ == devmem::MemoryType::kDeviceCoherent)
      return dk_.kernel().page_bytes(dk_.device_memory().page_to_pfn(p));
    return std::span<std::byte>(private_bytes_).subspan(i * kPageSize, kPageSize);
  }
  page::Page* page_at(uint64_t i) const {
    if (pgmap_->uses_page_array()) return pgmap_->page_at(i);
    return MUST(dk_.device_memory().pfn_or_offset_to_page(pgmap_->range().index(i)), "page");
  }
  size_t nr_free() const {
    return free_.with([](const std::vector<page::Page*>& f) { return f.size(); });
  }
  uint64_t nr_pages() const { return nr_pages_; }
  devmem::DevPagemap& pgmap() { return *pgmap_; }
  const void* owner() const { return owner_; }

  // Called from migrate_to_ram between setup and the copy.
  std::function<void(mm::Mm&, MigrateVma&)> on_fault_collected;
  // One-shot: the next system allocation fails (dmirror's FAIL_ALLOC).
  std::atomic<bool> fail_next_alloc{false};
  std::atomic<int> frees{0};
  std::atomic<int> faults{0};

 private:
  // dmirror_devmem_fault_alloc_and_copy: a locked system page per migrating device page.
  bool alloc_and_copy_to_system(std::span<MigratePfn> src, std::span<MigratePfn> dst) {
    const devmem::DeviceMemory& dm = dk_.device_memory();
    for (size_t i = 0; i < src.size(); ++i) {
      page::Page* spage = migrate_pfn_to_page(dm, src[i]);
      if (spage == nullptr || !src[i].is_migrate()) continue;
      if (fail_next_alloc.exchange(false)) continue;
      Result<page::Folio> f = dk_.kernel().alloc_folio(Order(0));
      if (f.is_error()) return false;
      page::folio_lock(*f);
      std::memcpy(dk_.kernel().page_bytes(dm.folio_pfn(*f)).data(), bytes(spage).data(),
                  kPageSize);
      dst[i] = migrate_pfn_from_page(dm, f->head());
      if (src[i].has(MigratePfnFlags::kWrite)) dst[i].set(MigratePfnFlags::kWrite);
    }
    return true;
  }

  DeviceKernel& dk_;
  devmem::MemoryType type_;
  const void* owner_;
  std::unique_ptr<devmem::DevPagemap> pgmap_;
  std::vector<std::byte> private_bytes_;
  Protected<std::vector<page::Page*>, Mutex> free_{LockRank::kLeaf};
  uint64_t nr_pages_ = 0;
};

}  // namespace dpmm::migrate::testing
