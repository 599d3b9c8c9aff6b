// hmm-tests.c, part 2: migration to and from device memory, snapshots, device-exclusive
// access, GUP and COW of device pages. Same order, steps and assertions as the original
// (docs/hmm-selftests.md).

#include <cstdint>
#include <thread>
#include <vector>

#include "hmm_fixture.h"

namespace dpmm::hmm_selftest {
namespace {

constexpr int neg(Errno e) { return -static_cast<int>(e); }

// migrate: private anonymous memory to the device.
TEST_P(hmm, migrate) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  const int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);

  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// migrate_file_private: the anonymous COW pages of a private file mapping migrate.
TEST_P(hmm, migrate_file_private) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  const int fd = hmm_create_file(proc(), size);
  ASSERT_GE(fd, 0);

  auto buffer = hmm_buffer_alloc(size, size);
  buffer->fd = fd;
  buffer->ptr = hmm_mmap_fd(proc(), size, kProtRw, mm::MmapFlags::kPrivate, buffer->fd);
  ASSERT_NE(buffer->ptr.raw(), 0u);

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  const int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);

  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// migrate_fault: CPU reads fault half the buffer back; a second migration moves it again.
TEST_P(hmm, migrate_fault) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  // The CPU faults the first half back.
  HMM_LOAD(v, buffer->ptr, 0, size / (2 * sizeof(int32_t)));
  for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// migrate_release: RELEASE evicts every device page; the CPU reads the data back.
TEST_P(hmm, migrate_release) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kRelease, *buffer, npages);
  ASSERT_EQ(ret, 0);

  HMM_LOAD(v, buffer->ptr, 0, size / (2 * sizeof(int32_t)));
  for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// migrate_shared: holes of shared anonymous memory (shmem) are not migrated: ENOENT.
TEST_P(hmm, migrate_shared) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapSharedAnon));
  buffer->ptr = ptr;

  const int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, neg(Errno::kENOENT));

  hmm_buffer_free(proc(), std::move(buffer));
}

// migrate_mixed: migration over PROT_NONE, a hole, the zero page, read-only and writable
// pages, then a migration by the other device of a page already on the first.
TEST_P(hmm2, migrate_mixed) {
  const uint64_t npages = 6;
  const uint64_t size = npages << page_shift_;
  const uint64_t pg = page_size_;

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtNone, kMapPrivateAnon));
  buffer->ptr = ptr;
  const VirtAddr p = buffer->ptr;
  auto at = [&](uint64_t page) { return VirtAddr(p.raw() + page * pg); };

  // A vma without VM_READ.
  int ret = hmm_migrate_sys_to_dev(proc(), fd1_, *buffer, npages);
  ASSERT_EQ(ret, neg(Errno::kEINVAL));

  // A hole at page 1.
  ret = cpu().munmap(at(1), pg).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  ret = hmm_migrate_sys_to_dev(proc(), fd1_, *buffer, 3);
  ASSERT_EQ(ret, neg(Errno::kEINVAL));

  // Page 2: read-only, the zero page.
  ret = cpu().mprotect(at(2), pg, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);
  HMM_ASSERT_OK_AND_ASSIGN(z, cpu().read_u32(at(2)));
  const int32_t val = static_cast<int32_t>(z) + 3;
  ASSERT_EQ(val, 3);

  // Page 3: read-only data.
  ret = cpu().mprotect(at(3), pg, kProtRw).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);
  HMM_ASSERT_OK(cpu().write_u32(at(3), static_cast<uint32_t>(val)));
  ret = cpu().mprotect(at(3), pg, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  // Pages 4-5: writable data.
  ret = cpu().mprotect(at(4), 2 * pg, kProtRw).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);
  HMM_ASSERT_OK(cpu().write_u32(at(4), static_cast<uint32_t>(val)));
  HMM_ASSERT_OK(cpu().write_u32(at(5), static_cast<uint32_t>(val)));

  // Pages 2-5 to device 1.
  buffer->ptr = at(2);
  ret = hmm_migrate_sys_to_dev(proc(), fd1_, *buffer, 4);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, 4u);

  // Page 5 is on device 1; device 0 selects system memory only.
  buffer->ptr = at(5);
  ret = hmm_migrate_sys_to_dev(proc(), fd0_, *buffer, 1);
  ASSERT_EQ(ret, neg(Errno::kENOENT));

  buffer->ptr = p;
  hmm_buffer_free(proc(), std::move(buffer));
}

