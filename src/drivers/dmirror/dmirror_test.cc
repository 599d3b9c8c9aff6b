// The dmirror driver over the three designs: every command with contents, refcounts and
// device page table entries checked, the invalidate path, eviction on close, RELEASE with
// pages in use, allocator statistics, the device file's mmap and the coherent devices.
#include "drivers/dmirror/dmirror.h"

#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "arch/softleaf.h"
#include "devmem/design.h"
#include "devmem/device_memory.h"
#include "drivers/dmirror/dmirror_device.h"
#include "drivers/dmirror/mirror.h"
#include "migrate/device_kernel.h"
#include "mm/anon_rmap.h"
#include "mm/huge_memory.h"
#include "mm/pagemap.h"
#include "mm/process.h"
#include "page/folio.h"
#include "phys/test_machine.h"

namespace dpmm::dmirror {
namespace {

using devmem::Design;
using mm::MmapProt;

// x86_64 with 512 MiB of RAM above 4 GiB; the low 4 GiB reserved, so the special-purpose
// memory for the coherent devices lands right above RAM.
constexpr uint64_t kChunkPages = kDevmemChunkSize >> kPageShift;

std::string design_param_name(const ::testing::TestParamInfo<Design>& p) {
  std::string n(devmem::design_name(p.param));
  for (char& c : n) c = c == '-' ? '_' : c;
  return n;
}

phys::Machine test_machine() {
  return phys::testing::small_machine("dmirror-test", arch::ArchKind::kX86_64, 512,
                                      phys::testing::ReserveLow::kYes);
}

class DmirrorTest : public ::testing::TestWithParam<Design> {
 protected:
  void SetUp() override { build(CoherentDevices::kYes); }
  void TearDown() override {
    proc_.reset();
    drv_.reset();
    if (dk_) {
      EXPECT_EQ(dk_->device_memory().nr_pagemaps(), 0u) << "driver left pagemaps";
    }
    dk_.reset();
  }

  void build(CoherentDevices coherent) {
    phys::Machine m = test_machine();
    migrate::DeviceKernelOptions opts;
    const std::array<phys::PhysRange, 2> spm = MUST(find_spm_ranges(m), "room for SPM");
    opts.coherent_ranges = {spm[0], spm[1]};
    spm_ = spm;
    dk_ = MUST(migrate::DeviceKernel::create(std::move(m), GetParam(), opts), "device kernel");
    proc_ = MUST(mm::Process::create(dk_->kernel()), "process");
    DmirrorOptions o;
    o.coherent = coherent;
    drv_ = MUST(DmirrorDriver::create(*dk_, o), "driver");
  }

  std::unique_ptr<DmirrorFile> open(unsigned minor) {
    return MUST(drv_->open(*proc_, minor), "open");
  }

  VirtAddr map(uint64_t npages, MmapProt prot = MmapProt::kRead | MmapProt::kWrite) {
    return MUST(proc_->mmap_anon(npages * kPageSize, prot), "mmap");
  }

  // ptr[i] = i + seed for every int of the range, through the CPU.
  void fill(VirtAddr a, uint64_t npages, uint32_t seed = 0) {
    std::vector<uint32_t> v(npages * kPageSize / 4);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint32_t>(i) + seed;
    ASSERT_TRUE(proc_->write(a, std::as_bytes(std::span(v))).is_ok());
  }
  std::vector<uint32_t> cpu_ints(VirtAddr a, uint64_t npages) {
    std::vector<uint32_t> v(npages * kPageSize / 4);
    EXPECT_TRUE(proc_->read(a, std::as_writable_bytes(std::span(v))).is_ok());
    return v;
  }
  static void expect_pattern(const std::vector<uint32_t>& v, uint32_t seed = 0) {
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(v[i], static_cast<uint32_t>(i) + seed) << "int " << i;
    }
  }

  // hmm_dmirror_cmd of the selftest: 0 or -errno; cpages/faults only on success.
  int64_t cmd(DmirrorFile& f, DmirrorIoctl req, VirtAddr addr, void* mirror, uint64_t npages,
              HmmDmirrorCmd* out = nullptr) {
    HmmDmirrorCmd c;
    c.addr = addr.raw();
    c.ptr = reinterpret_cast<uint64_t>(mirror);
    c.npages = npages;
    const int64_t r = f.ioctl(req, c);
    if (out) *out = c;
    return r;
  }

  // The device page behind a device-private PTE, or null.
  page::Page* device_page_at(VirtAddr a) {
    std::optional<mm::EntrySlot> slot = proc_->mm().page_table().walk_pte(a);
    if (!slot) return nullptr;
    const arch::Softleaf l =
        dk_->kernel().codec().softleaf_from(arch::EntryLevel::kPte, slot->load());
    if (!arch::softleaf_is_device_private(l)) return nullptr;
    Result<page::Page*> p = dk_->device_memory().device_private_entry_to_page(l);
    return p.is_ok() ? *p : nullptr;
  }
  uint64_t pagemap(VirtAddr a) { return mm::pagemap_entry(proc_->mm(), a); }

