// dmirror: the fake device of lib/test_hmm.c, driving the real device-memory machinery of the
// layers below (docs/dmirror.md).
//
// DmirrorDriver is the loaded module (hmm_dmirror_init / hmm_dmirror_exit): four devices,
// minors 0..3. Minors 0 and 1 have device-private memory; each preallocates one 256 MiB chunk
// (dmirror_device_init), registered through the design seam (legacy: request_free_mem_region
// + memremap_pages; dpas, dpas-zone: memremap_device_private_pagemap). Minors 2 and 3 have
// device-coherent memory and exist only when the platform offers two free, non-RAM,
// hot-pluggable 256 MiB physical ranges (the module parameters spm_addr_dev0/1): the driver
// picks them in the machine's resource tree, as a platform would reserve them for the device.
//
// DmirrorFile is one open file of a minor (struct dmirror): it mirrors the address space of
// the process that opened it (current->mm at open) into a device page table, keeps it
// coherent through an MMU interval notifier over the whole address space, and runs the
// HMM_DMIRROR_* commands (uapi.h) on the caller's thread.
//
// Device memory: 256 MiB chunks, each one DevPagemap with ops dmirror_devmem_ops (folio_free,
// migrate_to_ram, folio_split) and owner the device; free pages on a list threaded through
// page->zone_device_data. The data of a device-private page lives in a backing system page
// (dpage->zone_device_data = rpage); the data of a device-coherent page in the page itself.
//
// Lifetime: a DmirrorFile must be destroyed before its driver and before its process; the
// driver must outlive every device page it handed out (destroying the driver evicts and
// unregisters every chunk, which needs the processes mapping them to still exist or to have
// unmapped them).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "base/result.h"
#include "base/types.h"
#include "drivers/dmirror/uapi.h"
#include "mm/mman.h"
#include "phys/machine.h"
#include "phys/phys_range.h"
#include "phys/resource.h"

namespace dpmm::migrate {
class DeviceKernel;
}  // namespace dpmm::migrate

namespace dpmm::mm {
class Process;
}  // namespace dpmm::mm

namespace dpmm::dmirror {

class CopyEngine;
class Dmirror;
class DmirrorDevice;

// Whether the coherent devices (minors 2 and 3) should be created when the machine allows.
enum class CoherentDevices : bool { kNo, kYes };

// A private device's memory (dpmm's knobs for scenarios; the kernel module has one fixed
// shape: present, 256 MiB chunks, one chunk at load).
enum class DevicePresent : bool { kNo, kYes };
struct DmirrorPrivateDevice {
  DevicePresent present = DevicePresent::kYes;  // kNo: open() answers ENODEV
  uint64_t chunk_size = uint64_t{256} << 20;    // DEVMEM_CHUNK_SIZE
  unsigned initial_chunks = 1;                  // registered at load (dmirror_device_init: 1)
};

struct DmirrorOptions {
  CoherentDevices coherent = CoherentDevices::kYes;
  // Minors 0 and 1.
  std::array<DmirrorPrivateDevice, 2> private_devices{};
  // The module parameters spm_addr_dev0 / spm_addr_dev1: the start of each coherent device's
  // 256 MiB of special-purpose memory. Unset: the first two CPU-addressable device ranges the
  // DeviceKernel was built with (DeviceKernelOptions::coherent_ranges), if there are two.
  std::optional<PhysAddr> spm_addr_dev0;
  std::optional<PhysAddr> spm_addr_dev1;
  // The device's copy engine; null: host memcpy (copy_engine.h). Must outlive the driver.
  CopyEngine* copy_engine = nullptr;
};

// What a device's allocator has done (dmirror_device's calloc/cfree and its chunk array).
struct DmirrorDeviceStats {
  uint64_t calloc = 0;          // device pages handed out
  uint64_t cfree = 0;           // device pages given back through folio_free
  uint64_t nr_chunks = 0;       // devmem_count: chunks registered
  uint64_t nr_free_pages = 0;   // order-0 pages on free_pages
  uint64_t nr_free_folios = 0;  // PMD-order folios on free_folios
};

class DmirrorFile;

// The platform's part of the coherent devices: two free, section-aligned, non-RAM,
// hot-pluggable 256 MiB physical ranges of `machine`, found bottom-up in (a copy of) its
// resource tree, as firmware would reserve special-purpose memory. Pass them to
// migrate::DeviceKernelOptions::coherent_ranges (which gives them bytes) before building the
// DeviceKernel; the driver then finds them. ERANGE when the machine has no room.
Result<std::array<phys::PhysRange, 2>> find_spm_ranges(const phys::Machine& machine);

class DmirrorDriver {
 public:
  // Module init (hmm_dmirror_init): creates the devices and registers the first chunk of
  // each (dmirror_device_init). Minors 2 and 3 exist only with both SPM ranges (options).
  // Errors: those of a chunk's registration (ERANGE, ENOMEM, EBUSY, ENXIO, ...:
  // DeviceMemory::register_pagemap) with the device named; EINVAL for an SPM range that is
  // not CPU-addressable device memory of the machine.
  static Result<std::unique_ptr<DmirrorDriver>> create(migrate::DeviceKernel& dk,
                                                       DmirrorOptions options = {});
  // Module exit (hmm_dmirror_exit): dmirror_device_remove_chunks on every device: every live
  // device page migrates back to system memory, every pagemap unregisters, every resource is
  // released. REQUIRES: every DmirrorFile closed (asserted).
  ~DmirrorDriver();
  DmirrorDriver(const DmirrorDriver&) = delete;
  DmirrorDriver& operator=(const DmirrorDriver&) = delete;

