// MMU notifier events, ranges, owners and flags in order, for munmap, mprotect, fork, COW
// and exit; registration rules.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/lock.h"
#include "mm/process.h"
#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

class Recorder : public MmuNotifier {
 public:
  void invalidate_range_start(const MmuNotifierRange& r) override { add("start", r); }
  void invalidate_range_end(const MmuNotifierRange& r) override { add("end", r); }
  void release(Mm& mm) override {
    MutexLocker guard(mu_);
    log_.push_back(fmt::format("release {}", static_cast<const void*>(&mm) == mm_ ? "ok" : "?"));
  }
  std::vector<std::string> take() {
    MutexLocker guard(mu_);
    return std::exchange(log_, {});
  }
  const void* mm_ = nullptr;

 private:
  void add(const char* what, const MmuNotifierRange& r) {
    // Subscribers may sleep and take their own mutex (kDeviceMutex).
    MutexLocker guard(mu_);
    EXPECT_TRUE(r.blockable());
    EXPECT_EQ(static_cast<const void*>(r.mm), mm_);
    log_.push_back(fmt::format("{} {} {:#x}-{:#x}", what, mmu_notify_event_name(r.event),
                               r.start.raw(), r.end.raw()));
  }
  Mutex mu_{LockRank::kDeviceMutex};
  std::vector<std::string> log_;
};

std::string ev(const char* what, const char* e, uint64_t s, uint64_t t) {
  return fmt::format("{} {} {:#x}-{:#x}", what, e, s, t);
}

TEST(MmuNotifierTest, EventsInOrderForEveryChange) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  Recorder rec;
  {
    auto p = Process::create(*k).value();
    rec.mm_ = &p->mm();
    ASSERT_TRUE(p->mm().mmu_notifier_register(rec).is_ok());
    EXPECT_EQ(p->mm().mmu_notifier_register(rec).error().code(), Errno::kEEXIST);
    const VirtAddr a = p->mmap_anon(4 * kPageSize, kRw).value();
    const uint64_t s = a.raw();
    ASSERT_TRUE(p->write_u64(a, 1).is_ok());  // a fresh page: no notification
    EXPECT_TRUE(rec.take().empty());

    ASSERT_TRUE(p->mprotect(a + kPageSize, kPageSize, MmapProt::kRead).is_ok());
    EXPECT_EQ(rec.take(),
              (std::vector<std::string>{
                  ev("start", "MMU_NOTIFY_PROTECTION_VMA", s + kPageSize, s + 2 * kPageSize),
                  ev("end", "MMU_NOTIFY_PROTECTION_VMA", s + kPageSize, s + 2 * kPageSize)}));

    ASSERT_TRUE(p->munmap(a + 3 * kPageSize, kPageSize).is_ok());
    EXPECT_EQ(rec.take(), (std::vector<std::string>{
                              ev("start", "MMU_NOTIFY_UNMAP", s + 3 * kPageSize, s + 4 * kPageSize),
                              ev("end", "MMU_NOTIFY_UNMAP", s + 3 * kPageSize, s + 4 * kPageSize)}));

    // fork: PROTECTION_PAGE over each COW VMA with an anon_vma (all three: mprotect split
    // them after the first fault, and split VMAs share the anon_vma).
    auto child = p->fork().value();
    std::vector<std::string> want;
    for (uint64_t i = 0; i < 3; ++i) {
      want.push_back(ev("start", "MMU_NOTIFY_PROTECTION_PAGE", s + i * kPageSize,
                        s + (i + 1) * kPageSize));
      want.push_back(ev("end", "MMU_NOTIFY_PROTECTION_PAGE", s + i * kPageSize,
                        s + (i + 1) * kPageSize));
    }
    EXPECT_EQ(rec.take(), want);
    // COW break in the parent: CLEAR over the page. The child has no subscriber.
    ASSERT_TRUE(child->write_u64(a, 3).is_ok());
    EXPECT_TRUE(rec.take().empty());
    ASSERT_TRUE(p->write_u64(a, 2).is_ok());  // the child copied: the parent reuses, silently
    EXPECT_TRUE(rec.take().empty());
    auto child2 = p->fork().value();
    rec.take();
    ASSERT_TRUE(p->write_u64(a + 8, 4).is_ok());
    EXPECT_EQ(rec.take(), (std::vector<std::string>{ev("start", "MMU_NOTIFY_CLEAR", s, s + kPageSize),
                                                    ev("end", "MMU_NOTIFY_CLEAR", s, s + kPageSize)}));
    EXPECT_EQ(p->read_u64(a).value(), 2u);
    EXPECT_EQ(child->read_u64(a).value(), 3u);
    EXPECT_EQ(child2->read_u64(a).value(), 2u);
    EXPECT_EQ(child2->read_u64(a + 8).value(), 0u);
    child.reset();
    child2.reset();
    EXPECT_TRUE(rec.take().empty());
    // exit: release first; a plain subscription is dropped then, so it hears no UNMAP.
  }
  EXPECT_EQ(rec.take(), (std::vector<std::string>{"release ok"}));
  EXPECT_EQ(k->nr_free_pages(), free0);
}

TEST(MmuNotifierTest, IntervalKindHearsExitUnmapAndUnregisterStopsCalls) {
  auto k = testing::make_test_kernel();
  Recorder tree;
  Recorder gone;
  {
    auto p = Process::create(*k).value();
    tree.mm_ = gone.mm_ = &p->mm();
    ASSERT_TRUE(p->mm().mmu_notifier_register(tree, MmuNotifierKind::kIntervalTree).is_ok());
    ASSERT_TRUE(p->mm().mmu_notifier_register(gone).is_ok());
    EXPECT_EQ(p->mm().nr_mmu_notifiers(), 2u);
    ASSERT_TRUE(p->mm().mmu_notifier_unregister(gone).is_ok());
    EXPECT_EQ(p->mm().mmu_notifier_unregister(gone).error().code(), Errno::kENOENT);
    const VirtAddr a = p->mmap_anon(kPageSize, kRw).value();
    ASSERT_TRUE(p->munmap(a, kPageSize).is_ok());
    EXPECT_EQ(tree.take().size(), 2u);
  }
  EXPECT_TRUE(gone.take().empty());
  EXPECT_EQ(tree.take(), (std::vector<std::string>{
                             "release ok", ev("start", "MMU_NOTIFY_UNMAP", 0, uint64_t{1} << 48),
                             ev("end", "MMU_NOTIFY_UNMAP", 0, uint64_t{1} << 48)}));
}

}  // namespace
}  // namespace dpmm::mm