  std::unique_ptr<migrate::DeviceKernel> dk_;
  std::unique_ptr<mm::Process> proc_;
  std::unique_ptr<DmirrorDriver> drv_;
  std::array<phys::PhysRange, 2> spm_;
};

// ---- module init, open, argument checks ----

TEST_P(DmirrorTest, ModuleInitCreatesFourDevicesWithOneChunkEach) {
  for (unsigned m = 0; m < kDmirrorNDevices; ++m) {
    ASSERT_TRUE(drv_->has_device(m)) << m;
    const DmirrorDeviceStats s = drv_->device_stats(m);
    EXPECT_EQ(s.nr_chunks, 1u);
    EXPECT_EQ(s.nr_free_pages, kChunkPages);
    EXPECT_EQ(s.nr_free_folios, 0u);
    EXPECT_EQ(s.calloc, 0u);
    EXPECT_EQ(s.cfree, 0u);
  }
  EXPECT_EQ(drv_->device_type(0), DmirrorMemoryType::kDevicePrivate);
  EXPECT_EQ(drv_->device_type(3), DmirrorMemoryType::kDeviceCoherent);
  EXPECT_NE(drv_->device_owner(0), drv_->device_owner(1));
  EXPECT_EQ(dk_->device_memory().nr_pagemaps(), 4u);
  // The coherent devices sit on the platform's SPM, marked in iomem while in use; minor 2
  // gets spm_addr_dev1 as in the kernel.
  bool marked = false;
  for (const phys::ResourceInfo& r : dk_->device_memory().machine().iomem().walk()) {
    if (r.range == spm_[1] && r.desc == phys::IoresDesc::kSoftReserved) marked = true;
  }
  EXPECT_TRUE(marked);
}

TEST_P(DmirrorTest, OpenRefusesBadMinorsAndAbsentDevices) {
  EXPECT_EQ(drv_->open(*proc_, 4).error().code(), Errno::kENXIO);
  proc_.reset();
  drv_.reset();
  dk_.reset();
  build(CoherentDevices::kNo);
  EXPECT_FALSE(drv_->has_device(kCoherenceDeviceOne));
  EXPECT_EQ(drv_->open(*proc_, kCoherenceDeviceOne).error().code(), Errno::kENODEV);
  EXPECT_EQ(drv_->open(*proc_, kCoherenceDeviceTwo).error().code(), Errno::kENODEV);
  auto f = open(kPrivateDeviceOne);
  EXPECT_EQ(drv_->nr_open_files(), 1);
  f.reset();
  EXPECT_EQ(drv_->nr_open_files(), 0);
}

TEST_P(DmirrorTest, IoctlArgumentErrorsLeaveTheCommandAlone) {
  auto f = open(0);
  const VirtAddr a = map(4);
  std::vector<uint32_t> mirror(4 * kPageSize / 4);
  HmmDmirrorCmd c{a.raw() + 8, reinterpret_cast<uint64_t>(mirror.data()), 4, 77, 88};
  EXPECT_EQ(f->ioctl(DmirrorIoctl::kRead, c), -22);  // unaligned addr
  EXPECT_EQ(c.cpages, 77u);
  EXPECT_EQ(c.faults, 88u);
  c.addr = a.raw();
  c.npages = 0;
  EXPECT_EQ(f->ioctl(DmirrorIoctl::kRead, c), -22);  // empty range
  c.npages = 4;
  EXPECT_EQ(f->ioctl(static_cast<DmirrorIoctl>(0x09), c), -22);  // READ_UNLOCKABLE: unknown
  EXPECT_EQ(c.cpages, 77u);
  c.ptr = 0;
  EXPECT_EQ(f->ioctl(DmirrorIoctl::kRead, c), -14);  // NULL user pointer: EFAULT
  EXPECT_EQ(c.cpages, 77u);
}

// ---- READ / WRITE and the invalidate path ----

TEST_P(DmirrorTest, ReadFaultsInOnceAndCopiesTheBytes) {
  auto f = open(0);
  constexpr uint64_t n = 40;  // more than one 32-page fault chunk
  const VirtAddr a = map(n);
  fill(a + 2 * kPageSize, n - 2, 2 * kPageSize / 4);  // pages 0 and 1 untouched
  std::vector<uint32_t> mirror(n * kPageSize / 4, 0xdeadbeef);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRead, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  EXPECT_EQ(c.faults, 1u);
  for (size_t i = 0; i < mirror.size(); ++i) {
    ASSERT_EQ(mirror[i], i < 2 * kPageSize / 4 ? 0u : static_cast<uint32_t>(i)) << i;
  }
  // The device page table: read-only entries on the zero page for the untouched pages,
  // writable ones on the written pages (hmm reports pte_write).
  DevicePageTable pt = f->dmirror().pt_snapshot();
  ASSERT_EQ(pt.size(), n);
  const Pfn zero = dk_->kernel().zero_pfn();
  for (uint64_t i = 0; i < n; ++i) {
    const DptEntry* e = pt.load((a.raw() >> kPageShift) + i);
    ASSERT_NE(e, nullptr);
    if (i < 2) {
      EXPECT_EQ(dk_->kernel().page_to_pfn(e->page), zero);
      EXPECT_EQ(e->tag, DptTag::kRead);
    } else {
      EXPECT_EQ(e->tag, DptTag::kWrite);
    }
  }
  // A second READ needs no fault.
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRead, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.faults, 0u);
}

TEST_P(DmirrorTest, ReadOfProtNoneIsEfaultAndCopiesNothing) {
  auto f = open(0);
  const VirtAddr a = map(8);
  fill(a, 8);
  ASSERT_TRUE(proc_->mprotect(a, 8 * kPageSize, MmapProt::kNone).is_ok());
  std::vector<uint32_t> mirror(8 * kPageSize / 4, 7);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kRead, a, mirror.data(), 8), -14);
  for (uint32_t v : mirror) ASSERT_EQ(v, 7u);
  ASSERT_TRUE(proc_->mprotect(a, 8 * kPageSize, MmapProt::kRead).is_ok());
  expect_pattern(cpu_ints(a, 8));
}

