// The module and its files (lib/test_hmm.c hmm_dmirror_init, hmm_dmirror_exit,
// dmirror_device_init, dmirror_fops_open, dmirror_fops_release, dmirror_fops_unlocked_ioctl,
// dmirror_fops_mmap).
#include "drivers/dmirror/dmirror.h"


#include <algorithm>
#include <cassert>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/trace.h"
#include "devmem/device_memory.h"
#include "drivers/dmirror/copy_engine.h"
#include "drivers/dmirror/dmirror_device.h"
#include "drivers/dmirror/mirror.h"
#include "migrate/device_kernel.h"
#include "mm/file.h"
#include "mm/process.h"
#include "mm/vm_insert_page.h"
#include "page/folio.h"
#include "phys/iores.h"

namespace dpmm::dmirror {

namespace {

// The device file as mmap sees it: no page cache; f_op->mmap fills the new VMA with zeroed
// kernel pages (dmirror_fops_mmap).
class DmirrorMmapFile final : public mm::File {
 public:
  DmirrorMmapFile(mm::Kernel& kernel, unsigned minor)
      : mm::File(mm::FMode::kRead | mm::FMode::kWrite, nullptr), kernel_(kernel), minor_(minor) {}
  std::string name() const override { return fmt::format("hmm_dmirror{}", minor_); }

  Status mmap(mm::Mm& mm, mm::Vma& vma) override {
    for (VirtAddr addr = vma.start; addr < vma.end; addr += kPageSize) {
      // alloc_page(GFP_KERNEL | __GFP_ZERO): alloc_folio hands out zeroed pages.
      Result<page::Folio> folio = kernel_.alloc_folio(Order(0));
      if (folio.is_error()) {
        return make_error(Errno::kENOMEM, "hmm_dmirror{} mmap: no page for {:#x}", minor_,
                          addr.raw());
      }
      Status st = mm::vm_insert_page(mm, vma, addr, folio->head());
      // On success the PTE holds its own reference; either way the allocation's goes.
      page::folio_put(*folio);
      TRY(st);
    }
    return ok();
  }