// migrate_multiple: ten rounds of migration (and, for coherent memory, explicit migration
// back).
TEST_P(hmm, migrate_multiple) {
  for (int c = 0; c < kNTimes; ++c) {
    const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
    ASSERT_NE(npages, 0u);
    const uint64_t size = npages << page_shift_;
    const uint64_t nints = size / sizeof(int32_t);

    auto buffer = hmm_buffer_alloc(size, size);
    HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
    buffer->ptr = ptr;

    HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

    int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
    ASSERT_EQ(ret, 0);
    ASSERT_EQ(buffer->cpages, npages);
    for (uint64_t i = 0; i < nints; ++i) {
      ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));
    }

    // Coherent memory is CPU-accessible: migrate it back explicitly.
    if (hmm_is_coherent_type(device_number())) {
      ret = hmm_migrate_dev_to_sys(proc(), fd_, *buffer, npages);
      ASSERT_EQ(ret, 0);
      ASSERT_EQ(buffer->cpages, npages);
    }

    HMM_LOAD(v, buffer->ptr, 0, nints);
    for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

    hmm_buffer_free(proc(), std::move(buffer));
  }
}

// snapshot: the device's view of seven pages in seven states.
TEST_P(hmm2, snapshot) {
  const uint64_t npages = 7;
  const uint64_t size = npages << page_shift_;
  const uint64_t pg = page_size_;

  auto buffer = hmm_buffer_alloc(size, npages);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtNone, kMapPrivateAnon));
  buffer->ptr = ptr;
  const VirtAddr p = buffer->ptr;
  auto at = [&](uint64_t page) { return VirtAddr(p.raw() + page * pg); };

  // Page 1: a hole.
  int ret = cpu().munmap(at(1), pg).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  // Page 2: read-only zero page.
  ret = cpu().mprotect(at(2), pg, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);
  HMM_ASSERT_OK_AND_ASSIGN(z, cpu().read_u32(at(2)));
  const int32_t val = static_cast<int32_t>(z) + 3;
  ASSERT_EQ(val, 3);

  // Page 3: read-only data.
  ret = cpu().mprotect(at(3), pg, kProtRw).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);
  HMM_ASSERT_OK(cpu().write_u32(at(3), static_cast<uint32_t>(val)));
  ret = cpu().mprotect(at(3), pg, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  // Pages 4-6: writable; page 4 written, pages 5 and 6 untouched.
  ret = cpu().mprotect(at(4), 3 * pg, kProtRw).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);
  HMM_ASSERT_OK(cpu().write_u32(at(4), static_cast<uint32_t>(val)));

  // Page 5 to device 0, page 6 to device 1.
  buffer->ptr = at(5);
  ret = hmm_migrate_sys_to_dev(proc(), fd0_, *buffer, 1);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, 1u);

  buffer->ptr = at(6);
  ret = hmm_migrate_sys_to_dev(proc(), fd1_, *buffer, 1);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, 1u);

  // Device 0's snapshot of all seven.
  buffer->ptr = p;
  ret = hmm_dmirror_cmd(proc(), fd0_, Ioctl::kSnapshot, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);

  const uint8_t* m = buffer->mirror_bytes();
  ASSERT_EQ(m[0], dmirror::kHmmDmirrorProtError);
  ASSERT_EQ(m[1], dmirror::kHmmDmirrorProtError);
  ASSERT_EQ(m[2], dmirror::kHmmDmirrorProtZero | dmirror::kHmmDmirrorProtRead);
  ASSERT_EQ(m[3], dmirror::kHmmDmirrorProtRead);
  ASSERT_EQ(m[4], dmirror::kHmmDmirrorProtWrite);
  if (!hmm_is_coherent_type(device_number0())) {
    ASSERT_EQ(m[5], dmirror::kHmmDmirrorProtDevPrivateLocal | dmirror::kHmmDmirrorProtWrite);
    ASSERT_EQ(m[6], dmirror::kHmmDmirrorProtNone);
  } else {
    ASSERT_EQ(m[5], dmirror::kHmmDmirrorProtDevCoherentLocal | dmirror::kHmmDmirrorProtWrite);
    ASSERT_EQ(m[6], dmirror::kHmmDmirrorProtDevCoherentRemote | dmirror::kHmmDmirrorProtWrite);
  }

  hmm_buffer_free(proc(), std::move(buffer));
}

