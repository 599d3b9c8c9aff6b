// do_swap_page dispatch: device-private (through the handler seam), device-exclusive,
// migration waits, hwpoison, markers.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "base/thread.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/fault.h"
#include "mm/process.h"
#include "mm/test_machine.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

// A stand-in for the device-memory layer: "device" pages are RAM pages; dpas offsets are
// page index + 0x1000 into a table the test fills.
class FakeDevice final : public DevicePrivateFaultHandler {
 public:
  explicit FakeDevice(Kernel& k) : k_(k) {}
  page::Page* softleaf_to_page(arch::Softleaf e) override {
    auto where = arch::softleaf_to_pfn_or_offset(e).value();
    if (where.is_pfn()) return k_.pfn_to_page(where.to_pfn().value()).value();
    return k_.pfn_to_page(Pfn(where.raw_index() - kOffsetBias + base_.raw())).value();
  }
  // A one-page migrate_to_ram: copy to a new RAM page and map it (what migrate_vma does).
  FaultResult migrate_to_ram(VmFault& vmf) override {
    calls++;
    EXPECT_TRUE(page::folio_test_locked(page::page_folio(vmf.page)));
    EXPECT_GE(page::page_folio(vmf.page).ref_count(), 2);  // the entry's and the fault's
    Mm& mm = *vmf.mm;
    page::Folio dst = k_.alloc_folio(Order(0)).value();
    const Pfn src_pfn = k_.page_to_pfn(vmf.page);
    const Pfn dst_pfn = k_.page_to_pfn(dst.head());
    std::memcpy(k_.page_bytes(dst_pfn).data(), k_.page_bytes(src_pfn).data(), kPageSize);
    const arch::Softleaf leaf = k_.codec().softleaf_from(arch::EntryLevel::kPte, vmf.orig_pte);
    arch::Prot p = vmf.vma->page_prot | arch::Prot::kAccessed;
    if (arch::softleaf_is_device_private_write(leaf)) p = p | arch::Prot::kWrite | arch::Prot::kDirty;
    SpinLocker guard(mm.page_table().lock());
    if (vmf.pte->load() != vmf.orig_pte) {
      page::folio_put(dst);
      return FaultResult::handled();
    }
    folio_add_new_anon_rmap(dst, *vmf.vma, vmf.address, RmapExclusive::kYes);
    vmf.pte->store(k_.codec().make_present(arch::EntryLevel::kPte, dst_pfn, p).value());
    page::Folio src = page::page_folio(vmf.page);
    folio_remove_rmap_pte(src, vmf.page);
    page::folio_put(src);  // the entry's reference; the caller still holds one
    return FaultResult::handled();
  }
  static constexpr uint64_t kOffsetBias = 0x1000;
  Pfn base_{0};
  int calls = 0;

 private:
  Kernel& k_;
};

class SwapFaultTest : public ::testing::TestWithParam<arch::SwapNumberingKind> {
 protected:
  void SetUp() override {
    kernel_ = testing::make_test_kernel(GetParam());
    free0_ = kernel_->nr_free_pages();
    proc_ = Process::create(*kernel_).value();
    a_ = proc_->mmap_anon(4 * kPageSize, kRw).value();
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(proc_->write_u64(a_ + i * kPageSize, 1000 + i).is_ok());
  }
  void TearDown() override {
    kernel_->set_device_private_handler(nullptr);
    proc_.reset();
    EXPECT_EQ(kernel_->nr_free_pages(), free0_);
  }
  EntrySlot slot(VirtAddr a) { return proc_->mm().page_table().walk_pte(a).value(); }
  arch::DecodedEntry decode(VirtAddr a) {
    return kernel_->codec().decode(arch::EntryLevel::kPte, slot(a).load());
  }
  void set_swap(VirtAddr a, arch::Softleaf leaf, arch::SwpBit bits = arch::SwpBit::kNone) {
    SpinLocker guard(proc_->mm().page_table().lock());
    slot(a).store(kernel_->codec().make_swap(arch::EntryLevel::kPte, leaf, bits).value());
  }
  arch::SoftleafFormat fmt() const { return kernel_->softleaf_format(); }

  std::unique_ptr<Kernel> kernel_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> proc_;
  VirtAddr a_;
};

TEST_P(SwapFaultTest, DevicePrivateWithoutHandlerIsSigbus) {
  const Pfn pfn = decode(a_).pfn;
  arch::PfnOrOffset where = GetParam() == arch::SwapNumberingKind::kLegacy
                                ? arch::PfnOrOffset::of_pfn(pfn)
                                : arch::PfnOrOffset::of_offset(DevPrivOffset(5));
  set_swap(a_, arch::make_writable_device_private_entry(fmt(), where).value());
  auto r = proc_->read_u64(a_);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kEFAULT);
  EXPECT_NE(r.error().message().find("SIGBUS"), std::string::npos);
  // Restore the page so teardown releases it normally.
  SpinLocker guard(proc_->mm().page_table().lock());
  slot(a_).store(kernel_->codec()
                     .make_present(arch::EntryLevel::kPte, pfn,
                                   arch::Prot::kUser | arch::Prot::kWrite | arch::Prot::kDirty)
                     .value());
}

