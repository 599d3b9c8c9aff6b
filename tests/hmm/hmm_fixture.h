// The two fixtures of hmm-tests.c, `hmm` (one device) and `hmm2` (two devices), as gtest
// value-parameterised fixtures over design x variant. The suite names are the kselftest
// fixture names, so `hmm.hmm_device_private.anon_read` of the original reads
// `hmm.anon_read/legacy_private` (or dpas_private, dpas_zone_coherent, ...) here.
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "hmm_harness.h"

namespace dpmm::hmm_selftest {

using Ioctl = dmirror::DmirrorIoctl;

inline constexpr mm::MmapProt kProtNone = mm::MmapProt::kNone;
inline constexpr mm::MmapProt kProtRead = mm::MmapProt::kRead;
inline constexpr mm::MmapProt kProtWrite = mm::MmapProt::kWrite;
inline constexpr mm::MmapProt kProtRw = mm::MmapProt::kRead | mm::MmapProt::kWrite;
inline constexpr mm::MmapFlags kMapPrivateAnon = mm::MmapFlags::kPrivate | mm::MmapFlags::kAnonymous;
inline constexpr mm::MmapFlags kMapSharedAnon = mm::MmapFlags::kShared | mm::MmapFlags::kAnonymous;

// What both fixtures share: the skip table, the environment, page size and shift.
class HmmFixtureBase : public ::testing::TestWithParam<HmmParam> {
 protected:
  // The table of unavailable features (hmm_features.cc), then a fresh machine, driver and
  // process. REQUIRES: called first by SetUp.
  void set_up_env();
  // Closes what the test left open, then tears the machine down (HmmEnv's order).
  void tear_down_env() { env_.reset(); }

  ModelProcess& proc() { return env_->process(); }
  mm::Process& cpu() { return env_->process().process(); }
  Variant variant() const { return GetParam().variant; }

  // sysconf(_SC_PAGE_SIZE) and ffs(page_size) - 1.
  unsigned page_size_ = 0;
  unsigned page_shift_ = 0;
  std::unique_ptr<HmmEnv> env_;
};

// FIXTURE(hmm): one device, private (minor 0) or coherent (minor 2).
class HmmFixture : public HmmFixtureBase {
 protected:
  void SetUp() override;
  void TearDown() override;
  int device_number() const {
    return variant() == Variant::kPrivate ? kHmmPrivateDeviceOne : kHmmCoherenceDeviceOne;
  }

  int fd_ = -1;
};

// FIXTURE(hmm2): two devices of the variant's kind (minors 0 and 1, or 2 and 3).
class Hmm2Fixture : public HmmFixtureBase {
 protected:
  void SetUp() override;
  void TearDown() override;
  int device_number0() const {
    return variant() == Variant::kPrivate ? kHmmPrivateDeviceOne : kHmmCoherenceDeviceOne;
  }
  int device_number1() const {
    return variant() == Variant::kPrivate ? kHmmPrivateDeviceTwo : kHmmCoherenceDeviceTwo;
  }

  int fd0_ = -1;
  int fd1_ = -1;
};

// The suite names of the original.
using hmm = HmmFixture;    // NOLINT(readability-identifier-naming): kselftest's fixture name
using hmm2 = Hmm2Fixture;  // NOLINT(readability-identifier-naming)

}  // namespace dpmm::hmm_selftest

// `auto v = ints [first, first + count) of base, loaded by the model CPU`; a fault fails the
// test (the original would die of the signal).
#define HMM_LOAD(v, base, first, count) \
  HMM_ASSERT_OK_AND_ASSIGN(v, ::dpmm::hmm_selftest::cpu_load_ints(cpu(), (base), (first), (count)))

// for (i = first; i < first + count; ++i) ptr[i] = f(i), as one store of the whole range.
#define HMM_STORE(base, first, count, f) \
  HMM_ASSERT_OK(::dpmm::hmm_selftest::cpu_store_pattern(cpu(), (base), (first), (count), (f)))