TEST_P(DmirrorTest, WriteFaultsWritableAndTheCpuSeesTheBytes) {
  auto f = open(0);
  constexpr uint64_t n = 16;
  const VirtAddr a = map(n);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  for (size_t i = 0; i < mirror.size(); ++i) mirror[i] = static_cast<uint32_t>(i) + 5;
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kWrite, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  EXPECT_EQ(c.faults, 1u);
  expect_pattern(cpu_ints(a, n), 5);
  // Every page is a real anonymous page now, mapped once, refcount 1 + nothing from the
  // device (the device page table holds no references).
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t pm = pagemap(a + i * kPageSize);
    ASSERT_NE(pm & mm::kPmPresent, 0u);
    page::Page* p = MUST(dk_->kernel().pfn_to_page(Pfn(pm & mm::kPmPframeMask)), "ram");
    EXPECT_EQ(p->ref_count(), 1);
    EXPECT_EQ(p->mapcount(), 1);
  }
  // Read-only VMA: the write fault is refused (EPERM), nothing copied back.
  const VirtAddr ro = map(4, MmapProt::kRead);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kWrite, ro, mirror.data(), 4), -1);
}

TEST_P(DmirrorTest, MunmapAndMprotectEraseTheDevicePageTable) {
  auto f = open(0);
  constexpr uint64_t n = 16;
  const VirtAddr a = map(n);
  fill(a, n);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRead, a, mirror.data(), n), 0);
  ASSERT_EQ(f->dmirror().pt_snapshot().size(), n);
  const uint64_t base = a.raw() >> kPageShift;
  // munmap of pages [4, 8): MMU_NOTIFY_UNMAP over [4, 8) erases vpn 4..8 -- the page at
  // `end` too, as xa_for_each_range's last index is inclusive.
  ASSERT_TRUE(proc_->munmap(a + 4 * kPageSize, 4 * kPageSize).is_ok());
  DevicePageTable pt = f->dmirror().pt_snapshot();
  for (uint64_t i = 0; i < n; ++i) {
    const bool gone = i >= 4 && i <= 8;
    EXPECT_EQ(pt.load(base + i) == nullptr, gone) << i;
  }
  // mprotect(PROT_READ) of [10, 12): PROTECTION_VMA erases 10..12.
  ASSERT_TRUE(proc_->mprotect(a + 10 * kPageSize, 2 * kPageSize, MmapProt::kRead).is_ok());
  pt = f->dmirror().pt_snapshot();
  for (uint64_t i = 9; i < n; ++i) EXPECT_EQ(pt.load(base + i) == nullptr, i >= 10 && i <= 12);
  // The device sees the new protection on its next access: WRITE there is EPERM.
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kWrite, a + 10 * kPageSize, mirror.data(), 2), -1);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRead, a + 10 * kPageSize, mirror.data(), 2, &c), 0);
  EXPECT_EQ(c.faults, 1u);
  EXPECT_EQ(f->dmirror().pt_snapshot().load(base + 10)->tag, DptTag::kRead);
}

// ---- migration ----

TEST_P(DmirrorTest, MigrateToDeviceAndBackKeepsEveryByte) {
  auto f = open(0);
  constexpr uint64_t n = 600;  // two 512-page migrate chunks
  const VirtAddr a = map(n);
  fill(a, n, 3);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  expect_pattern(mirror, 3);
  DmirrorDeviceStats s = drv_->device_stats(0);
  EXPECT_EQ(s.calloc, n);
  EXPECT_EQ(s.nr_free_pages, kChunkPages - n);
  // Every page is a device-private entry (PM_SWAP, not present) on a device page of this
  // device: refcount 1, mapped once, backed by a system page holding the bytes.
  for (uint64_t i = 0; i < n; i += 97) {
    const VirtAddr va = a + i * kPageSize;
    EXPECT_EQ(pagemap(va) & (mm::kPmSwap | mm::kPmPresent), mm::kPmSwap);
    page::Page* d = device_page_at(va);
    ASSERT_NE(d, nullptr);
    EXPECT_TRUE(devmem::is_device_private_page(d));
    EXPECT_EQ(DmirrorDevice::page_to_device(d), &drv_->device(0));
    EXPECT_EQ(d->ref_count(), 1);
    EXPECT_EQ(d->mapcount(), 1);
    page::Page* r = drv_->device(0).backing_page(d);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->zone_device_data(), &f->dmirror());
    uint32_t first;
    std::memcpy(&first, drv_->device(0).page_data(d).data(), 4);
    EXPECT_EQ(first, static_cast<uint32_t>(i * kPageSize / 4) + 3);
  }
  // Snapshot: DEV_PRIVATE_LOCAL | WRITE.
  std::vector<uint8_t> perm(n);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kSnapshot, a, perm.data(), n), 0);
  for (uint8_t p : perm) ASSERT_EQ(p, kHmmDmirrorProtDevPrivateLocal | kHmmDmirrorProtWrite);
  // Migrating again keeps the pages where they are and their entries.
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  EXPECT_EQ(drv_->device_stats(0).calloc, n);

  // Back to system memory.
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToSys, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  s = drv_->device_stats(0);
  EXPECT_EQ(s.cfree, n);
  EXPECT_EQ(s.nr_free_pages, kChunkPages);
  EXPECT_EQ(f->dmirror().pt_snapshot().size(), 0u);  // erased while copying back
  for (uint64_t i = 0; i < n; i += 97) {
    EXPECT_NE(pagemap(a + i * kPageSize) & mm::kPmPresent, 0u);
  }
  expect_pattern(cpu_ints(a, n), 3);
}

