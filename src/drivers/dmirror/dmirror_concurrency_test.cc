// dmirror under real concurrency: CPU threads load and store through the page tables while
// other threads migrate the same pages to the device and back and read them through the
// device. Every byte is checked at the end, and along the way by each thread that owns it.
#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "base/thread.h"
#include "devmem/design.h"
#include "devmem/device_memory.h"
#include "drivers/dmirror/dmirror.h"
#include "migrate/device_kernel.h"
#include "mm/huge_memory.h"
#include "mm/process.h"
#include "phys/test_machine.h"

namespace dpmm::dmirror {
namespace {

using devmem::Design;

std::string design_param_name(const ::testing::TestParamInfo<Design>& p) {
  std::string n(devmem::design_name(p.param));
  for (char& c : n) c = c == '-' ? '_' : c;
  return n;
}

class DmirrorConcurrency : public ::testing::TestWithParam<Design> {};

enum class Thp : bool { kNo, kYes };

// The stress below over base pages, or over two THPs (MADV_HUGEPAGE, 2 MiB aligned), which
// migrate whole (a PMD migration entry, then a device-private PMD) and fault back whole.
struct Layout {
  uint64_t pages;    // the range
  uint64_t owned;    // [0, owned) belongs to the CPU writer
  uint64_t stride;   // the writer keeps a counter in every stride-th page of its part
};
constexpr Layout kBasePages{64, 32, 1};
constexpr Layout kTwoThps{2 * mm::kHpagePmdNr, mm::kHpagePmdNr, 16};

// Pages [0, owned) belong to a CPU writer that bumps a counter in some of them and checks it
// never goes backwards or loses a store; pages [owned, pages) hold a fixed pattern that a
// device reader (a second device) checks through READ, pulling pages off the first device
// when it finds them there. A migrator thread moves the whole range to the first device and
// back.
void stress_cpu_stores_against_migration(Design design, Thp thp) {
  const Layout l = thp == Thp::kYes ? kTwoThps : kBasePages;
  constexpr int kRounds = 60;
  const uint64_t kPages = l.pages;
  const uint64_t kOwned = l.owned;
  const uint64_t kCounters = kOwned / l.stride;
  phys::Machine m = phys::testing::small_machine("dmirror-concurrency", arch::ArchKind::kX86_64,
                                                 512, phys::testing::ReserveLow::kYes);
  auto dk = MUST(migrate::DeviceKernel::create(std::move(m), design), "device kernel");
  auto proc = MUST(mm::Process::create(dk->kernel()), "process");
  auto drv = MUST(DmirrorDriver::create(*dk), "driver");
  {
    auto migrator_file = MUST(drv->open(*proc, kPrivateDeviceOne), "open");
    // The reader uses the other device. Two files of ONE device mirroring one mm would not
    // work, in the kernel either: each skips the MMU_NOTIFY_MIGRATE ranges of its device, so
    // a migration by one leaves stale entries in the other (docs/dmirror.md).
    auto reader_file = MUST(drv->open(*proc, kPrivateDeviceTwo), "open");
    const uint64_t bytes = kPages * kPageSize;
    const VirtAddr base =
        MUST(proc->mmap_anon(bytes + mm::kHpagePmdSize, mm::MmapProt::kRead | mm::MmapProt::kWrite),
             "mmap");
    const VirtAddr a = thp == Thp::kYes ? base.align_up(mm::kHpagePmdSize) : base;
    if (thp == Thp::kYes) {
      ASSERT_TRUE(proc->madvise(a, bytes, mm::Madvise::kHugePage).is_ok());
    }
    std::vector<uint64_t> init(kPages * kPageSize / 8);
    for (size_t i = 0; i < init.size(); ++i) init[i] = i * 7 + 1;
    for (uint64_t c = 0; c < kCounters; ++c) init[c * l.stride * kPageSize / 8] = 0;
    ASSERT_TRUE(proc->write(a, std::as_bytes(std::span(init))).is_ok());
    if (thp == Thp::kYes) {
      for (uint64_t off = 0; off < bytes; off += mm::kHpagePmdSize) {
        const std::optional<mm::EntrySlot> pmd = proc->mm().page_table().walk_pmd(a + off);
        ASSERT_TRUE(pmd && mm::pmd_trans_huge(dk->kernel(), pmd->load())) << "a THP at " << off;
      }
    }

    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    std::atomic<int> cpu_failures{0};
    std::atomic<int> read_errors{0};
    std::atomic<int64_t> last_read_error{0};
    std::vector<uint64_t> counters(kCounters);

    Thread writer("cpu-writer", [&] {
      while (!stop.load(std::memory_order_relaxed)) {
        for (uint64_t c = 0; c < kCounters; ++c) {
          const VirtAddr va = a + c * l.stride * kPageSize;
          Result<uint64_t> v = proc->read_u64(va);
          if (v.is_error() || *v != counters[c]) cpu_failures.fetch_add(1);
          counters[c] += 1;
          if (proc->write_u64(va, counters[c]).is_error()) cpu_failures.fetch_add(1);
        }
      }
    });
    Thread reader("device-reader", [&] {
      std::vector<uint64_t> mirror((kPages - kOwned) * kPageSize / 8);
      while (!stop.load(std::memory_order_relaxed)) {
        HmmDmirrorCmd c;
        c.addr = (a + kOwned * kPageSize).raw();
        c.ptr = reinterpret_cast<uint64_t>(mirror.data());
        c.npages = kPages - kOwned;
        const int64_t r = reader_file->ioctl(DmirrorIoctl::kRead, c);
        if (r == -16) continue;  // EBUSY: the range kept changing for a second
        if (r != 0) {
          read_errors.fetch_add(1);
          last_read_error.store(r);
          continue;
        }
        for (size_t i = 0; i < mirror.size(); ++i) {
          if (mirror[i] != (kOwned * kPageSize / 8 + i) * 7 + 1) {
            failures.fetch_add(1);
            break;
          }
        }
      }
    });
    for (int round = 0; round < kRounds; ++round) {
      HmmDmirrorCmd c;
      c.addr = a.raw();
      c.npages = kPages;
      std::vector<uint64_t> mirror(kPages * kPageSize / 8);
      c.ptr = reinterpret_cast<uint64_t>(mirror.data());
      // A page the CPU pulls back between the migration and the verification read makes
      // MIGRATE_TO_DEV answer ENOENT; that is the kernel's behaviour too.
      const int64_t to_dev = migrator_file->ioctl(DmirrorIoctl::kMigrateToDev, c);
      EXPECT_TRUE(to_dev == 0 || to_dev == -2) << to_dev;
      EXPECT_EQ(migrator_file->ioctl(DmirrorIoctl::kMigrateToSys, c), 0);
    }
    stop.store(true);
    writer.join();
    reader.join();
    EXPECT_EQ(failures.load(), 0) << "device reads with wrong bytes";
    EXPECT_EQ(cpu_failures.load(), 0) << "CPU loads or stores that failed or lost a store";
    EXPECT_EQ(read_errors.load(), 0) << "device READ errors, last " << last_read_error.load();

    std::vector<uint64_t> final(kPages * kPageSize / 8);
    ASSERT_TRUE(proc->read(a, std::as_writable_bytes(std::span(final))).is_ok());
    for (size_t i = 0; i < final.size(); ++i) {
      const uint64_t page = i / (kPageSize / 8);
      const bool counter = page < kOwned && page % l.stride == 0 && i % (kPageSize / 8) == 0;
      const uint64_t want = counter ? counters[page / l.stride] : i * 7 + 1;
      ASSERT_EQ(final[i], want) << "word " << i;
    }
    const DmirrorDeviceStats s = drv->device_stats(kPrivateDeviceOne);
    EXPECT_EQ(s.calloc, s.cfree);  // every device page handed out came back
  }
  proc.reset();
  drv.reset();
  EXPECT_EQ(dk->device_memory().nr_pagemaps(), 0u);
}

TEST_P(DmirrorConcurrency, CpuStoresSurviveConcurrentMigration) {
  stress_cpu_stores_against_migration(GetParam(), Thp::kNo);
}

TEST_P(DmirrorConcurrency, CpuStoresSurviveConcurrentWholeThpMigration) {
  stress_cpu_stores_against_migration(GetParam(), Thp::kYes);
}

INSTANTIATE_TEST_SUITE_P(AllDesigns, DmirrorConcurrency, ::testing::ValuesIn(devmem::kAllDesigns),
                         design_param_name);

}  // namespace
}  // namespace dpmm::dmirror