  // open("/dev/hmm_dmirror<minor>") from `process` (dmirror_fops_open): a file mirroring
  // process.mm().
  //   ENXIO   minor >= 4 (no such char device)
  //   ENODEV  the minor's device does not exist (coherent devices without their memory)
  //   ENOMEM  the interval notifier could not be inserted
  Result<std::unique_ptr<DmirrorFile>> open(mm::Process& process, unsigned minor);

  // Whether minor `minor` has a device.
  bool has_device(unsigned minor) const;
  // REQUIRES: has_device(minor).
  DmirrorDeviceStats device_stats(unsigned minor) const;
  // calloc - cfree: device pages handed out and not yet freed, without walking the free lists
  // as device_stats does. REQUIRES: has_device(minor).
  uint64_t device_pages_in_use(unsigned minor) const;
  // The pgmap owner of minor's device (what hmm_range_fault and migrate_vma compare).
  // REQUIRES: has_device(minor).
  const void* device_owner(unsigned minor) const;
  DmirrorMemoryType device_type(unsigned minor) const;
  // Number of files open on any device.
  int nr_open_files() const;

  migrate::DeviceKernel& device_kernel() const { return dk_; }
  DmirrorDevice& device(unsigned minor) const;

 private:
  DmirrorDriver(migrate::DeviceKernel& dk, DmirrorOptions options);
  friend class DmirrorFile;
  // The coherent devices on [dev0, +256 MiB) and [dev1, +256 MiB).
  Status add_coherent_devices(PhysAddr dev0, PhysAddr dev1, CopyEngine& engine);
  // Gives the special-purpose memory's iomem resources back.
  void release_spm();

  migrate::DeviceKernel& dk_;
  DmirrorOptions options_;
  std::unique_ptr<CopyEngine> host_engine_;  // used when options_.copy_engine is null
  std::array<std::unique_ptr<DmirrorDevice>, kDmirrorNDevices> devices_;
  // The "Soft Reserved" iomem resources standing for spm_addr_dev0 / spm_addr_dev1.
  std::array<std::optional<phys::ResourceId>, 2> spm_;
  std::atomic<int> open_files_{0};
};

class DmirrorFile {
 public:
  // dmirror_fops_release: removes the interval notifier, then evicts every chunk of the
  // device (all its device pages, from any process, migrate back to system memory), then
  // drops the device page table.
  ~DmirrorFile();
  DmirrorFile(const DmirrorFile&) = delete;
  DmirrorFile& operator=(const DmirrorFile&) = delete;

  // dmirror_fops_unlocked_ioctl: 0 or -errno, as the kernel's returns it.
  //   -EINVAL  addr not page aligned; npages 0 or the range wraps; unknown request; MIGRATE_*:
  //            a part of the range without a VMA or without VM_READ; the mm is gone
  //   -EFAULT / -EPERM / -EBUSY / -ENOMEM / -ENOENT  per command (docs/dmirror.md)
  // On error `cmd` is left as the caller passed it (the kernel copies nothing back); on
  // success cpages and faults are written.
  int64_t ioctl(DmirrorIoctl request, HmmDmirrorCmd& cmd);

  // mmap of the device file (dmirror_fops_mmap): a shared mapping of `len` bytes whose pages
  // are zeroed kernel pages put in with vm_insert_page (the VMA becomes VM_MIXEDMAP).
  Result<VirtAddr> mmap(uint64_t len, mm::MmapProt prot, mm::MmapFlags flags);

  unsigned minor() const;
  mm::Process& process() const;
  // The file's state (struct dmirror), for tests of the device page table.
  Dmirror& dmirror() const { return *dmirror_; }

 private:
  friend class DmirrorDriver;
  DmirrorFile(DmirrorDriver& driver, std::unique_ptr<Dmirror> dmirror);

  DmirrorDriver& driver_;
  std::unique_ptr<Dmirror> dmirror_;
};

}  // namespace dpmm::dmirror
