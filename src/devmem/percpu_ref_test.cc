#include "devmem/percpu_ref.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/thread.h"

namespace dpmm::devmem {
namespace {

TEST(PercpuRef, LifeCycle) {
  PercpuRef r;
  r.init();
  EXPECT_EQ(r.count(), 1);
  ASSERT_TRUE(r.tryget_live());
  ASSERT_TRUE(r.tryget_many(4));
  EXPECT_EQ(r.count(), 6);
  r.kill();
  EXPECT_TRUE(r.is_dying());
  EXPECT_FALSE(r.tryget_live());     // lookups fail once killed
  EXPECT_TRUE(r.tryget_many(1));     // allocation refs still succeed while above zero
  r.put_many(6);
  EXPECT_EQ(r.count(), 0);
  EXPECT_FALSE(r.tryget_many(1));
  r.wait_for_completion();           // already complete: returns at once
  r.exit();
  r.init();                          // reusable after exit
  EXPECT_EQ(r.count(), 1);
  r.kill();
  r.wait_for_completion();
  r.exit();
}

TEST(PercpuRef, WaitBlocksUntilLastPut) {
  PercpuRef r;
  r.init();
  ASSERT_TRUE(r.tryget_many(1));
  std::atomic<bool> put_done{false};
  r.kill();
  Thread t("putter", [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    put_done.store(true);
    r.put();
  });
  r.wait_for_completion();
  EXPECT_TRUE(put_done.load());
  EXPECT_EQ(r.count(), 0);
  r.exit();
}

}  // namespace
}  // namespace dpmm::devmem