TEST_P(SwapFaultTest, DevicePrivateFaultCallsMigrateToRamWithPageLocked) {
  FakeDevice dev(*kernel_);
  kernel_->set_device_private_handler(&dev);
  const Pfn pfn = decode(a_ + kPageSize).pfn;
  dev.base_ = pfn;
  arch::PfnOrOffset where =
      GetParam() == arch::SwapNumberingKind::kLegacy
          ? arch::PfnOrOffset::of_pfn(pfn)
          : arch::PfnOrOffset::of_offset(DevPrivOffset(FakeDevice::kOffsetBias));
  // The "device page" keeps the entry's reference and mapcount, as a migrated page does.
  set_swap(a_ + kPageSize, arch::make_readable_device_private_entry(fmt(), where).value());
  EXPECT_EQ(proc_->read_u64(a_ + kPageSize).value(), 1001u);
  EXPECT_EQ(dev.calls, 1);
  const arch::DecodedEntry d = decode(a_ + kPageSize);
  ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_NE(d.pfn, pfn);
  EXPECT_FALSE(arch::has(d.prot, arch::Prot::kWrite));  // it was a readable entry
  // The write then COW-reuses the new exclusive page.
  ASSERT_TRUE(proc_->write_u64(a_ + kPageSize, 5).is_ok());
  EXPECT_EQ(decode(a_ + kPageSize).pfn, d.pfn);
}

TEST_P(SwapFaultTest, DeviceExclusiveEntryIsRestored) {
  const arch::DecodedEntry before = decode(a_);
  page::Folio f = page::page_folio(kernel_->pfn_to_page(before.pfn).value());
  set_swap(a_, arch::make_device_exclusive_entry(fmt(), before.pfn).value());
  EXPECT_EQ(proc_->read_u64(a_).value(), 1000u);
  const arch::DecodedEntry d = decode(a_);
  ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_EQ(d.pfn, before.pfn);
  EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite));  // VM_WRITE and exclusive
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
}

TEST_P(SwapFaultTest, HwpoisonAndMarkers) {
  const Pfn pfn = decode(a_ + 2 * kPageSize).pfn;
  page::Folio f = page::page_folio(kernel_->pfn_to_page(pfn).value());
  set_swap(a_ + 2 * kPageSize, arch::make_hwpoison_entry(fmt(), pfn).value());
  auto r = proc_->read_u64(a_ + 2 * kPageSize);
  ASSERT_TRUE(r.is_error());
  EXPECT_NE(r.error().message().find("SIGBUS"), std::string::npos);
  // The poisoned page leaves the mapping: drop its mapcount and reference as memory-failure
  // would.
  folio_remove_rmap_pte(f, f.head());
  proc_->mm().add_rss(RssMember::kAnonPages, -1);
  page::folio_put(f);

  set_swap(a_ + 2 * kPageSize, arch::make_pte_marker_entry(fmt(), arch::PteMarker::kGuard).value());
  r = proc_->read_u64(a_ + 2 * kPageSize);
  ASSERT_TRUE(r.is_error());
  EXPECT_NE(r.error().message().find("SIGSEGV"), std::string::npos);
  set_swap(a_ + 2 * kPageSize,
           arch::make_pte_marker_entry(fmt(), arch::PteMarker::kPoisoned).value());
  EXPECT_NE(proc_->read_u64(a_ + 2 * kPageSize).error().message().find("SIGBUS"),
            std::string::npos);
  // A uffd-wp marker reads as none: a fresh zero page.
  set_swap(a_ + 2 * kPageSize, arch::make_pte_marker_entry(fmt(), arch::PteMarker::kUffdWp).value());
  EXPECT_EQ(proc_->read_u64(a_ + 2 * kPageSize).value(), 0u);
  EXPECT_EQ(decode(a_ + 2 * kPageSize).pfn, kernel_->zero_pfn());
}

TEST_P(SwapFaultTest, MigrationEntryWaitsForTheFolioLock) {
  const VirtAddr a = a_ + 3 * kPageSize;
  const uint64_t orig = slot(a).load();
  const Pfn pfn = decode(a).pfn;
  page::Folio f = page::page_folio(kernel_->pfn_to_page(pfn).value());
  page::folio_lock(f);
  set_swap(a, arch::make_writable_migration_entry(fmt(), pfn).value());
  std::atomic<bool> done{false};
  uint64_t got = 0;
  {
    Thread reader("reader", [&] {
      got = proc_->read_u64(a).value();
      done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(done.load());  // blocked in migration_entry_wait
    // "Migration" finishes: the original PTE comes back, then the lock goes.
    {
      SpinLocker guard(proc_->mm().page_table().lock());
      slot(a).store(orig);
    }
    page::folio_unlock(f);
  }
  EXPECT_TRUE(done.load());
  EXPECT_EQ(got, 1003u);
}

INSTANTIATE_TEST_SUITE_P(Designs, SwapFaultTest,
                         ::testing::Values(arch::SwapNumberingKind::kLegacy,
                                           arch::SwapNumberingKind::kDpas),
                         [](const auto& param_info) {
                           return std::string(arch::numbering_name(param_info.param));
                         });

}  // namespace
}  // namespace dpmm::mm