TEST_P(DmirrorTest, CpuAccessMigratesOnePageBack) {
  auto f = open(0);
  constexpr uint64_t n = 8;
  const VirtAddr a = map(n);
  fill(a, n);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), 0);
  // A CPU read of page 3: migrate_to_ram moves that page only.
  EXPECT_EQ(MUST(proc_->read_u32(a + 3 * kPageSize + 8), "read"), 3 * kPageSize / 4 + 2);
  for (uint64_t i = 0; i < n; ++i) {
    EXPECT_EQ(device_page_at(a + i * kPageSize) == nullptr, i == 3) << i;
  }
  EXPECT_EQ(f->dmirror().pt_snapshot().load((a.raw() >> kPageShift) + 3), nullptr);
  EXPECT_EQ(drv_->device_stats(0).cfree, 1u);
  // A CPU write of page 5 too; then every byte through the CPU.
  ASSERT_TRUE(proc_->write_u32(a + 5 * kPageSize, 5 * kPageSize / 4).is_ok());
  expect_pattern(cpu_ints(a, n));
  EXPECT_EQ(drv_->device_stats(0).cfree, n);
}

TEST_P(DmirrorTest, HolesAndTheZeroPageMigrateAsZeroFilledPages) {
  auto f = open(0);
  constexpr uint64_t n = 4;
  const VirtAddr a = map(n);
  // Page 1 is the zero page (read fault), the rest are holes.
  EXPECT_EQ(MUST(proc_->read_u32(a + kPageSize), "read"), 0u);
  std::vector<uint32_t> mirror(n * kPageSize / 4, 9);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  for (uint32_t v : mirror) ASSERT_EQ(v, 0u);
  for (uint64_t i = 0; i < n; ++i) EXPECT_NE(device_page_at(a + i * kPageSize), nullptr);
  std::vector<uint8_t> perm(n);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kSnapshot, a, perm.data(), n), 0);
  // Writable: holes in a VM_WRITE VMA get writable device-private entries.
  for (uint8_t p : perm) EXPECT_EQ(p, kHmmDmirrorProtDevPrivateLocal | kHmmDmirrorProtWrite);
  for (uint32_t v : cpu_ints(a, n)) ASSERT_EQ(v, 0u);
}

TEST_P(DmirrorTest, MigrateErrors) {
  auto f = open(0);
  std::vector<uint32_t> mirror(16 * kPageSize / 4);
  const VirtAddr a = map(8);
  // Past the VMA: the chunk after it has no VMA -> EINVAL (the pages before it did migrate).
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), 16), -22);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kMigrateToSys, a, mirror.data(), 16), -22);
  // !VM_READ.
  const VirtAddr none = map(4, MmapProt::kNone);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, none, mirror.data(), 4), -22);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kMigrateToSys, none, mirror.data(), 4), -22);
}

TEST_P(DmirrorTest, FailAllocIsOneShotInBothDirections) {
  auto f = open(0);
  constexpr uint64_t n = 8;
  const VirtAddr a = map(n);
  fill(a, n);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kFlags, a, nullptr, kHmmDmirrorFlagFailAlloc), 0);
  EXPECT_EQ(f->dmirror().flags(), kHmmDmirrorFlagFailAlloc);
  // The first page's allocation fails: it stays in RAM, so the verification read misses it.
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), -2);
  EXPECT_EQ(f->dmirror().flags(), 0u);
  EXPECT_EQ(device_page_at(a), nullptr);
  for (uint64_t i = 1; i < n; ++i) EXPECT_NE(device_page_at(a + i * kPageSize), nullptr);
  EXPECT_EQ(drv_->device_stats(0).calloc, n - 1);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  expect_pattern(mirror);
  // Back: an order-0 allocation failure is VM_FAULT_OOM -> ENOMEM; nothing moved.
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kFlags, a, nullptr, kHmmDmirrorFlagFailAlloc), 0);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kMigrateToSys, a, mirror.data(), n), -12);
  for (uint64_t i = 0; i < n; ++i) EXPECT_NE(device_page_at(a + i * kPageSize), nullptr);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToSys, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  expect_pattern(cpu_ints(a, n));
}

TEST_P(DmirrorTest, TwoDevicesSeeEachOthersPagesAsRemote) {
  auto f0 = open(kPrivateDeviceOne);
  auto f1 = open(kPrivateDeviceTwo);
  constexpr uint64_t n = 4;
  const VirtAddr a = map(n);
  fill(a, n);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f0, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), 0);
  // Device 1 does not own them: hmm_range_fault does not report them -> PROT_NONE.
  std::vector<uint8_t> perm(n);
  ASSERT_EQ(cmd(*f1, DmirrorIoctl::kSnapshot, a, perm.data(), n), 0);
  for (uint8_t p : perm) EXPECT_EQ(p, kHmmDmirrorProtNone);
  // A device-1 READ faults them back to RAM (the other driver's migrate_to_ram).
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f1, DmirrorIoctl::kRead, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.faults, 1u);
  expect_pattern(mirror);
  EXPECT_EQ(drv_->device_stats(0).cfree, n);
  ASSERT_EQ(cmd(*f0, DmirrorIoctl::kSnapshot, a, perm.data(), n), 0);
  for (uint8_t p : perm) EXPECT_EQ(p, kHmmDmirrorProtWrite);
}

