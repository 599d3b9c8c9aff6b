#include "hmm_fixture.h"

#include <strings.h>

#include <string>
#include <string_view>

namespace dpmm::hmm_selftest {
namespace {

// The test's name without the "/<design>_<variant>" suffix.
std::string_view current_test_name() {
  std::string_view n = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  return n.substr(0, n.find('/'));
}

}  // namespace

void HmmFixtureBase::set_up_env() {
  const std::string reason = unavailable_reason(current_test_name(), GetParam().variant);
  if (!reason.empty()) GTEST_SKIP() << reason;
  Result<std::unique_ptr<HmmEnv>> env = HmmEnv::create(GetParam().design);
  ASSERT_TRUE(env.is_ok()) << "the test machine and driver: " << env.error().to_string();
  env_ = std::move(env).value();
  page_size_ = static_cast<unsigned>(kPageSize);
  page_shift_ = static_cast<unsigned>(ffs(static_cast<int>(page_size_)) - 1);
}

// FIXTURE_SETUP(hmm)
void HmmFixture::SetUp() {
  set_up_env();
  if (IsSkipped() || HasFatalFailure()) return;
  fd_ = hmm_open(proc(), device_number());
  if (fd_ < 0 && hmm_is_coherent_type(device_number())) {
    GTEST_SKIP() << "DEVICE_COHERENT not available";
  }
  ASSERT_GE(fd_, 0);
}

// FIXTURE_TEARDOWN(hmm)
void HmmFixture::TearDown() {
  if (env_ && fd_ >= 0) {
    const int ret = proc().close(fd_);
    ASSERT_EQ(ret, 0);
    fd_ = -1;
  }
  tear_down_env();
}

// FIXTURE_SETUP(hmm2)
void Hmm2Fixture::SetUp() {
  set_up_env();
  if (IsSkipped() || HasFatalFailure()) return;
  fd0_ = hmm_open(proc(), device_number0());
  if (fd0_ < 0 && hmm_is_coherent_type(device_number0())) {
    GTEST_SKIP() << "DEVICE_COHERENT not available";
  }
  ASSERT_GE(fd0_, 0);
  fd1_ = hmm_open(proc(), device_number1());
  ASSERT_GE(fd1_, 0);
}

// FIXTURE_TEARDOWN(hmm2)
void Hmm2Fixture::TearDown() {
  if (env_ && fd0_ >= 0) {
    const int ret = proc().close(fd0_);
    ASSERT_EQ(ret, 0);
    fd0_ = -1;
  }
  if (env_ && fd1_ >= 0) {
    const int ret = proc().close(fd1_);
    ASSERT_EQ(ret, 0);
    fd1_ = -1;
  }
  tear_down_env();
}

INSTANTIATE_TEST_SUITE_P(, hmm, ::testing::ValuesIn(all_params()), param_name);
INSTANTIATE_TEST_SUITE_P(, hmm2, ::testing::ValuesIn(all_params()), param_name);

}  // namespace dpmm::hmm_selftest
