// make_device_exclusive: the entry, counts, the notifier, revocation by CPU access and fork.
#include "hmm/device_exclusive.h"

#include <gtest/gtest.h>

#include <vector>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "hmm/hmm_test_rig.h"
#include "hmm/mmu_interval_notifier.h"
#include "page/folio_lock.h"

namespace dpmm::hmm {
namespace {

constexpr mm::MmapProt kRw = mm::MmapProt::kRead | mm::MmapProt::kWrite;

class EventOps final : public MmuIntervalNotifierOps {
 public:
  bool invalidate(MmuIntervalNotifier& sub, const mm::MmuNotifierRange& range,
                  uint64_t cur_seq) override {
    MutexLocker g(lock);
    sub.set_seq(cur_seq);
    events.push_back({range.event, range.owner});
    return true;
  }
  std::vector<std::pair<mm::MmuNotifyEvent, const void*>> take() {
    MutexLocker g(lock);
    return std::exchange(events, {});
  }
  Mutex lock{LockRank::kDeviceMutex};
  std::vector<std::pair<mm::MmuNotifyEvent, const void*>> events GUARDED_BY(lock);
};

class DeviceExclusiveTest : public ::testing::TestWithParam<devmem::Design> {
 protected:
  void SetUp() override {
    rig_ = std::make_unique<testing::HmmRig>(GetParam());
    free0_ = rig_->kernel().nr_free_pages();
    proc_ = MUST(mm::Process::create(rig_->kernel()), "process");
    a_ = MUST(proc_->mmap_anon(2 * kPageSize, kRw), "mmap");
  }
  void TearDown() override {
    proc_.reset();
    rig_.reset();
  }
  arch::DecodedEntry decode(mm::Mm& mm, VirtAddr a) {
    return rig_->kernel().codec().decode(arch::EntryLevel::kPte, testing::pte_word(mm, a));
  }
  Result<DeviceExclusive> make(mm::Mm& mm, VirtAddr a, const void* owner) {
    ReadLocker g(mm.mmap_lock());
    return make_device_exclusive(mm, a, owner);
  }
  void release(DeviceExclusive x) {
    page::folio_unlock(x.folio);
    page::folio_put(x.folio);
  }

  std::unique_ptr<testing::HmmRig> rig_;
  std::unique_ptr<mm::Process> proc_;
  VirtAddr a_;
  uint64_t free0_ = 0;
};

TEST_P(DeviceExclusiveTest, InstallsTheEntryAndReturnsTheFolioLockedAndReferenced) {
  ASSERT_TRUE(proc_->write_u64(a_, 0x1234).is_ok());
  const Pfn pfn = testing::present_pfn(proc_->mm(), a_);
  EventOps ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(sub.insert(proc_->mm(), a_, 2 * kPageSize, ops).is_ok());
  const int owner = 0;
  DeviceExclusive x = MUST(make(proc_->mm(), a_ + 8, &owner), "exclusive");
  EXPECT_EQ(rig_->kernel().page_to_pfn(x.page), pfn);
  EXPECT_TRUE(page::folio_test_locked(x.folio));
  EXPECT_EQ(x.folio.ref_count(), 2);  // the entry's and ours
  EXPECT_EQ(x.folio.mapcount(), 1);   // the entry counts as a mapping
  EXPECT_TRUE(x.folio.test_flag(page::PageFlag::kDirty)) << "the PTE's dirty bit moved over";
  const arch::DecodedEntry d = decode(proc_->mm(), a_);
  ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kSwap);
  EXPECT_TRUE(arch::softleaf_is_device_exclusive(d.leaf));
  EXPECT_EQ(MUST(arch::softleaf_to_pfn(d.leaf), "pfn"), pfn);
  auto ev = ops.take();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].first, mm::MmuNotifyEvent::kExclusive);
  EXPECT_EQ(ev[0].second, &owner);
  release(x);
  EXPECT_EQ(x.folio.ref_count(), 1);
  sub.remove();
}

TEST_P(DeviceExclusiveTest, CpuReadAndWriteRevokeWithClearAndKeepBytes) {
  ASSERT_TRUE(proc_->write_u64(a_, 0xabcd).is_ok());
  ASSERT_TRUE(proc_->write_u64(a_ + kPageSize, 0xef01).is_ok());
  EventOps ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(sub.insert(proc_->mm(), a_, 2 * kPageSize, ops).is_ok());
  release(MUST(make(proc_->mm(), a_, nullptr), "exclusive"));
  release(MUST(make(proc_->mm(), a_ + kPageSize, nullptr), "exclusive"));
  ops.take();
  // Read revokes.
  EXPECT_EQ(MUST(proc_->read_u64(a_), "read"), 0xabcdu);
  auto ev = ops.take();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].first, mm::MmuNotifyEvent::kClear);
  EXPECT_EQ(ev[0].second, nullptr);
  arch::DecodedEntry d = decode(proc_->mm(), a_);
  ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite)) << "exclusive anon page in a VM_WRITE VMA";
  // Write revokes.
  ASSERT_TRUE(proc_->write_u64(a_ + kPageSize + 8, 0x77).is_ok());
  EXPECT_EQ(ops.take().size(), 1u);
  EXPECT_EQ(MUST(proc_->read_u64(a_ + kPageSize), "read"), 0xef01u);
  EXPECT_EQ(MUST(proc_->read_u64(a_ + kPageSize + 8), "read"), 0x77u);
  page::Folio f = page::page_folio(testing::present_page(proc_->mm(), a_));
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
  sub.remove();
}