TEST_P(DmirrorTest, ReadAfterForkFindsOwnedDevicePagesWithoutFaultingThem) {
  auto f = open(0);
  constexpr uint64_t n = 8;
  const VirtAddr a = map(n);
  fill(a, n, 40);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), 0);
  // fork makes the device-private entries read-only in both mms; its PROTECTION_PAGE range
  // drops the device page table entries.
  auto child = MUST(proc_->fork(), "fork");
  EXPECT_EQ(f->dmirror().pt_snapshot().size(), 0u);
  page::Page* d = device_page_at(a);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->ref_count(), 2);
  EXPECT_EQ(d->mapcount(), 2);
  // READ: hmm_range_fault reports the owned pages (never faults them), read-only.
  std::fill(mirror.begin(), mirror.end(), 0);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRead, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.faults, 1u);
  expect_pattern(mirror, 40);
  EXPECT_EQ(device_page_at(a), d);
  EXPECT_EQ(f->dmirror().pt_snapshot().load(a.raw() >> kPageShift)->tag, DptTag::kRead);
  // WRITE: an owned read-only entry is answered without WRITE even though WRITE was
  // requested, and the driver refuses (the kernel's WARN + EFAULT).
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kWrite, a, mirror.data(), n), -14);
  std::vector<uint8_t> perm(n);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kSnapshot, a, perm.data(), n), 0);
  for (uint8_t p : perm) EXPECT_EQ(p, kHmmDmirrorProtDevPrivateLocal | kHmmDmirrorProtRead);
  // The child's CPU write takes its page back to RAM and COWs it; the parent keeps the data.
  ASSERT_TRUE(child->write_u32(a, 7).is_ok());
  EXPECT_EQ(MUST(child->read_u32(a), "child"), 7u);
  expect_pattern(cpu_ints(a, n), 40);
  child.reset();
}

// ---- snapshot ----

TEST_P(DmirrorTest, SnapshotEncodesEveryKindOfPage) {
  auto f = open(0);
  // [hole][zero][rw][ro] in one VMA, then a PROT_NONE VMA, then an unmapped page.
  const VirtAddr a = map(7);
  EXPECT_EQ(MUST(proc_->read_u32(a + kPageSize), "zero page"), 0u);
  ASSERT_TRUE(proc_->write_u32(a + 2 * kPageSize, 1).is_ok());
  ASSERT_TRUE(proc_->write_u32(a + 3 * kPageSize, 1).is_ok());
  ASSERT_TRUE(proc_->mprotect(a + 3 * kPageSize, kPageSize, MmapProt::kRead).is_ok());
  ASSERT_TRUE(proc_->mprotect(a + 4 * kPageSize, 2 * kPageSize, MmapProt::kNone).is_ok());
  ASSERT_TRUE(proc_->munmap(a + 6 * kPageSize, kPageSize).is_ok());
  std::vector<uint8_t> perm(7, 0xAA);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kSnapshot, a, perm.data(), 7, &c), 0);
  EXPECT_EQ(c.cpages, 7u);
  EXPECT_EQ(perm[0], kHmmDmirrorProtNone);
  EXPECT_EQ(perm[1], kHmmDmirrorProtZero | kHmmDmirrorProtRead);
  EXPECT_EQ(perm[2], kHmmDmirrorProtWrite);
  EXPECT_EQ(perm[3], kHmmDmirrorProtRead);
  EXPECT_EQ(perm[4], kHmmDmirrorProtError);
  EXPECT_EQ(perm[5], kHmmDmirrorProtError);
  EXPECT_EQ(perm[6], kHmmDmirrorProtError);
  // Snapshots never fault and never populate the device page table.
  EXPECT_EQ(f->dmirror().pt_snapshot().size(), 0u);
  EXPECT_EQ(pagemap(a) & mm::kPmPresent, 0u);
}

// ---- device exclusive ----

TEST_P(DmirrorTest, ExclusiveMapsAtomicAndCpuAccessRevokes) {
  auto f = open(0);
  constexpr uint64_t n = 4;
  const VirtAddr a = map(n);
  fill(a, n);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kExclusive, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  expect_pattern(mirror);
  DevicePageTable pt = f->dmirror().pt_snapshot();
  for (const auto& [vpn, e] : pt.entries()) EXPECT_EQ(e.tag, DptTag::kAtomic) << vpn;
  EXPECT_EQ(pt.size(), n);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kCheckExclusive, a, nullptr, n), -1);
  // The CPU reads page 0: the exclusive entry is restored and the device loses its mapping.
  EXPECT_EQ(MUST(proc_->read_u32(a), "read"), 0u);
  EXPECT_EQ(f->dmirror().pt_snapshot().load(a.raw() >> kPageShift), nullptr);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kCheckExclusive, a, nullptr, 1), 0);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kCheckExclusive, a, nullptr, n), -1);
  // A device WRITE over ATOMIC entries refaults them writable.
  for (size_t i = 0; i < mirror.size(); ++i) mirror[i] = static_cast<uint32_t>(i) + 11;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kWrite, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.faults, 1u);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kCheckExclusive, a, nullptr, n), 0);
  expect_pattern(cpu_ints(a, n), 11);
}

// ---- eviction and removal ----

TEST_P(DmirrorTest, CloseEvictsEveryPageOfTheDevice) {
  auto f = open(0);
  auto other = open(0);  // a second file on the same device, same process
  constexpr uint64_t n = 64;
  const VirtAddr a = map(n);
  fill(a, n, 17);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), 0);
  // Closing the other file evicts the pages f migrated: dmirror_fops_release evicts every chunk.
  other.reset();
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_EQ(device_page_at(a + i * kPageSize), nullptr) << i;
    ASSERT_NE(pagemap(a + i * kPageSize) & mm::kPmPresent, 0u) << i;
  }
  const DmirrorDeviceStats s = drv_->device_stats(0);
  EXPECT_EQ(s.cfree, n);
  EXPECT_EQ(s.nr_free_pages, kChunkPages);
  EXPECT_EQ(s.nr_chunks, 1u);  // chunks stay registered
  expect_pattern(cpu_ints(a, n), 17);
  // f's device page table lost the entries: eviction unmaps through the rmap, whose
  // invalidations f does not skip.
  EXPECT_EQ(f->dmirror().pt_snapshot().size(), 0u);
}

