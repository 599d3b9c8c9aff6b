// Real threads against the interval-notifier sequence protocol: EBUSY and read_retry under
// concurrent mprotect/munmap, read_begin sleeping through an invalidation, inserts and removes
// deferred to its end, migration-entry waits, make_device_exclusive against CPU writers.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "base/thread.h"
#include "hmm/device_exclusive.h"
#include "hmm/hmm_range_fault.h"
#include "hmm/hmm_test_rig.h"
#include "hmm/mmu_interval_notifier.h"
#include "page/folio_lock.h"

namespace dpmm::hmm {
namespace {

constexpr mm::MmapProt kRw = mm::MmapProt::kRead | mm::MmapProt::kWrite;

void wait_until(const std::atomic<bool>& flag) {
  while (!flag.load(std::memory_order_acquire)) std::this_thread::yield();
}

// The dmirror invalidate callback: set_seq under the driver mutex. Optionally blocks inside
// the first callback until released, to hold an invalidation open.
class DriverOps final : public MmuIntervalNotifierOps {
 public:
  bool invalidate(MmuIntervalNotifier& sub, const mm::MmuNotifierRange& range,
                  uint64_t cur_seq) override {
    (void)range;
    if (block_next.exchange(false)) {
      entered.store(true, std::memory_order_release);
      wait_until(released);
    }
    MutexLocker g(lock);
    sub.set_seq(cur_seq);
    last_seq = cur_seq;
    ++calls;
    return true;
  }
  Mutex lock{LockRank::kDeviceMutex};
  uint64_t last_seq GUARDED_BY(lock) = 0;
  int calls GUARDED_BY(lock) = 0;
  std::atomic<bool> block_next{false};
  std::atomic<bool> entered{false};
  std::atomic<bool> released{false};
};

class HmmConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rig_ = std::make_unique<testing::HmmRig>(devmem::Design::kDpas);
    proc_ = MUST(mm::Process::create(rig_->kernel()), "process");
    a_ = MUST(proc_->mmap_anon(8 * kPageSize, kRw), "mmap");
  }
  void TearDown() override {
    proc_.reset();
    rig_.reset();
  }
  mm::Mm& mm() { return proc_->mm(); }
  std::unique_ptr<testing::HmmRig> rig_;
  std::unique_ptr<mm::Process> proc_;
  VirtAddr a_;
};

TEST_F(HmmConcurrencyTest, EbusyAndReadRetryUnderConcurrentMprotectAndMunmap) {
  DriverOps ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(sub.insert(mm(), a_, 8 * kPageSize, ops).is_ok());
  std::atomic<bool> stop{false};
  std::atomic<int> changes{0};
  Thread changer("changer", [&] {
    while (!stop.load(std::memory_order_acquire)) {
      changes.fetch_add(1, std::memory_order_relaxed);
      EXPECT_TRUE(proc_->mprotect(a_, 2 * kPageSize, mm::MmapProt::kRead).is_ok());
      EXPECT_TRUE(proc_->mprotect(a_, 2 * kPageSize, kRw).is_ok());
      EXPECT_TRUE(proc_->munmap(a_ + 7 * kPageSize, kPageSize).is_ok());
      EXPECT_TRUE(proc_->mmap(a_ + 7 * kPageSize, kPageSize, kRw,
                              mm::MmapFlags::kPrivate | mm::MmapFlags::kAnonymous |
                                  mm::MmapFlags::kFixed)
                      .is_ok());
    }
  });
  int ebusy = 0, retries = 0, ok = 0;
  const HmmPfnFormat f = hmm_pfn_format_of(mm());
  // Run until the changer has made enough changes concurrently with the readers.
  while (changes.load(std::memory_order_relaxed) < 300 || ok < 5) {
    // Pages 0..6 must be VALID; page 7 is only looked at (it comes and goes).
    std::vector<uint64_t> w(8, kHmmPfnReqFault);
    w[7] = 0;
    HmmRange r;
    r.notifier = &sub;
    r.start = a_;
    r.end = a_ + 8 * kPageSize;
    r.hmm_pfns = w;
    r.pfn_flags_mask = kHmmPfnReqFault;
    r.notifier_seq = sub.read_begin();
    std::this_thread::yield();  // widen the window an invalidation may hit
    Status s;
    {
      ReadLocker g(mm().mmap_lock());
      s = hmm_range_fault(mm(), r);
    }
    if (s.is_error()) {
      ASSERT_EQ(s.error().code(), Errno::kEBUSY) << s.error().to_string();
      ++ebusy;
      continue;
    }
    MutexLocker g(ops.lock);
    if (sub.read_retry(r.notifier_seq)) {
      ++retries;
      continue;
    }
    // No invalidation has passed its start since read_begin, and none can while we hold the
    // lock: the answers match the page tables now.
    for (int i = 0; i < 7; ++i) {
      const VirtAddr p = a_ + i * kPageSize;
      const arch::DecodedEntry d = rig_->kernel().codec().decode(
          arch::EntryLevel::kPte, testing::pte_word(mm(), p));
      ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent) << i;
      EXPECT_TRUE((w[i] & kHmmPfnValid) != 0) << i;
      EXPECT_EQ(f.index(w[i]), arch::PfnOrOffset::of_pfn(d.pfn)) << i;
      EXPECT_EQ((w[i] & kHmmPfnWrite) != 0, arch::has(d.prot, arch::Prot::kWrite)) << i;
    }
    ++ok;
  }
  stop.store(true, std::memory_order_release);
  changer.join();
  sub.remove();
  std::printf("ok %d, EBUSY %d, read_retry %d, changes %d\n", ok, ebusy, retries,
              changes.load());
}

