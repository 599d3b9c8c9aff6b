// A machine with the dmirror driver loaded and one process with device 0 (device-private)
// open, as the kernel's hmm selftests run: what the migration, fault-back and hmm_range_fault
// benchmarks drive. Device memory goes through the real layers (migrate_vma, the CPU fault
// path, hmm_range_fault) under one design.
//
// The machine is small on purpose (x86_64, 46-bit physical, KASLR off, RAM at 4 GiB): 2 GiB
// for 4 KiB-page runs, big enough for the selftest's largest buffer (256 MiB) plus the system
// pages that back the device's pages, small enough that its memmap (32 MiB) costs nothing to
// build. THP runs get their own machine with 8 GiB: dpmm has no compaction (nor does a THP
// fault here try it), so after many migrations of 4 KiB pages, whose backing pages are
// allocated and freed one at a time, a 2 GiB machine no longer has 128 free 2 MiB blocks. Its
// RAM is initialised up front (DeferredInit::kNo), so no benchmark pays for deferred init.
//
// Order of teardown (dmirror.h): the file, then the process, then the driver, then the
// machine.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "base/result.h"
#include "devmem/design.h"
#include "drivers/dmirror/dmirror.h"
#include "drivers/dmirror/uapi.h"
#include "migrate/device_kernel.h"
#include "mm/mman.h"
#include "mm/page_table.h"
#include "mm/process.h"
#include "phys/machine_toml.h"

namespace dpmm::bench {

inline constexpr mm::MmapProt kProtRw = mm::MmapProt::kRead | mm::MmapProt::kWrite;

// Page size of a migration, the selftest's use_thp switch: kBase maps the buffer with 4 KiB
// pages; kThp maps it 2 MiB-aligned with MADV_HUGEPAGE, so the first touch of each 2 MiB
// maps an order-9 THP by a PMD. What migrate_vma then does with a THP (split it and move
// 4 KiB pages, or move it whole with MIGRATE_VMA_SELECT_COMPOUND) is the driver's and the
// design's business: the benchmark reports what it found (pmd_level_fraction).
enum class FolioSize : int64_t { kBase = 0, kThp = 9 };

class DmirrorEnv {
 public:
  DmirrorEnv(devmem::Design design, uint64_t ram_gib) {
    const std::string toml = fmt::format(
        "name = \"bench\"\narch = \"x86_64\"\nphys_bits = 46\nkaslr = false\n"
        "[[ram]]\nstart = \"0x100000000\"\nsize = \"{}GiB\"\n",
        ram_gib);
    phys::Machine m = MUST(phys::parse_machine_toml(toml, "bench", ""), "bench machine");
    migrate::DeviceKernelOptions o;
    o.deferred_init = page::DeferredInit::kNo;
    dk_ = MUST(migrate::DeviceKernel::create(std::move(m), design, o), "device kernel");
    dmirror::DmirrorOptions d;
    d.coherent = dmirror::CoherentDevices::kNo;
    driver_ = MUST(dmirror::DmirrorDriver::create(*dk_, d), "dmirror loads");
    process_ = MUST(mm::Process::create(dk_->kernel()), "process");
    file_ = MUST(driver_->open(*process_, dmirror::kPrivateDeviceOne), "open device 0");
  }
  ~DmirrorEnv() {
    file_.reset();
    process_.reset();
    driver_.reset();
    dk_.reset();
  }
  DmirrorEnv(const DmirrorEnv&) = delete;
  DmirrorEnv& operator=(const DmirrorEnv&) = delete;

  mm::Process& process() { return *process_; }
  dmirror::DmirrorDriver& driver() { return *driver_; }
  const void* device_owner() const { return driver_->device_owner(dmirror::kPrivateDeviceOne); }

  // An anonymous private mapping of `bytes`, every page written by the model CPU (the
  // selftest's "touch every page"), so each page is a present anon page.
  VirtAddr map_touched(uint64_t bytes) {
    const VirtAddr a = MUST(process_->mmap_anon(bytes, kProtRw), "mmap");
    MUST(process_->fill(a, bytes, std::byte{0x5a}), "touch every page");
    return a;
  }
  // As map_touched, but 2 MiB-aligned with MADV_HUGEPAGE (the selftest's ALIGN + madvise),
  // so every whole 2 MiB is a PMD-mapped THP; aborts if one is not (a benchmark of THPs that
  // measured 4 KiB pages would be a wrong number, not a slow one).
  VirtAddr map_thp_touched(uint64_t bytes) {
    const uint64_t slop = mm::kHpagePmdSize;
    const VirtAddr raw = MUST(process_->mmap_anon(bytes + slop, kProtRw), "mmap");
    const VirtAddr a = raw.align_up(mm::kHpagePmdSize);
    if (a != raw) MUST(process_->munmap(raw, a - raw), "trim head");
    if (a + bytes != raw + bytes + slop) {
      MUST(process_->munmap(a + bytes, (raw + bytes + slop) - (a + bytes)), "trim tail");
    }
    MUST(process_->madvise(a, bytes, mm::Madvise::kHugePage), "MADV_HUGEPAGE");
    MUST(process_->fill(a, bytes, std::byte{0x5a}), "touch every page");
    // A buffer under 2 MiB holds no THP (the selftest's smaller sizes, which it runs with
    // use_thp too): it is 4 KiB pages, as in the kernel.
    if (bytes >= mm::kHpagePmdSize && pmd_level_fraction(a, bytes) != 1.0) {
      std::fprintf(stderr, "bench: a 2 MiB-aligned MADV_HUGEPAGE buffer is not all THP\n");
      std::abort();
    }
    return a;
  }
  void unmap(VirtAddr a, uint64_t bytes) { MUST(process_->munmap(a, bytes), "munmap"); }