TEST_P(DmirrorTest, ReleaseWithPagesInUseMigratesThemBackAndUnregisters) {
  auto f = open(0);
  constexpr uint64_t n = 32;
  const VirtAddr a = map(n);
  fill(a, n, 99);
  auto child = MUST(proc_->fork(), "fork");  // a second mm maps them too, once migrated
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), 0);
  const size_t pagemaps = dk_->device_memory().nr_pagemaps();
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRelease, a, nullptr, 1), 0);
  EXPECT_EQ(dk_->device_memory().nr_pagemaps(), pagemaps - 1);
  DmirrorDeviceStats s = drv_->device_stats(0);
  EXPECT_EQ(s.nr_chunks, 0u);
  EXPECT_EQ(s.nr_free_pages, 0u);
  EXPECT_EQ(s.cfree, 0u);  // pages of a removed chunk do not go back to the lists
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(device_page_at(a + i * kPageSize), nullptr);
  expect_pattern(cpu_ints(a, n), 99);
  std::vector<uint32_t> cv(n * kPageSize / 4);
  ASSERT_TRUE(child->read(a, std::as_writable_bytes(std::span(cv))).is_ok());
  expect_pattern(cv, 99);
  // The next migration creates a new chunk.
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), 1), 0);
  s = drv_->device_stats(0);
  EXPECT_EQ(s.nr_chunks, 1u);
  EXPECT_EQ(s.nr_free_pages, kChunkPages - 1);
  EXPECT_EQ(dk_->device_memory().nr_pagemaps(), pagemaps);
  f.reset();
  child.reset();
}

// ---- the device file ----

TEST_P(DmirrorTest, MmapOfTheDeviceFileInsertsZeroedPages) {
  auto f = open(0);
  constexpr uint64_t n = 4;
  Result<VirtAddr> r = f->mmap(n * kPageSize, MmapProt::kRead | MmapProt::kWrite,
                               mm::MmapFlags::kShared);
  ASSERT_TRUE(r.is_ok()) << r.error().to_string();
  const VirtAddr a = *r;
  for (uint64_t i = 0; i < n; ++i) {
    EXPECT_NE(pagemap(a + i * kPageSize) & mm::kPmPresent, 0u) << i;
  }
  {
    ReadLocker l(proc_->mm().mmap_lock());
    const mm::Vma* vma = proc_->mm().vma_lookup(a);
    ASSERT_NE(vma, nullptr);
    EXPECT_TRUE(has(vma->flags, mm::VmFlags::kMixedMap));
  }
  for (uint32_t v : cpu_ints(a, n)) ASSERT_EQ(v, 0u);
  // The device reads them; it cannot migrate them (VM_MIXEDMAP is VM_SPECIAL).
  std::vector<uint32_t> mirror(n * kPageSize / 4, 1);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRead, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  for (uint32_t v : mirror) ASSERT_EQ(v, 0u);
  EXPECT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), -22);
}

// ---- coherent devices ----

TEST_P(DmirrorTest, CoherentDeviceMemoryIsMappedPresentAndReadableByTheCpu) {
  auto f = open(kCoherenceDeviceOne);
  auto g = open(kCoherenceDeviceTwo);
  constexpr uint64_t n = 8;
  const VirtAddr a = map(n);
  fill(a, n, 21);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  expect_pattern(mirror, 21);
  // Present PTEs on the coherent pages (minor 2 uses spm_addr_dev1).
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t pm = pagemap(a + i * kPageSize);
    ASSERT_NE(pm & mm::kPmPresent, 0u);
    const PhysAddr pa = Pfn(pm & mm::kPmPframeMask).to_phys();
    EXPECT_TRUE(spm_[1].contains(pa)) << i;
  }
  std::vector<uint8_t> perm(n);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kSnapshot, a, perm.data(), n), 0);
  for (uint8_t p : perm) EXPECT_EQ(p, kHmmDmirrorProtDevCoherentLocal | kHmmDmirrorProtWrite);
  ASSERT_EQ(cmd(*g, DmirrorIoctl::kSnapshot, a, perm.data(), n), 0);
  for (uint8_t p : perm) EXPECT_EQ(p, kHmmDmirrorProtDevCoherentRemote | kHmmDmirrorProtWrite);
  // The CPU reads and writes them in place: no migration.
  expect_pattern(cpu_ints(a, n), 21);
  ASSERT_TRUE(proc_->write_u32(a, 1234).is_ok());
  EXPECT_EQ(drv_->device_stats(kCoherenceDeviceOne).cfree, 0u);
  // Back to system memory with SELECT_DEVICE_COHERENT.
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToSys, a, mirror.data(), n, &c), 0);
  EXPECT_EQ(c.cpages, n);
  EXPECT_EQ(drv_->device_stats(kCoherenceDeviceOne).cfree, n);
  EXPECT_EQ(MUST(proc_->read_u32(a), "read"), 1234u);
  const std::vector<uint32_t> v = cpu_ints(a, n);
  for (size_t i = 1; i < v.size(); ++i) ASSERT_EQ(v[i], static_cast<uint32_t>(i) + 21);
}