TEST_F(HmmConcurrencyTest, ReadBeginSleepsUntilTheInvalidationEnds) {
  DriverOps ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(sub.insert(mm(), a_, 8 * kPageSize, ops).is_ok());
  const uint64_t seq0 = sub.read_begin();
  ops.block_next.store(true);
  Thread unmapper("unmapper", [&] { EXPECT_TRUE(proc_->munmap(a_, kPageSize).is_ok()); });
  wait_until(ops.entered);
  // The callback has not run set_seq yet: read_begin returns at once with the old seq, and
  // read_retry will catch the collision later.
  EXPECT_EQ(sub.read_begin(), seq0);
  ops.released.store(true, std::memory_order_release);
  unmapper.join();
  EXPECT_TRUE(sub.check_retry(seq0));

  // Hold the next invalidation open after set_seq: read_begin must sleep until its end.
  struct AfterSetSeq final : MmuIntervalNotifierOps {
    bool invalidate(MmuIntervalNotifier& s, const mm::MmuNotifierRange&, uint64_t cur) override {
      s.set_seq(cur);
      entered.store(true, std::memory_order_release);
      wait_until(released);
      return true;
    }
    std::atomic<bool> entered{false};
    std::atomic<bool> released{false};
  } hold;
  MmuIntervalNotifier sub2;
  ASSERT_TRUE(sub2.insert(mm(), a_ + kPageSize, kPageSize, hold).is_ok());
  Thread unmapper2("unmapper2",
                   [&] { EXPECT_TRUE(proc_->munmap(a_ + kPageSize, kPageSize).is_ok()); });
  wait_until(hold.entered);
  std::atomic<bool> returned{false};
  uint64_t got = 0;
  Thread reader("reader", [&] {
    got = sub2.read_begin();
    returned.store(true, std::memory_order_release);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(returned.load(std::memory_order_acquire)) << "read_begin returned mid-invalidation";
  hold.released.store(true, std::memory_order_release);
  reader.join();
  unmapper2.join();
  EXPECT_TRUE(returned.load());
  EXPECT_EQ(got & 1, 1u);
  EXPECT_FALSE(sub2.read_retry(got));
  sub2.remove();
  sub.remove();
}

TEST_F(HmmConcurrencyTest, InsertAndRemoveAreDeferredToTheEnd) {
  DriverOps ops;
  MmuIntervalNotifier sub;
  ASSERT_TRUE(sub.insert(mm(), a_, 2 * kPageSize, ops).is_ok());
  ops.block_next.store(true);
  Thread unmapper("unmapper", [&] { EXPECT_TRUE(proc_->munmap(a_, kPageSize).is_ok()); });
  wait_until(ops.entered);
  // Inserted while the invalidation runs: deferred, and read_begin waits for the end.
  DriverOps ops2;
  MmuIntervalNotifier late;
  ASSERT_TRUE(late.insert(mm(), a_ + 4 * kPageSize, kPageSize, ops2).is_ok());
  std::atomic<bool> read{false}, removed{false};
  Thread reader("reader", [&] {
    (void)late.read_begin();
    read.store(true, std::memory_order_release);
  });
  Thread remover("remover", [&] {
    sub.remove();
    removed.store(true, std::memory_order_release);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(read.load());
  EXPECT_FALSE(removed.load()) << "remove returned while its invalidation still ran";
  ops.released.store(true, std::memory_order_release);
  unmapper.join();
  reader.join();
  remover.join();
  EXPECT_TRUE(read.load());
  EXPECT_TRUE(removed.load());
  // The deferred insert reached the tree: it hears the next overlapping invalidation; the
  // removed one does not.
  ASSERT_TRUE(proc_->munmap(a_ + kPageSize, 4 * kPageSize).is_ok());
  {
    MutexLocker g(ops2.lock);
    EXPECT_EQ(ops2.calls, 1);
  }
  {
    MutexLocker g(ops.lock);
    EXPECT_EQ(ops.calls, 1);
  }
  late.remove();
}

TEST_F(HmmConcurrencyTest, FaultOnAMigrationEntryWaitsForTheMigration) {
  ASSERT_TRUE(proc_->write_u64(a_, 0x600d).is_ok());
  const uint64_t word = testing::pte_word(mm(), a_);
  const Pfn pfn = testing::present_pfn(mm(), a_);
  page::Folio folio = page::page_folio(testing::present_page(mm(), a_));
  mm::EntrySlot slot = mm().page_table().walk_pte(a_).value();
  // A migration in progress on another thread: folio locked, PTE a migration entry.
  std::atomic<bool> installed{false}, restored{false};
  Thread migration("migration", [&] {
    page::folio_lock(folio);
    {
      SpinLocker g(mm().page_table().lock());
      const arch::Softleaf mig = MUST(
          arch::make_writable_migration_entry(rig_->kernel().softleaf_format(), pfn), "entry");
      slot.store(MUST(rig_->kernel().codec().make_swap(arch::EntryLevel::kPte, mig,
                                                        arch::SwpBit::kNone),
                      "encodes"));
    }
    installed.store(true, std::memory_order_release);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    {
      SpinLocker g(mm().page_table().lock());
      slot.store(word);
    }
    restored.store(true, std::memory_order_release);
    page::folio_unlock(folio);
  });
  wait_until(installed);
  std::vector<uint64_t> w(1, 0);
  HmmRange r;
  r.start = a_;
  r.end = a_ + kPageSize;
  r.hmm_pfns = w;
  r.default_flags = kHmmPfnReqFault;
  {
    ReadLocker g(mm().mmap_lock());
    ASSERT_TRUE(hmm_range_fault(mm(), r).is_ok());
  }
  EXPECT_TRUE(restored.load());
  EXPECT_EQ(w[0], pfn.raw() | kHmmPfnValid | kHmmPfnWrite);
  migration.join();
}

TEST_F(HmmConcurrencyTest, DeviceExclusiveAgainstCpuWriters) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> last{0};
  Thread writer("writer", [&] {
    for (uint64_t v = 1; !stop.load(std::memory_order_acquire); ++v) {
      ASSERT_TRUE(proc_->write_u64(a_, v).is_ok());
      last.store(v, std::memory_order_release);
    }
  });
  int made = 0;
  for (int i = 0; i < 200; ++i) {
    ReadLocker g(mm().mmap_lock());
    Result<DeviceExclusive> x = make_device_exclusive(mm(), a_, nullptr);
    if (x.is_error()) {
      ASSERT_EQ(x.error().code(), Errno::kEBUSY);
      continue;
    }
    ++made;
    page::folio_unlock(x->folio);
    page::folio_put(x->folio);
  }
  stop.store(true, std::memory_order_release);
  writer.join();
  EXPECT_GT(made, 0);
  EXPECT_EQ(MUST(proc_->read_u64(a_), "read"), last.load()) << "no write was lost";
  page::Folio f = page::page_folio(testing::present_page(mm(), a_));
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(f.mapcount(), 1);
}

}  // namespace
}  // namespace dpmm::hmm
