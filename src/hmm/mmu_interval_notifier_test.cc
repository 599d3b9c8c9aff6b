// Interval notifiers: insert/remove, which invalidations reach a subscription, the sequence
// protocol, exit.
#include "hmm/mmu_interval_notifier.h"

#include <gtest/gtest.h>

#include <vector>

#include "hmm/hmm_test_rig.h"

namespace dpmm::hmm {
namespace {

constexpr mm::MmapProt kRw = mm::MmapProt::kRead | mm::MmapProt::kWrite;

struct Seen {
  mm::MmuNotifyEvent event;
  uint64_t start;
  uint64_t end;
  const void* owner;
  uint64_t cur_seq;
};

class RecordingOps final : public MmuIntervalNotifierOps {
 public:
  bool invalidate(MmuIntervalNotifier& sub, const mm::MmuNotifierRange& range,
                  uint64_t cur_seq) override {
    MutexLocker g(lock);
    sub.set_seq(cur_seq);
    seen.push_back({range.event, range.start.raw(), range.end.raw(), range.owner, cur_seq});
    return true;
  }
  std::vector<Seen> take() {
    MutexLocker g(lock);
    return std::exchange(seen, {});
  }
  Mutex lock{LockRank::kDeviceMutex};
  std::vector<Seen> seen GUARDED_BY(lock);
};

class MmuIntervalNotifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rig_ = std::make_unique<testing::HmmRig>(devmem::Design::kLegacy);
    proc_ = MUST(mm::Process::create(rig_->kernel()), "process");
    a_ = MUST(proc_->mmap_anon(8 * kPageSize, kRw), "mmap");
  }
  void TearDown() override {
    proc_.reset();
    rig_.reset();
  }
  std::unique_ptr<testing::HmmRig> rig_;
  std::unique_ptr<mm::Process> proc_;
  VirtAddr a_;
};

TEST_F(MmuIntervalNotifierTest, InsertChecksTheRange) {
  RecordingOps ops;
  MmuIntervalNotifier sub;
  EXPECT_EQ(sub.insert(proc_->mm(), a_, 0, ops).error().code(), Errno::kEOVERFLOW);
  EXPECT_EQ(sub.insert(proc_->mm(), VirtAddr(~uint64_t{0} - 10), 100, ops).error().code(),
            Errno::kEOVERFLOW);
  ASSERT_TRUE(sub.insert(proc_->mm(), a_, 2 * kPageSize, ops).is_ok());
  EXPECT_EQ(sub.insert(proc_->mm(), a_, kPageSize, ops).error().code(), Errno::kEINVAL);
  EXPECT_EQ(sub.mm(), &proc_->mm());
  EXPECT_EQ(sub.start(), a_);
  EXPECT_EQ(sub.last(), a_ + 2 * kPageSize - 1);
  sub.remove();
  EXPECT_FALSE(sub.is_inserted());
}

TEST_F(MmuIntervalNotifierTest, OnlyOverlappingInvalidationsArriveWithOddSeq) {
  RecordingOps ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(sub.insert(proc_->mm(), a_ + 2 * kPageSize, 2 * kPageSize, ops).is_ok());
  const uint64_t seq = sub.read_begin();
  EXPECT_EQ(seq & 1, 1u) << "a subscription's seq is odd from insert on";
  // Outside: [a, a+2p) and [a+4p, a+5p).
  ASSERT_TRUE(proc_->mprotect(a_, 2 * kPageSize, mm::MmapProt::kRead).is_ok());
  ASSERT_TRUE(proc_->munmap(a_ + 4 * kPageSize, kPageSize).is_ok());
  EXPECT_TRUE(ops.take().empty());
  EXPECT_FALSE(sub.read_retry(seq));
  // Overlapping the last byte.
  ASSERT_TRUE(proc_->mprotect(a_ + 3 * kPageSize, kPageSize, mm::MmapProt::kRead).is_ok());
  std::vector<Seen> s = ops.take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].event, mm::MmuNotifyEvent::kProtectionVma);
  EXPECT_EQ(s[0].start, (a_ + 3 * kPageSize).raw());
  EXPECT_EQ(s[0].end, (a_ + 4 * kPageSize).raw());
  EXPECT_EQ(s[0].cur_seq & 1, 1u);
  EXPECT_TRUE(sub.read_retry(seq));
  EXPECT_TRUE(sub.check_retry(seq));
  const uint64_t seq2 = sub.read_begin();
  EXPECT_EQ(seq2, s[0].cur_seq);
  EXPECT_FALSE(sub.read_retry(seq2));
  ASSERT_TRUE(proc_->munmap(a_ + 2 * kPageSize, kPageSize).is_ok());
  s = ops.take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].event, mm::MmuNotifyEvent::kUnmap);
  EXPECT_GT(s[0].cur_seq, seq2) << "each invalidation gets a new odd seq";
  sub.remove();
  ASSERT_TRUE(proc_->munmap(a_, 8 * kPageSize).is_ok());
  EXPECT_TRUE(ops.take().empty()) << "no callback after remove";
}

TEST_F(MmuIntervalNotifierTest, WriteFaultCowBreakIsAClearEvent) {
  RecordingOps ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(proc_->read_u64(a_).is_ok());  // zero page
  ASSERT_TRUE(sub.insert(proc_->mm(), a_, kPageSize, ops).is_ok());
  ASSERT_TRUE(proc_->write_u64(a_, 1).is_ok());  // wp_page_copy
  std::vector<Seen> s = ops.take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].event, mm::MmuNotifyEvent::kClear);
  sub.remove();
}

TEST_F(MmuIntervalNotifierTest, ExitSendsReleaseThenUnmapAndRemoveWorksAfterwards) {
  RecordingOps ops;
  MmuIntervalNotifier sub;
  MmuIntervalNotifier sub2;
  ASSERT_TRUE(sub.insert(proc_->mm(), a_, kPageSize, ops).is_ok());
  ASSERT_TRUE(sub2.insert(proc_->mm(), a_ + 7 * kPageSize, kPageSize, ops).is_ok());
  EXPECT_EQ(proc_->mm().nr_mmu_notifiers(), 1u) << "one interval-tree subscriber per mm";
  proc_.reset();
  std::vector<Seen> s = ops.take();
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].event, mm::MmuNotifyEvent::kRelease);
  EXPECT_EQ(s[1].event, mm::MmuNotifyEvent::kRelease);
  EXPECT_EQ(s[0].end, ~uint64_t{0});
  EXPECT_EQ(s[2].event, mm::MmuNotifyEvent::kUnmap);
  EXPECT_EQ(s[3].event, mm::MmuNotifyEvent::kUnmap);
  EXPECT_EQ(sub.mm(), nullptr);
  sub.remove();
  sub2.remove();
}

}  // namespace
}  // namespace dpmm::hmm