TEST_P(DmirrorTest, CoherentReleaseEvictsAndRegistersAgainOnTheSameRange) {
  auto f = open(kCoherenceDeviceOne);
  constexpr uint64_t n = 4;
  const VirtAddr a = map(n);
  fill(a, n, 8);
  std::vector<uint32_t> mirror(n * kPageSize / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), 0);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kRelease, a, nullptr, 1), 0);
  EXPECT_EQ(drv_->device_stats(kCoherenceDeviceOne).nr_chunks, 0u);
  for (uint64_t i = 0; i < n; ++i) {
    const PhysAddr pa = Pfn(pagemap(a + i * kPageSize) & mm::kPmPframeMask).to_phys();
    EXPECT_FALSE(spm_[1].contains(pa));
  }
  expect_pattern(cpu_ints(a, n), 8);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), n), 0);
  EXPECT_EQ(drv_->device_stats(kCoherenceDeviceOne).nr_chunks, 1u);
  expect_pattern(mirror, 8);
}

// ---- device THP: whole-THP migration (MIGRATE_VMA_SELECT_COMPOUND) ----

class DmirrorThpTest : public DmirrorTest {
 protected:
  static constexpr uint64_t kNr = mm::kHpagePmdNr;
  static constexpr uint64_t kPmd = mm::kHpagePmdSize;

  // A 2 MiB-aligned MADV_HUGEPAGE range of its own, written with a pattern: one THP.
  VirtAddr thp(mm::Process& p, uint32_t seed) {
    const VirtAddr base = MUST(p.mmap_anon(2 * kPmd, MmapProt::kRead | MmapProt::kWrite), "mmap");
    const VirtAddr a = base.align_up(kPmd);
    EXPECT_TRUE(p.madvise(a, kPmd, mm::Madvise::kHugePage).is_ok());
    std::vector<uint32_t> v(kPmd / 4);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint32_t>(i) + seed;
    EXPECT_TRUE(p.write(a, std::as_bytes(std::span(v))).is_ok());
    EXPECT_TRUE(mm::pmd_trans_huge(dk_->kernel(), pmd_word(p, a)).has_value());
    return a;
  }
  uint64_t pmd_word(mm::Process& p, VirtAddr a) {
    const std::optional<mm::EntrySlot> s = p.mm().page_table().walk_pmd(a);
    return s ? s->load() : 0;
  }
  // The device folio a device-private PMD maps.
  page::Folio device_thp(mm::Process& p, VirtAddr a) {
    const uint64_t w = pmd_word(p, a);
    EXPECT_TRUE(mm::pmd_is_device_private_entry(dk_->kernel(), w));
    page::Page* head = mm::device_private_pmd_page(dk_->kernel(), mm::softleaf_from_pmd(dk_->kernel(), w));
    return page::page_folio(head);
  }
  // The system folio a present PMD leaf maps.
  page::Folio system_thp(mm::Process& p, VirtAddr a) {
    const std::optional<arch::DecodedEntry> d = mm::pmd_trans_huge(dk_->kernel(), pmd_word(p, a));
    EXPECT_TRUE(d.has_value());
    return page::page_folio(mm::vm_normal_page_pmd(dk_->kernel(), *d));
  }
  std::vector<uint8_t> snapshot(DmirrorFile& f, VirtAddr a) {
    std::vector<uint8_t> perm(kNr, 0xee);
    EXPECT_EQ(cmd(f, DmirrorIoctl::kSnapshot, a, perm.data(), kNr), 0);
    return perm;
  }
};

TEST_P(DmirrorThpTest, AThpMovesWholeToTheDeviceAndFaultsBackWhole) {
  auto f = open(0);
  const VirtAddr a = thp(*proc_, 5);
  const page::Folio src = system_thp(*proc_, a);
  std::vector<uint32_t> mirror(kPmd / 4);
  HmmDmirrorCmd c;
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), kNr, &c), 0);
  EXPECT_EQ(c.cpages, kNr);
  expect_pattern(mirror, 5);
  // One device-private PMD maps an order-9 device folio; the first large allocation added a
  // chunk carved into PMD-order folios.
  const page::Folio dev = device_thp(*proc_, a);
  EXPECT_EQ(dev.order().raw(), mm::kHpagePmdOrder);
  EXPECT_TRUE(devmem::folio_is_device_private(dev));
  EXPECT_EQ(dev.ref_count(), 1);
  EXPECT_EQ(dev.entire_mapcount(), 1);
  EXPECT_EQ(drv_->device_stats(0).calloc, kNr);
  EXPECT_EQ(drv_->device_pages_in_use(0), kNr);
  EXPECT_EQ(drv_->device_stats(0).nr_chunks, 2u);
  EXPECT_NE(src, dev);
  for (uint8_t b : snapshot(*f, a)) ASSERT_EQ(b, 0x26);  // DEV_PRIVATE_LOCAL|WRITE|PMD
  for (uint64_t i = 0; i < kNr; i += 101) {
    const uint64_t e = pagemap(a + i * kPageSize);
    ASSERT_TRUE(e & mm::kPmSwap) << i;
    ASSERT_FALSE(e & mm::kPmPresent) << i;
  }
  // One CPU read brings all 2 MiB back as a system THP (migrate_to_ram with the PMD-mapped
  // folio), and the device folio goes back to the driver's free folios.
  EXPECT_EQ(cpu_ints(a + 77 * kPageSize, 1)[0], 77 * kPageSize / 4 + 5);
  const page::Folio back = system_thp(*proc_, a);
  EXPECT_EQ(back.order().raw(), mm::kHpagePmdOrder);
  EXPECT_EQ(back.ref_count(), 1);
  EXPECT_EQ(back.entire_mapcount(), 1);
  EXPECT_TRUE(mm::page_anon_exclusive(back.head()));
  EXPECT_EQ(drv_->device_stats(0).cfree, kNr);
  EXPECT_EQ(drv_->device_pages_in_use(0), 0u);
  EXPECT_EQ(drv_->device_stats(0).nr_free_folios, kChunkPages / kNr);
  expect_pattern(cpu_ints(a, kNr), 5);
  for (uint8_t b : snapshot(*f, a)) ASSERT_EQ(b, 0x06);  // a system THP: WRITE|PMD
}