// compound: a snapshot of a hugetlbfs page reports PMD (or PUD) mapped pages.
TEST_P(hmm, compound) {
  if (!hugetlb_free_default_pages(proc())) GTEST_SKIP() << "Not enough huge pages";

  const uint64_t size = align_up(kTwoMeg, default_huge_page_size());
  const uint64_t npages = size >> page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  Result<VirtAddr> ptr = cpu().mmap(VirtAddr(0), size, kProtRw,
                                    kMapPrivateAnon | mm::MmapFlags::kHugetlb);
  if (ptr.is_error()) return;  // the original passes silently here

  auto buffer = hmm_buffer_alloc(size, npages);
  buffer->ptr = ptr.value();

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kSnapshot, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  {
    const uint8_t* m = buffer->mirror_bytes();
    const uint8_t prot = dmirror::kHmmDmirrorProtWrite |
                         ((m[0] & dmirror::kHmmDmirrorProtPud) ? dmirror::kHmmDmirrorProtPud
                                                                : dmirror::kHmmDmirrorProtPmd);
    for (uint64_t i = 0; i < npages; ++i) ASSERT_EQ(m[i], prot);
  }

  ret = cpu().mprotect(buffer->ptr, size, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kSnapshot, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  {
    const uint8_t* m = buffer->mirror_bytes();
    const uint8_t prot = dmirror::kHmmDmirrorProtRead |
                         ((m[0] & dmirror::kHmmDmirrorProtPud) ? dmirror::kHmmDmirrorProtPud
                                                                : dmirror::kHmmDmirrorProtPmd);
    for (uint64_t i = 0; i < npages; ++i) ASSERT_EQ(m[i], prot);
  }

  (void)cpu().munmap(buffer->ptr, size);
  buffer->ptr = VirtAddr(0);
  hmm_buffer_free(proc(), std::move(buffer));
}

// double_map: two devices read the same read-only pages; migration to one invalidates the
// other, whose next read faults the pages back.
TEST_P(hmm2, double_map) {
  const uint64_t npages = 6;
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = cpu().mprotect(buffer->ptr, size, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  ret = hmm_dmirror_cmd(proc(), fd0_, Ioctl::kRead, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  ret = hmm_dmirror_cmd(proc(), fd1_, Ioctl::kRead, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  ret = hmm_migrate_sys_to_dev(proc(), fd1_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);

  ret = hmm_dmirror_cmd(proc(), fd0_, Ioctl::kRead, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// exclusive: device-exclusive access, revoked by CPU access.
TEST_P(hmm, exclusive) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kExclusive, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  // ptr[i]++ for every int: loads (revoking exclusivity), then stores.
  {
    HMM_LOAD(v, buffer->ptr, 0, nints);
    for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i]++, static_cast<int32_t>(i));
    HMM_ASSERT_OK(cpu_store_ints(cpu(), buffer->ptr, 0, v));
  }
  {
    HMM_LOAD(v, buffer->ptr, 0, nints);
    for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i + 1));
  }

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kCheckExclusive, *buffer, npages);
  ASSERT_EQ(ret, 0);

  hmm_buffer_free(proc(), std::move(buffer));
}

// exclusive_mprotect: a device write after mprotect(PROT_READ) of exclusive pages: EPERM.
TEST_P(hmm, exclusive_mprotect) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kExclusive, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  ret = cpu().mprotect(buffer->ptr, size, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kWrite, *buffer, npages);
  ASSERT_EQ(ret, neg(Errno::kEPERM));

  hmm_buffer_free(proc(), std::move(buffer));
}

