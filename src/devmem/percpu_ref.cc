#include "devmem/percpu_ref.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace dpmm::devmem {

void PercpuRef::init() {
  assert(!is_initialised() && "percpu_ref_init of a ref in use");
  {
    MutexLocker guard(done_mutex_);
    done_ = false;
  }
  dying_.store(false, std::memory_order_release);
  count_.store(1, std::memory_order_release);
  initialised_.store(true, std::memory_order_release);
}

bool PercpuRef::tryget_live() {
  if (is_dying()) return false;
  return tryget_many(1);
}

bool PercpuRef::tryget_many(uint64_t n) {
  int64_t cur = count_.load(std::memory_order_relaxed);
  while (cur > 0) {
    if (count_.compare_exchange_weak(cur, cur + static_cast<int64_t>(n),
                                     std::memory_order_acq_rel, std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void PercpuRef::put_many(uint64_t n) {
  const int64_t now = count_.fetch_sub(static_cast<int64_t>(n), std::memory_order_acq_rel) -
                      static_cast<int64_t>(n);
  if (now > 0) return;
  if (now < 0) {
    std::fprintf(stderr, "dpmm: pagemap percpu_ref underflow (%lld)\n",
                 static_cast<long long>(now));
    std::abort();
  }
  // dev_pagemap_percpu_release -> complete(&pgmap->done).
  MutexLocker guard(done_mutex_);
  done_ = true;
  done_cv_.notify_all();
}

void PercpuRef::kill() {
  assert(is_initialised() && !is_dying() && "percpu_ref_kill of a ref that is not live");
  dying_.store(true, std::memory_order_release);
  put_many(1);
}

void PercpuRef::wait_for_completion() {
  assert(is_dying() && "waiting on a pagemap ref that was never killed");
  MutexLocker guard(done_mutex_);
  while (!done_) done_cv_.wait(done_mutex_);
}

void PercpuRef::exit() {
  assert(count() == 0 && "percpu_ref_exit with references held");
  initialised_.store(false, std::memory_order_release);
  dying_.store(false, std::memory_order_release);
}

}  // namespace dpmm::devmem