 private:
  mm::Kernel& kernel_;
  unsigned minor_;
};

// The name of the iomem resources standing for the SPM ranges while the driver is loaded.
std::string spm_name(unsigned dev) {
  return fmt::format("Soft Reserved (hmm_dmirror spm_addr_dev{})", dev);
}

bool range_contains(const phys::PhysRange& outer, const phys::PhysRange& inner) {
  return outer.start <= inner.start && inner.end <= outer.end;
}

// The backing store's ranges that are not System RAM: KernelOptions::cpu_device_ranges.
std::vector<phys::PhysRange> cpu_device_ranges(const mm::Kernel& k) {
  const std::vector<phys::PhysRange> ram = k.machine().system_ram();
  std::vector<phys::PhysRange> out;
  for (const phys::PhysRange& r : k.backing_store().ranges()) {
    const bool is_ram = std::any_of(ram.begin(), ram.end(), [&](const phys::PhysRange& m) {
      return m.overlaps(r);
    });
    if (!is_ram && r.size() >= kDevmemChunkSize) out.push_back(r);
  }
  return out;
}

bool is_cpu_device_range(const mm::Kernel& k, const phys::PhysRange& r) {
  const std::vector<phys::PhysRange> dev = cpu_device_ranges(k);
  return std::any_of(dev.begin(), dev.end(),
                     [&](const phys::PhysRange& d) { return range_contains(d, r); });
}

}  // namespace

Result<std::array<phys::PhysRange, 2>> find_spm_ranges(const phys::Machine& machine) {
  // The lowest section-aligned windows that no top-level iomem resource touches, below the
  // free-region limit (so that the range is hot-pluggable and inside the vmemmap, which a
  // linearly mapped coherent pagemap needs). get_free_mem_region's ascending mode cannot be
  // used from iomem_resource itself: its loop never starts at address 0.
  const phys::GfrParams gfr = machine.gfr_params();
  const uint64_t limit = gfr.limit.end.raw();
  std::vector<phys::PhysRange> busy;
  for (const phys::ResourceInfo& r : machine.iomem().walk()) {
    if (r.depth == 0) busy.push_back(r.range);
  }
  std::array<phys::PhysRange, 2> out;
  for (unsigned i = 0; i < 2; ++i) {
    uint64_t addr = gfr.align;  // page 0 is never handed out
    bool found = false;
    while (addr <= limit && limit - addr >= kDevmemChunkSize - 1) {
      const phys::PhysRange w{PhysAddr(addr), PhysAddr(addr + kDevmemChunkSize - 1)};
      auto hit = std::find_if(busy.begin(), busy.end(),
                              [&](const phys::PhysRange& b) { return b.overlaps(w); });
      if (hit == busy.end()) {
        found = true;
        break;
      }
      addr = (hit->end.raw() / gfr.align + 1) * gfr.align;
    }
    if (!found) {
      return make_error(Errno::kERANGE,
                        "no free {} MiB window below {:#x} for hmm_dmirror spm_addr_dev{}",
                        kDevmemChunkSize >> 20, limit, i);
    }
    out[i] = phys::PhysRange{PhysAddr(addr), PhysAddr(addr + kDevmemChunkSize - 1)};
    busy.push_back(out[i]);
  }
  return out;
}

// ---- the module ----

DmirrorDriver::DmirrorDriver(migrate::DeviceKernel& dk, DmirrorOptions options)
    : dk_(dk), options_(options) {}

Result<std::unique_ptr<DmirrorDriver>> DmirrorDriver::create(migrate::DeviceKernel& dk,
                                                             DmirrorOptions options) {
  std::unique_ptr<DmirrorDriver> d(new DmirrorDriver(dk, options));
  if (options.copy_engine == nullptr) d->host_engine_ = std::make_unique<HostCopyEngine>();
  CopyEngine& engine = options.copy_engine ? *options.copy_engine : *d->host_engine_;

  // Minors 0 and 1: device-private; each starts with one chunk (dmirror_device_init).
  for (unsigned minor : {kPrivateDeviceOne, kPrivateDeviceTwo}) {
    const DmirrorPrivateDevice& cfg = options.private_devices[minor];
    if (cfg.present == DevicePresent::kNo) continue;
    if (cfg.chunk_size == 0 || cfg.chunk_size % kPageSize != 0) {
      return make_error(Errno::kEINVAL, "hmm_dmirror{}: chunk size {} is not whole pages",
                        minor, cfg.chunk_size);
    }
    auto dev = std::make_unique<DmirrorDevice>(dk, minor, DmirrorMemoryType::kDevicePrivate,
                                               std::nullopt, engine, cfg.chunk_size);
    for (unsigned n = 0; n < cfg.initial_chunks; ++n) {
      Result<page::Page*> chunk =
          dev->allocate_chunk(DmirrorDevice::TakePage::kNo, IsLarge::kNo);
      if (chunk.is_error()) {
        // hmm_dmirror_init's error path: the devices made so far go away.
        dev->remove_chunks();
        for (auto& made : d->devices_) {
          if (made) made->remove_chunks();
        }
        return std::move(chunk).error();
      }
    }
    d->devices_[minor] = std::move(dev);
  }

  // Minors 2 and 3: device-coherent, only with two special-purpose memory ranges
  // (spm_addr_dev0 and spm_addr_dev1 both set). The kernel gives minor 2 spm_addr_dev1 and
  // minor 3 spm_addr_dev0 ((MINOR - 2) ? dev0 : dev1).
  if (options.coherent == CoherentDevices::kYes) {
    std::optional<PhysAddr> dev0 = options.spm_addr_dev0;
    std::optional<PhysAddr> dev1 = options.spm_addr_dev1;
    if (!dev0 && !dev1) {
      const std::vector<phys::PhysRange> spm = cpu_device_ranges(dk.kernel());
      if (spm.size() >= 2) {
        dev0 = spm[0].start;
        dev1 = spm[1].start;
      }
    }
    if (dev0 && dev1) TRY(d->add_coherent_devices(*dev0, *dev1, engine));
  }
  return d;
}

Status DmirrorDriver::add_coherent_devices(PhysAddr dev0, PhysAddr dev1, CopyEngine& engine) {
  phys::ResourceTree& iomem = dk_.device_memory().machine().iomem();
  const PhysAddr spm[2] = {dev0, dev1};
  for (unsigned i = 0; i < 2; ++i) {
    const phys::PhysRange r{spm[i], spm[i] + (kDevmemChunkSize - 1)};
    // The device memory must hold bytes the CPU can reach (KernelOptions::cpu_device_ranges,
    // migrate::DeviceKernelOptions::coherent_ranges): a platform with SPM has it.
    if (!is_cpu_device_range(dk_.kernel(), r)) {
      return make_error(Errno::kEINVAL,
                        "spm_addr_dev{} = {:#x}: [{:#x}, {:#x}] is not CPU-addressable device "
                        "memory of this machine (DeviceKernelOptions::coherent_ranges)",
                        i, spm[i].raw(), r.start.raw(), r.end.raw());
    }
    // Marked in iomem while the driver uses it, so no free-region search hands it out.
    Result<phys::ResourceId> id = iomem.insert_resource(
        iomem.root(), phys::NewResource{r, spm_name(i), phys::IoresourceFlags::kMem,
                                        phys::IoresDesc::kSoftReserved});
    if (id.is_error()) {
      release_spm();
      return make_error(id.error().code(), "spm_addr_dev{}: {}", i, id.error().message());
    }
    spm_[i] = *id;
  }
  for (unsigned minor : {kCoherenceDeviceOne, kCoherenceDeviceTwo}) {
    const PhysAddr start = minor == kCoherenceDeviceOne ? dev1 : dev0;
    auto dev = std::make_unique<DmirrorDevice>(
        dk_, minor, DmirrorMemoryType::kDeviceCoherent,
        phys::PhysRange{start, start + (kDevmemChunkSize - 1)}, engine);
    Result<page::Page*> chunk = dev->allocate_chunk(DmirrorDevice::TakePage::kNo, IsLarge::kNo);
    if (chunk.is_error()) {
      dev->remove_chunks();
      for (unsigned m : {kCoherenceDeviceOne, kCoherenceDeviceTwo}) {
        if (devices_[m]) devices_[m]->remove_chunks();
        devices_[m].reset();
      }
      release_spm();
      return std::move(chunk).error();
    }
    devices_[minor] = std::move(dev);
  }
  return ok();
}

void DmirrorDriver::release_spm() {
  phys::ResourceTree& iomem = dk_.device_memory().machine().iomem();
  for (auto& id : spm_) {
    if (id) (void)iomem.release_resource(*id);
    id.reset();
  }
}

DmirrorDriver::~DmirrorDriver() {
  assert(open_files_ == 0 && "hmm_dmirror unloaded with files open");
  for (auto& dev : devices_) {
    if (dev) dev->remove_chunks();
  }
  for (auto& dev : devices_) dev.reset();
  release_spm();
}

bool DmirrorDriver::has_device(unsigned minor) const {
  return minor < kDmirrorNDevices && devices_[minor] != nullptr;
}

DmirrorDevice& DmirrorDriver::device(unsigned minor) const {
  assert(has_device(minor) && "no dmirror device at this minor");
  return *devices_[minor];
}

DmirrorDeviceStats DmirrorDriver::device_stats(unsigned minor) const {
  return device(minor).stats();
}

uint64_t DmirrorDriver::device_pages_in_use(unsigned minor) const {
  return device(minor).pages_in_use();
}

const void* DmirrorDriver::device_owner(unsigned minor) const { return device(minor).owner(); }

DmirrorMemoryType DmirrorDriver::device_type(unsigned minor) const {
  return device(minor).type();
}

int DmirrorDriver::nr_open_files() const { return open_files_; }

Result<std::unique_ptr<DmirrorFile>> DmirrorDriver::open(mm::Process& process, unsigned minor) {
  if (minor >= kDmirrorNDevices) {
    return make_error(Errno::kENXIO, "no hmm_dmirror char device with minor {}", minor);
  }
  if (!devices_[minor]) {
    return make_error(Errno::kENODEV, "hmm_dmirror{} has no device ({})", minor,
                      minor >= kCoherenceDeviceOne ? "no special-purpose memory for it"
                                                   : "not created");
  }
  auto dmirror = std::make_unique<Dmirror>(*devices_[minor], process);
  TRY(dmirror->open());
  ++open_files_;
  return std::unique_ptr<DmirrorFile>(new DmirrorFile(*this, std::move(dmirror)));
}

// ---- a file ----

DmirrorFile::DmirrorFile(DmirrorDriver& driver, std::unique_ptr<Dmirror> dmirror)
    : driver_(driver), dmirror_(std::move(dmirror)) {}

DmirrorFile::~DmirrorFile() {
  dmirror_->release();
  dmirror_.reset();
  --driver_.open_files_;
}

unsigned DmirrorFile::minor() const { return dmirror_->mdevice().minor(); }

mm::Process& DmirrorFile::process() const { return dmirror_->process(); }

namespace {

// The tracepoint of each command: "dmirror_<command>".
std::string_view ioctl_trace_name(DmirrorIoctl request) {
  switch (request) {
    case DmirrorIoctl::kRead: return "dmirror_read";
    case DmirrorIoctl::kWrite: return "dmirror_write";
    case DmirrorIoctl::kMigrateToDev: return "dmirror_migrate_to_dev";
    case DmirrorIoctl::kMigrateToSys: return "dmirror_migrate_to_sys";
    case DmirrorIoctl::kSnapshot: return "dmirror_snapshot";
    case DmirrorIoctl::kExclusive: return "dmirror_exclusive";
    case DmirrorIoctl::kCheckExclusive: return "dmirror_check_exclusive";
    case DmirrorIoctl::kRelease: return "dmirror_release";
    case DmirrorIoctl::kFlags: return "dmirror_flags";
  }
  return "dmirror_ioctl";
}

}  // namespace

int64_t DmirrorFile::ioctl(DmirrorIoctl request, HmmDmirrorCmd& ucmd) {
  // copy_from_user: work on a copy; the caller's command changes only on success.
  HmmDmirrorCmd cmd = ucmd;
  if ((cmd.addr & (kPageSize - 1)) != 0) return errno_neg(Errno::kEINVAL);
  if (cmd.addr >= cmd.addr + (cmd.npages << kPageShift)) return errno_neg(Errno::kEINVAL);
  cmd.cpages = 0;
  cmd.faults = 0;

  if (static_cast<uint32_t>(request) > static_cast<uint32_t>(DmirrorIoctl::kFlags)) {
    return errno_neg(Errno::kEINVAL);  // an ioctl number the driver does not know
  }

  Dmirror& d = *dmirror_;
  TraceScope trace(ioctl_trace_name(request), TraceCategory::kDevice, cmd.npages);
  Status ret = ok();
  switch (request) {
    case DmirrorIoctl::kRead:
      ret = d.read(cmd);
      break;
    case DmirrorIoctl::kWrite:
      ret = d.write(cmd);
      break;
    case DmirrorIoctl::kMigrateToDev:
      ret = d.migrate_to_device(cmd);
      break;
    case DmirrorIoctl::kMigrateToSys:
      ret = d.migrate_to_system(cmd);
      break;
    case DmirrorIoctl::kExclusive:
      ret = d.exclusive(cmd);
      break;
    case DmirrorIoctl::kCheckExclusive:
      ret = d.check_atomic(VirtAddr(cmd.addr), VirtAddr(cmd.addr + (cmd.npages << kPageShift)));
      break;
    case DmirrorIoctl::kSnapshot:
      ret = d.snapshot(cmd);
      break;
    case DmirrorIoctl::kRelease:
      d.mdevice().remove_chunks();
      break;
    case DmirrorIoctl::kFlags:
      d.set_flags(cmd.npages);
      break;
  }
  if (ret.is_error()) return errno_neg(ret.error().code());
  ucmd = cmd;  // copy_to_user
  return 0;
}

Result<VirtAddr> DmirrorFile::mmap(uint64_t len, mm::MmapProt prot, mm::MmapFlags flags) {
  auto file = std::make_shared<DmirrorMmapFile>(process().kernel(), minor());
  return process().mm().mmap(VirtAddr(0), len, prot, flags, std::move(file), 0);
}

}  // namespace dpmm::dmirror