// exclusive_cow: fork over device-exclusive pages; parent and child increment their own
// copies at the same time.
TEST_P(hmm, exclusive_cow) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  const int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kExclusive, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);

  // ptr[i]++ then a check, in one process; `completed` only when every assertion held.
  auto increment_and_check = [nints](mm::Process& p, VirtAddr base, bool& completed) {
    {
      HMM_ASSERT_OK_AND_ASSIGN(v, cpu_load_ints(p, base, 0, nints));
      for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i]++, static_cast<int32_t>(i));
      HMM_ASSERT_OK(cpu_store_ints(p, base, 0, v));
    }
    HMM_ASSERT_OK_AND_ASSIGN(v, cpu_load_ints(p, base, 0, nints));
    for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i + 1));
    completed = true;
  };

  const VirtAddr base = buffer->ptr;
  auto child_body = [increment_and_check, base](ChildContext& ctx) {
    bool completed = false;
    increment_and_check(ctx.process().process(), base, completed);
    if (completed) ctx.exit(0);
  };
  HMM_ASSERT_OK_AND_ASSIGN(pid, ModelChild::fork(proc(), child_body));

  bool completed = false;
  increment_and_check(cpu(), buffer->ptr, completed);
  ASSERT_TRUE(completed);

  const WaitStatus status = pid->wait();
  ASSERT_TRUE(status.exited);
  ASSERT_EQ(status.exit_status, 0);

  hmm_buffer_free(proc(), std::move(buffer));
}

// hmm_gup_test: GUP of device pages: private ones come back to RAM, coherent ones stay
// unless pinned long-term.
TEST_P(hmm, hmm_gup_test) {
  if (!gup_test_available()) GTEST_SKIP() << "Skipping test, could not find gup_test driver";

  const uint64_t npages = 4;
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);
  const uint64_t pg = page_size_;

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  auto at = [&](uint64_t page) { return VirtAddr(buffer->ptr.raw() + page * pg); };
  ASSERT_EQ(gup_test_exec(proc(), at(0), GupTestCmd::kGupBasicTest, 1, pg, 0), 0);
  ASSERT_EQ(gup_test_exec(proc(), at(1), GupTestCmd::kGupFastBenchmark, 1, pg, 0), 0);
  ASSERT_EQ(gup_test_exec(proc(), at(2), GupTestCmd::kPinFastBenchmark, 1, pg, kFollLongterm),
            0);
  ASSERT_EQ(gup_test_exec(proc(), at(3), GupTestCmd::kPinLongtermBenchmark, 1, pg, 0), 0);

  // The device's view of the four pages.
  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kSnapshot, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  const uint8_t* m = buffer->mirror_bytes();
  if (hmm_is_coherent_type(device_number())) {
    ASSERT_EQ(dmirror::kHmmDmirrorProtDevCoherentLocal | dmirror::kHmmDmirrorProtWrite, m[0]);
    ASSERT_EQ(dmirror::kHmmDmirrorProtDevCoherentLocal | dmirror::kHmmDmirrorProtWrite, m[1]);
  } else {
    ASSERT_EQ(dmirror::kHmmDmirrorProtWrite, m[0]);
    ASSERT_EQ(dmirror::kHmmDmirrorProtWrite, m[1]);
  }
  ASSERT_EQ(dmirror::kHmmDmirrorProtWrite, m[2]);
  ASSERT_EQ(dmirror::kHmmDmirrorProtWrite, m[3]);

  // The data is intact.
  HMM_LOAD(v, buffer->ptr, 0, nints);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// hmm_cow_in_device: device pages shared COW with a (busy) child; the parent's writes break
// COW, so the device sees writable pages afterwards.
TEST_P(hmm, hmm_cow_in_device) {
  const uint64_t npages = 4;
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);

  // The child spins until killed.
  HMM_ASSERT_OK_AND_ASSIGN(pid, ModelChild::fork(proc(), [](ChildContext& ctx) {
                             while (!ctx.killed()) std::this_thread::yield();
                           }));

  // The parent writes every int: device-private pages come back and COW breaks.
  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });

  EXPECT_EQ(pid->kill(kSigKill), 0);
  const WaitStatus status = pid->wait();
  EXPECT_NE(0, status.signaled);
  EXPECT_EQ(status.term_sig, kSigKill);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kSnapshot, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  const uint8_t* m = buffer->mirror_bytes();
  for (uint64_t i = 0; i < npages; ++i) ASSERT_EQ(dmirror::kHmmDmirrorProtWrite, m[i]);

  hmm_buffer_free(proc(), std::move(buffer));
}

}  // namespace
}  // namespace dpmm::hmm_selftest