  // The fraction of the whole 2 MiB steps of [a, a + bytes) (a 2 MiB-aligned) mapped at PMD
  // level: a PMD leaf (a THP) or a PMD-level swap entry (a device-private or migration entry
  // for a whole THP), rather than a PTE table. 0 for a buffer under 2 MiB.
  double pmd_level_fraction(VirtAddr a, uint64_t bytes) {
    uint64_t steps = 0;
    uint64_t huge = 0;
    for (VirtAddr v = a; v + mm::kHpagePmdSize <= a + bytes; v = v + mm::kHpagePmdSize, ++steps) {
      const std::optional<mm::EntrySlot> pmd = process_->mm().page_table().walk_pmd(v);
      if (!pmd) continue;
      const arch::DecodedEntry d =
          dk_->kernel().codec().decode(arch::EntryLevel::kPmd, pmd->load());
      huge += d.kind == arch::DecodedEntry::Kind::kPresent ||
              d.kind == arch::DecodedEntry::Kind::kSwap;
    }
    return steps == 0 ? 0.0 : static_cast<double>(huge) / static_cast<double>(steps);
  }

  // HMM_DMIRROR_MIGRATE_TO_DEV / _TO_SYS of [addr, addr + bytes); `mirror` is the host
  // buffer the ioctl copies the migrated data into (as the kernel's returns it for
  // verification). Aborts unless every page moved: to the device, the verification read
  // counts every page (cpages == npages); to the system, the driver counts a whole THP as
  // one entry (dmirror_successful_migrated_pages), so the check is that the device holds no
  // page any more.
  void migrate(dmirror::DmirrorIoctl request, VirtAddr addr, uint64_t bytes, std::byte* mirror) {
    dmirror::HmmDmirrorCmd cmd;
    cmd.addr = addr.raw();
    cmd.ptr = reinterpret_cast<uint64_t>(mirror);
    cmd.npages = bytes >> kPageShift;
    const int64_t ret = file_->ioctl(request, cmd);
    const bool all_moved = request == dmirror::DmirrorIoctl::kMigrateToSys
                               ? driver_->device_pages_in_use(dmirror::kPrivateDeviceOne) == 0
                               : cmd.cpages == cmd.npages;
    if (ret != 0 || !all_moved) {
      std::fprintf(stderr, "dmirror ioctl %u: ret %lld, %llu of %llu pages\n",
                   static_cast<unsigned>(request), static_cast<long long>(ret),
                   static_cast<unsigned long long>(cmd.cpages),
                   static_cast<unsigned long long>(cmd.npages));
      std::abort();
    }
  }
  void to_device(VirtAddr addr, uint64_t bytes, std::byte* mirror) {
    migrate(dmirror::DmirrorIoctl::kMigrateToDev, addr, bytes, mirror);
  }
  void to_system(VirtAddr addr, uint64_t bytes, std::byte* mirror) {
    migrate(dmirror::DmirrorIoctl::kMigrateToSys, addr, bytes, mirror);
  }

 private:
  std::unique_ptr<migrate::DeviceKernel> dk_;
  std::unique_ptr<dmirror::DmirrorDriver> driver_;
  std::unique_ptr<mm::Process> process_;
  std::unique_ptr<dmirror::DmirrorFile> file_;
};

// One environment per design and folio size, built on first use and kept for the whole run
// (building one is not what any benchmark measures).
inline DmirrorEnv& dmirror_env(devmem::Design design, FolioSize folio = FolioSize::kBase) {
  static std::unique_ptr<DmirrorEnv> envs[3][2];
  const bool thp = folio == FolioSize::kThp;
  std::unique_ptr<DmirrorEnv>& e = envs[static_cast<size_t>(design)][thp ? 1 : 0];
  if (!e) e = std::make_unique<DmirrorEnv>(design, thp ? 8 : 2);
  return *e;
}

// The label every benchmark of these binaries carries: the design's name.
inline std::string design_label(devmem::Design d) { return std::string(devmem::design_name(d)); }

}  // namespace dpmm::bench