TEST_P(DeviceExclusiveTest, BreaksCowOfAForkSharedPage) {
  ASSERT_TRUE(proc_->write_u64(a_, 42).is_ok());
  std::unique_ptr<mm::Process> child = MUST(proc_->fork(), "fork");
  const Pfn shared = testing::present_pfn(proc_->mm(), a_);
  DeviceExclusive x = MUST(make(proc_->mm(), a_, nullptr), "exclusive");
  EXPECT_NE(rig_->kernel().page_to_pfn(x.page), shared) << "GUP FOLL_WRITE copied the page";
  release(x);
  EXPECT_EQ(testing::present_pfn(child->mm(), a_), shared);
  ASSERT_TRUE(child->write_u64(a_, 43).is_ok());
  EXPECT_EQ(MUST(proc_->read_u64(a_), "read"), 42u);
  EXPECT_EQ(MUST(child->read_u64(a_), "read"), 43u);
}

TEST_P(DeviceExclusiveTest, ForkRestoresTheParentAndSharesCopyOnWrite) {
  ASSERT_TRUE(proc_->write_u64(a_, 0x99).is_ok());
  release(MUST(make(proc_->mm(), a_, nullptr), "exclusive"));
  std::unique_ptr<mm::Process> child = MUST(proc_->fork(), "fork");
  const arch::DecodedEntry pd = decode(proc_->mm(), a_);
  const arch::DecodedEntry cd = decode(child->mm(), a_);
  ASSERT_EQ(pd.kind, arch::DecodedEntry::Kind::kPresent);
  ASSERT_EQ(cd.kind, arch::DecodedEntry::Kind::kPresent);
  EXPECT_EQ(pd.pfn, cd.pfn);
  EXPECT_FALSE(arch::has(pd.prot, arch::Prot::kWrite));
  EXPECT_FALSE(arch::has(cd.prot, arch::Prot::kWrite));
  page::Folio f = page::page_folio(testing::present_page(proc_->mm(), a_));
  EXPECT_EQ(f.ref_count(), 2);
  EXPECT_EQ(f.mapcount(), 2);
  ASSERT_TRUE(proc_->write_u64(a_, 1).is_ok());
  EXPECT_EQ(MUST(child->read_u64(a_), "read"), 0x99u);
  EXPECT_EQ(MUST(proc_->read_u64(a_), "read"), 1u);
}

TEST_P(DeviceExclusiveTest, Errors) {
  const VirtAddr ro = MUST(proc_->mmap_anon(kPageSize, mm::MmapProt::kRead), "mmap");
  EXPECT_EQ(make(proc_->mm(), ro, nullptr).error().code(), Errno::kEFAULT);
  EXPECT_EQ(make(proc_->mm(), VirtAddr(0x10000), nullptr).error().code(), Errno::kEFAULT);
  ASSERT_TRUE(proc_->write_u64(a_, 5).is_ok());
  page::Folio f = page::page_folio(testing::present_page(proc_->mm(), a_));
  {
    ReadLocker g(proc_->mm().mmap_lock());  // mmap_lock before the folio lock
    page::folio_lock(f);
    EXPECT_EQ(make_device_exclusive(proc_->mm(), a_, nullptr).error().code(), Errno::kEBUSY);
    page::folio_unlock(f);
  }
  EXPECT_EQ(f.ref_count(), 1) << "the failed call dropped its reference";
  EXPECT_TRUE(decode(proc_->mm(), a_).kind == arch::DecodedEntry::Kind::kPresent);
}

TEST_P(DeviceExclusiveTest, UntouchedPageIsFaultedInFirst) {
  DeviceExclusive x = MUST(make(proc_->mm(), a_ + kPageSize, nullptr), "exclusive");
  EXPECT_NE(rig_->kernel().page_to_pfn(x.page), rig_->kernel().zero_pfn());
  release(x);
  EXPECT_EQ(MUST(proc_->read_u64(a_ + kPageSize), "read"), 0u);
  proc_.reset();
  EXPECT_EQ(rig_->kernel().nr_free_pages(), free0_) << "every page came back";
}

INSTANTIATE_TEST_SUITE_P(Designs, DeviceExclusiveTest, ::testing::ValuesIn(devmem::kAllDesigns),
                         testing::design_param_name);

}  // namespace
}  // namespace dpmm::hmm
