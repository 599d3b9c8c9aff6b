// The pagemap's reference count: the parts of struct percpu_ref and struct completion that
// dev_pagemap uses (include/linux/percpu-refcount.h, lib/percpu-refcount.c, mm/memremap.c).
//
// Life cycle:
//   1. init(): one initial reference, live.
//   2. References come and go: one per allocated device page (tryget_many in
//      zone_device_page_init, put_many in free_zone_device_folio) and one per lookup
//      (tryget_live in get_dev_pagemap, put in put_dev_pagemap).
//   3. kill() drops the initial reference and makes tryget_live fail from then on; tryget_many
//      still succeeds while the count is above zero (percpu_ref_tryget_many in atomic mode).
//   4. When the count reaches zero the release callback completes `done`;
//      wait_for_completion() returns once it has.
//   5. exit() (after the wait) makes the ref reusable by a later init().
// dpmm keeps one atomic count: the per-CPU fast path is an optimisation the model does not
// need, and its observable rules are the ones above.
//
// Concurrency: gets and puts are lock-free; the 1 -> 0 put takes the completion's mutex
// (rank kLeaf, never held while taking another lock) to wake the waiter.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/lock.h"
#include "base/thread_annotations.h"

namespace dpmm::devmem {

class PercpuRef {
 public:
  PercpuRef() = default;
  PercpuRef(const PercpuRef&) = delete;
  PercpuRef& operator=(const PercpuRef&) = delete;

  // percpu_ref_init + init_completion. REQUIRES: not in use (never initialised, or exited).
  void init() EXCLUDES(done_mutex_);
  // percpu_ref_tryget_live: fails once kill() has run or the count is zero.
  [[nodiscard]] bool tryget_live();
  // percpu_ref_tryget_many: fails only when the count is zero.
  [[nodiscard]] bool tryget_many(uint64_t n);
  // percpu_ref_put_many: the put that reaches zero completes `done`.
  void put_many(uint64_t n) EXCLUDES(done_mutex_);
  void put() { put_many(1); }
  // percpu_ref_kill. REQUIRES: live.
  void kill() EXCLUDES(done_mutex_);
  // wait_for_completion(&pgmap->done): sleeps until the count has reached zero.
  // REQUIRES: kill() has run (otherwise the initial reference keeps it above zero forever).
  void wait_for_completion() EXCLUDES(done_mutex_);
  // percpu_ref_exit. REQUIRES: completed.
  void exit() EXCLUDES(done_mutex_);

  int64_t count() const { return count_.load(std::memory_order_acquire); }
  bool is_dying() const { return dying_.load(std::memory_order_acquire); }
  bool is_initialised() const { return initialised_.load(std::memory_order_acquire); }

 private:
  std::atomic<int64_t> count_{0};
  std::atomic<bool> dying_{false};
  std::atomic<bool> initialised_{false};
  Mutex done_mutex_{LockRank::kLeaf};
  CondVar done_cv_;
  bool done_ GUARDED_BY(done_mutex_) = false;
};

}  // namespace dpmm::devmem