TEST_P(DmirrorThpTest, AThpSharedWithAForkChildMigratesInBothMms) {
  auto f = open(0);
  const VirtAddr a = thp(*proc_, 9);
  auto child = MUST(proc_->fork(), "fork");
  std::vector<uint32_t> mirror(kPmd / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), kNr), 0);
  expect_pattern(mirror, 9);
  // The collect made the parent's PMD a migration entry and try_to_migrate the child's; both
  // now map the one device THP, read-only (a COW mapping after fork).
  const page::Folio dev = device_thp(*proc_, a);
  EXPECT_EQ(device_thp(*child, a), dev);
  EXPECT_EQ(dev.entire_mapcount(), 2);
  EXPECT_EQ(dev.ref_count(), 2);
  for (mm::Process* p : {proc_.get(), child.get()}) {
    EXPECT_FALSE(arch::softleaf_is_device_private_write(
        mm::softleaf_from_pmd(dk_->kernel(), pmd_word(*p, a))));
  }
  // The child's read faults the folio back for both.
  std::vector<uint32_t> v(kPmd / 4);
  ASSERT_TRUE(child->read(a, std::as_writable_bytes(std::span(v))).is_ok());
  expect_pattern(v, 9);
  const page::Folio sys = system_thp(*child, a);
  EXPECT_EQ(system_thp(*proc_, a), sys);
  EXPECT_EQ(sys.entire_mapcount(), 2);
  EXPECT_FALSE(mm::page_anon_exclusive(sys.head()));
  // The parent's write copies (COW); the child keeps the old bytes.
  const uint32_t w = 0xabcdef01;
  ASSERT_TRUE(proc_->write(a, std::as_bytes(std::span(&w, 1))).is_ok());
  ASSERT_TRUE(child->read(a, std::as_writable_bytes(std::span(v))).is_ok());
  expect_pattern(v, 9);
  EXPECT_EQ(cpu_ints(a, 1)[0], w);
  child.reset();
}

TEST_P(DmirrorThpTest, ClosingTheFileEvictsADeviceThpIntoASystemThp) {
  auto f = open(0);
  auto other = open(0);
  const VirtAddr a = thp(*proc_, 21);
  std::vector<uint32_t> mirror(kPmd / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), kNr), 0);
  ASSERT_TRUE(mm::pmd_is_device_private_entry(dk_->kernel(), pmd_word(*proc_, a)));
  // dmirror_fops_release evicts every chunk: migrate_device_range marks the device folio
  // COMPOUND and the driver gives it a whole system folio, mapped back by one PMD.
  other.reset();
  const page::Folio sys = system_thp(*proc_, a);
  EXPECT_EQ(sys.order().raw(), mm::kHpagePmdOrder);
  EXPECT_EQ(sys.entire_mapcount(), 1);
  EXPECT_EQ(drv_->device_stats(0).cfree, kNr);
  expect_pattern(cpu_ints(a, kNr), 21);
}

TEST_P(DmirrorThpTest, APartOfADeviceThpFaultsBackPageByPage) {
  auto f = open(0);
  const VirtAddr a = thp(*proc_, 3);
  std::vector<uint32_t> mirror(kPmd / 4);
  ASSERT_EQ(cmd(*f, DmirrorIoctl::kMigrateToDev, a, mirror.data(), kNr), 0);
  // munmap of the first half splits the PMD into device-private PTEs; a fault then splits the
  // device folio and brings back only the page it hit.
  ASSERT_TRUE(proc_->munmap(a, kPmd / 2).is_ok());
  const VirtAddr page = a + (kNr / 2 + 10) * kPageSize;
  EXPECT_EQ(cpu_ints(page, 1)[0], (kNr / 2 + 10) * kPageSize / 4 + 3);
  EXPECT_NE(pagemap(page) & mm::kPmPresent, 0u);
  EXPECT_NE(device_page_at(page + kPageSize), nullptr);
  page::Page* dp = device_page_at(page + kPageSize);
  EXPECT_FALSE(page::page_folio(dp).is_large());
  // The first half's device pages went back to the driver when unmapped; the faulted one too.
  EXPECT_EQ(drv_->device_stats(0).cfree, kNr / 2 + 1);
  const std::vector<uint32_t> rest = cpu_ints(a + kPmd / 2, kNr / 2);
  for (size_t i = 0; i < rest.size(); ++i)
    ASSERT_EQ(rest[i], static_cast<uint32_t>(kPmd / 8 + i + 3)) << i;
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, DmirrorTest, ::testing::ValuesIn(devmem::kAllDesigns),
                         design_param_name);
INSTANTIATE_TEST_SUITE_P(AllDesigns, DmirrorThpTest, ::testing::ValuesIn(devmem::kAllDesigns),
                         design_param_name);

}  // namespace
}  // namespace dpmm::dmirror
