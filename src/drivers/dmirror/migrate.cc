// Migration to and from the device (lib/test_hmm.c dmirror_migrate_to_device,
// dmirror_migrate_alloc_and_copy, dmirror_migrate_finalize_and_map, dmirror_migrate_to_system,
// dmirror_devmem_fault_alloc_and_copy, dmirror_successful_migrated_pages, and the pagemap's
// migrate_to_ram, dmirror_devmem_fault).
#include <algorithm>
#include <cassert>
#include <functional>
#include <vector>

#include "devmem/device_memory.h"
#include "drivers/dmirror/copy_engine.h"
#include "drivers/dmirror/dmirror_device.h"
#include "drivers/dmirror/mirror.h"
#include "migrate/device_kernel.h"
#include "migrate/migrate_pfn.h"
#include "mm/kernel.h"
#include "page/folio_lock.h"

namespace dpmm::dmirror {

using migrate::MigratePfn;
using migrate::MigratePfnFlags;
using migrate::MigrateVma;
using migrate::MigrateVmaSelect;

namespace {

// PTRS_PER_PTE: the migrate chunk of both directions.
constexpr uint64_t kPtrsPerPte = 512;

uint64_t vpn(VirtAddr a) { return a.raw() >> kPageShift; }

// dmirror_select_device.
MigrateVmaSelect select_device(const DmirrorDevice& mdevice) {
  return mdevice.is_private() ? MigrateVmaSelect::kDevicePrivate
                              : MigrateVmaSelect::kDeviceCoherent;
}

// The chunking both migration commands share (dmirror_migrate_to_device/_system): the range
// in pieces of at most PTRS_PER_PTE pages that stay inside one VMA, each given to `body` as
// migrate_vma args with fresh src/dst arrays. A piece without a VMA or without VM_READ is
// EINVAL. REQUIRES: mmap_lock held for read.
Status for_each_migrate_chunk(mm::Mm& mm, VirtAddr start, VirtAddr end, MigrateVmaSelect select,
                              const void* owner,
                              const std::function<Status(MigrateVma&)>& body)
    REQUIRES_SHARED(mm.mmap_lock()) {
  std::vector<MigratePfn> src(kPtrsPerPte);
  std::vector<MigratePfn> dst(kPtrsPerPte);
  for (VirtAddr addr = start, next; addr < end; addr = next) {
    const mm::Vma* vma = mm.vma_lookup(addr);
    if (vma == nullptr || !has(vma->flags, mm::VmFlags::kRead)) {
      return make_error(Errno::kEINVAL, "{:#x} is not in a readable VMA", addr.raw());
    }
    next = std::min(end, addr + kPtrsPerPte * kPageSize);
    next = std::min(next, vma->end);
    const uint64_t n = (next - addr) >> kPageShift;
    std::fill(dst.begin(), dst.end(), MigratePfn());
    MigrateVma args;
    args.vma = vma;
    args.src = std::span<MigratePfn>(src.data(), n);
    args.dst = std::span<MigratePfn>(dst.data(), n);
    args.start = addr;
    args.end = next;
    args.pgmap_owner = owner;
    args.flags = select;
    TRY(body(args));
  }
  return ok();
}

}  // namespace

// ---- system -> device ----

void Dmirror::migrate_alloc_and_copy(MigrateVma& args) {
  migrate::DeviceKernel& dk = mdevice_.device_kernel();
  const devmem::DeviceMemory& dm = dk.device_memory();
  CopyEngine& engine = mdevice_.engine();
  const uint64_t n = (args.end - args.start) >> kPageShift;
  const uint64_t pmd_nr = dk.kernel().arch().pages_per_pmd().raw();

  for (uint64_t i = 0; i < n;) {
    const MigratePfn src = args.src[i];
    const IsLarge is_large = src.has(MigratePfnFlags::kCompound) ? IsLarge::kYes : IsLarge::kNo;
    const MigratePfnFlags write = src.has(MigratePfnFlags::kWrite) ? MigratePfnFlags::kWrite
                                                                   : MigratePfnFlags::kNone;
    if (!src.is_migrate()) {
      ++i;
      continue;
    }
    // Null for an unpopulated pte_none slot or the zero page: the device page is zero-filled.
    page::Page* spage = migrate::migrate_pfn_to_page(dm, src);
    if (spage != nullptr && spage->is_zone_device()) {
      // SELECT_SYSTEM never collects device pages (the kernel WARNs "page already in device").
      assert(false && "page already in device");
      ++i;
      continue;
    }
    page::Page* dpage = take_fail_alloc() ? nullptr : mdevice_.devmem_alloc_page(is_large);

    if (dpage == nullptr) {
      if (is_large == IsLarge::kNo) {
        ++i;  // dst stays 0: this page is not migrated
        continue;
      }
      // A large allocation failed: fall back to order-0 device pages for the whole folio (or
      // the whole PMD-sized hole).
      const uint64_t nr =
          spage == nullptr ? pmd_nr : page::page_folio(spage).nr_pages().raw();
      const uint64_t group_end = std::min(n, i + nr);
      for (uint64_t j = 0; i < group_end; ++i, ++j) {
        page::Page* d = mdevice_.devmem_alloc_page(IsLarge::kNo);
        if (d == nullptr) continue;  // (the kernel would oops on NULL here) not migrated
        page::Page* rpage = mdevice_.backing_page(d);
        rpage->set_zone_device_data(this);
        args.dst[i] = migrate::migrate_pfn_from_page(dm, d) | write;
        if (spage != nullptr) {
          engine.copy(mdevice_.cpu_page_bytes(rpage), mdevice_.cpu_page_bytes(spage + j));
        } else {
          engine.clear(mdevice_.cpu_page_bytes(rpage));
        }
      }
      continue;
    }

    // Where the device keeps the data; it also holds the pointer back to this mirror (a real
    // device would use dpage->zone_device_data for that).
    page::Page* rpage = mdevice_.backing_page(dpage);
    rpage->set_zone_device_data(this);
    args.dst[i] = migrate::migrate_pfn_from_page(dm, dpage) | write;

    if (is_large == IsLarge::kYes) {
      args.dst[i].set(MigratePfnFlags::kCompound);
      const page::Folio folio = page::page_folio(dpage);
      if (folio.is_large()) {
        const uint64_t nr = folio.nr_pages().raw();
        for (uint64_t j = 0; j < nr && i < n; ++j, ++i) {
          if (spage != nullptr) {
            engine.copy(mdevice_.cpu_page_bytes(rpage + j), mdevice_.cpu_page_bytes(spage + j));
          } else {
            engine.clear(mdevice_.cpu_page_bytes(rpage + j));
          }
        }
        continue;
      }
    }
    if (spage != nullptr) {
      engine.copy(mdevice_.cpu_page_bytes(rpage), mdevice_.cpu_page_bytes(spage));
    } else {
      engine.clear(mdevice_.cpu_page_bytes(rpage));
    }
    ++i;
  }
}

void Dmirror::migrate_finalize_and_map(const MigrateVma& args) {
  const devmem::DeviceMemory& dm = mdevice_.device_kernel().device_memory();
  const uint64_t start_pfn = vpn(args.start);
  const uint64_t end_pfn = vpn(args.end);
  MutexLocker g(mutex_);
  for (uint64_t pfn = start_pfn, i = 0; pfn < end_pfn; ++pfn, ++i) {
    if (!args.src[i].is_migrate()) continue;
    page::Page* dpage = migrate::migrate_pfn_to_page(dm, args.dst[i]);
    if (dpage == nullptr) continue;
    const uint64_t nr = args.dst[i].has(MigratePfnFlags::kCompound)
                            ? page::page_folio(dpage).nr_pages().raw()
                            : 1;
    assert(end_pfn >= pfn + nr && "a compound dst runs past the range");
    page::Page* rpage = mdevice_.backing_page(dpage);
    const DptTag tag =
        args.dst[i].has(MigratePfnFlags::kWrite) ? DptTag::kWrite : DptTag::kRead;
    for (uint64_t j = 0; j < nr; ++j) pt_.store(pfn + j, DptEntry{rpage + j, tag});
  }
}

Status Dmirror::migrate_to_device(HmmDmirrorCmd& cmd) {
  const uint64_t size = cmd.npages << kPageShift;
  const VirtAddr start(cmd.addr);
  const VirtAddr end(cmd.addr + size);
  if (end < start) return make_error(Errno::kEINVAL, "range wraps");
  mm::Mm* mm = mirrored_mm();
  if (mm == nullptr) return make_error(Errno::kEINVAL, "the mirrored process is gone");
  {
    ReadLocker l(mm->mmap_lock());
    Status walked = for_each_migrate_chunk(*mm, start, end,
                               MigrateVmaSelect::kSystem | MigrateVmaSelect::kCompound,
                               mdevice_.owner(), [&](MigrateVma& args) -> Status {
                                 mm->mmap_assert_locked();
                                 TRY(migrate::migrate_vma_setup(*mm, args));
                                 migrate_alloc_and_copy(args);
                                 migrate::migrate_vma_pages(*mm, args);
                                 migrate_finalize_and_map(args);
                                 migrate::migrate_vma_finalize(*mm, args);
                                 return ok();
                               });
    if (walked.is_error()) return walked;
  }
  // Return the migrated data for verification: every page of the range must now be in this
  // device's page table (pages already on this device kept their entries, because the
  // invalidate callback skips this device's own migrations).
  return read_back(cmd, start, end);
}

// ---- device -> system ----

devmem::VmFaultCode Dmirror::devmem_fault_alloc_and_copy(MigrateVma& args) {
  mm::Kernel& k = mdevice_.kernel();
  const devmem::DeviceMemory& dm = mdevice_.device_kernel().device_memory();
  CopyEngine& engine = mdevice_.engine();
  const uint64_t n = (args.end - args.start) >> kPageShift;
  VirtAddr addr = args.start;

  for (uint64_t i = 0; i < n;) {
    const MigratePfn src = args.src[i];
    page::Page* spage = migrate::migrate_pfn_to_page(dm, src);
    if (spage == nullptr || !src.is_migrate()) {
      addr += kPageSize;
      ++i;
      continue;
    }
    if (!devmem::is_device_private_page(spage) && !devmem::is_device_coherent_page(spage)) {
      assert(false && "device -> system migration collected a non-device page");
      addr += kPageSize;
      ++i;
      continue;
    }
    page::Page* bpage = mdevice_.backing_page(spage);
    const Order order = page::page_folio(bpage).order();
    const uint64_t nr = order.pages().raw();
    MigratePfn d = order.raw() > 0 ? MigratePfn::of(MigratePfnFlags::kCompound) : MigratePfn();
    if (src.has(MigratePfnFlags::kWrite)) d.set(MigratePfnFlags::kWrite);

    std::optional<page::Folio> dfolio;
    if (take_fail_alloc()) {
      d.clear(MigratePfnFlags::kCompound);
    } else {
      // vma_alloc_folio / alloc_page_vma(GFP_HIGHUSER_MOVABLE).
      Result<page::Folio> r = k.alloc_folio(order);
      if (r.is_ok()) dfolio = *r;
    }
    if (!dfolio && order.raw() == 0) return devmem::VmFaultCode::kOom;
    if (dfolio) {
      page::folio_lock(*dfolio);
      d = MigratePfn::from_raw(d.raw() |
                               migrate::migrate_pfn_from_page(dm, dfolio->head()).raw());
    }
    args.dst[i] = d;

    for (uint64_t j = 0; j < nr; ++j) {
      Pfn dst_pfn;
      if (!dfolio) {
        // The large allocation failed: one order-0 page per subpage.
        Result<page::Folio> small = k.alloc_folio(Order(0));
        if (small.is_error()) {
          // Unlock and free what this group allocated; zero the rest so that pages/finalize
          // see no stale values.
          for (uint64_t b = j; b > 0; --b) {
            page::Page* f = migrate::migrate_pfn_to_page(dm, args.dst[i + b - 1]);
            page::folio_unlock(page::page_folio(f));
            page::folio_put(page::page_folio(f));
            args.dst[i + b - 1] = MigratePfn();
          }
          for (uint64_t b = j; b < nr; ++b) args.dst[i + b] = MigratePfn();
          return devmem::VmFaultCode::kOom;
        }
        page::folio_lock(*small);
        args.dst[i + j] = migrate::migrate_pfn_from_page(dm, small->head());
        dst_pfn = dm.folio_pfn(*small);
      } else {
        dst_pfn = dm.folio_pfn(*dfolio) + PageCount(j);
      }
      {
        // The device page table entry goes now: this device ignores its own
        // MMU_NOTIFY_MIGRATE ranges.
        MutexLocker g(mutex_);
        pt_.erase(vpn(addr));
      }
      addr += kPageSize;
      engine.copy(k.page_bytes(dst_pfn), mdevice_.cpu_page_bytes(bpage + j));
    }
    i += nr;
  }
  return devmem::VmFaultCode::kHandled;
}

Status Dmirror::migrate_to_system(HmmDmirrorCmd& cmd) {
  const uint64_t size = cmd.npages << kPageShift;
  const VirtAddr start(cmd.addr);
  const VirtAddr end(cmd.addr + size);
  if (end < start) return make_error(Errno::kEINVAL, "range wraps");
  mm::Mm* mm = mirrored_mm();
  if (mm == nullptr) return make_error(Errno::kEINVAL, "the mirrored process is gone");
  cmd.cpages = 0;
  ReadLocker l(mm->mmap_lock());
  return for_each_migrate_chunk(
      *mm, start, end, select_device(mdevice_) | MigrateVmaSelect::kCompound, mdevice_.owner(),
      [&](MigrateVma& args) -> Status {
        mm->mmap_assert_locked();
        TRY(migrate::migrate_vma_setup(*mm, args));
        if (devmem_fault_alloc_and_copy(args) != devmem::VmFaultCode::kHandled) {
          migrate::migrate_vma_finalize(*mm, args);
          return make_error(Errno::kENOMEM, "no system page to migrate {:#x} back to",
                            args.start.raw());
        }
        migrate::migrate_vma_pages(*mm, args);
        // dmirror_successful_migrated_pages.
        for (const MigratePfn& e : args.src) {
          if (e.is_valid() && e.is_migrate()) ++cmd.cpages;
        }
        migrate::migrate_vma_finalize(*mm, args);
        return ok();
      });
}

// ---- CPU fault on a device page ----

devmem::VmFaultCode DmirrorDevice::migrate_to_ram(mm::VmFault& vmf) {
  // The backing page holds the mirror that migrated the page (dmirror_devmem_fault).
  const page::Folio folio = page::page_folio(vmf.page);
  page::Page* rpage = static_cast<page::Page*>(folio.head()->zone_device_data());
  assert(rpage != nullptr && "device-private folio without a backing page");
  Dmirror* dmirror = static_cast<Dmirror*>(rpage->zone_device_data());
  assert(dmirror != nullptr && "backing page without its mirror");

  // A PTE-mapped page migrates alone (its folio may be partly split); a PMD-mapped folio
  // (vmf.pte unset) migrates whole.
  Order order = folio.order();
  if (vmf.pte.has_value()) order = Order(0);
  const uint64_t bytes = order.to_bytes();
  const VirtAddr start = vmf.address.align_down(bytes);
  const uint64_t nr = order.pages().raw();
  std::vector<MigratePfn> src(nr);
  std::vector<MigratePfn> dst(nr);

  MigrateVma args;
  args.vma = vmf.vma;
  args.start = start;
  args.end = start + bytes;
  args.src = src;
  args.dst = dst;
  args.pgmap_owner = owner();
  args.flags = select_device(*this);
  if (order.raw() > 0) args.flags |= MigrateVmaSelect::kCompound;
  args.fault_page = vmf.page;

  mm::Mm& mm = *vmf.mm;
  mm.mmap_assert_locked();  // migrate_to_ram runs under mmap_lock (kernel-baseline §5)
  // Setup only checks static VMA properties; failing here means the test is wrong.
  if (migrate::migrate_vma_setup(mm, args).is_error()) return devmem::VmFaultCode::kSigBus;
  const devmem::VmFaultCode ret = dmirror->devmem_fault_alloc_and_copy(args);
  if (ret != devmem::VmFaultCode::kHandled) {
    migrate::migrate_vma_finalize(mm, args);
    return ret;
  }
  migrate::migrate_vma_pages(mm, args);
  // No device-side finalize: devmem_fault_alloc_and_copy already erased the pt entries.
  migrate::migrate_vma_finalize(mm, args);
  return devmem::VmFaultCode::kHandled;
}

}  // namespace dpmm::dmirror
