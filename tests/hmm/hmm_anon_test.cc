// hmm-tests.c, part 1: device reads and writes of system memory (anonymous, shared, file),
// with children, hugetlbfs and the device file mapping. The tests keep the original's order,
// steps and assertions (docs/hmm-selftests.md); comments say what the kernel does at a step.

#include <cstdint>
#include <vector>

#include "hmm_fixture.h"

namespace dpmm::hmm_selftest {
namespace {

// open_close: the fixture's open and close only.
TEST_P(hmm, open_close) {}

// anon_read: the device reads private anonymous memory whose first page is pte_none and
// second page the zero page.
TEST_P(hmm, anon_read) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;

  auto buffer = hmm_buffer_alloc(size, size);
  ASSERT_NE(buffer, nullptr);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  // The buffer from page 2 on; pages 0 and 1 stay untouched.
  const uint64_t first = 2 * page_size_ / sizeof(int32_t);
  HMM_STORE(buffer->ptr, first, size / sizeof(int32_t) - first,
            [](uint64_t i) { return static_cast<int32_t>(i); });

  int ret = cpu().mprotect(buffer->ptr, size, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  // A CPU read of page 1 maps the zero page there.
  HMM_ASSERT_OK_AND_ASSIGN(val, cpu().read_u32(VirtAddr(buffer->ptr.raw() + page_size_)));
  ASSERT_EQ(static_cast<int32_t>(val), 0);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kRead, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);

  const int32_t* m = buffer->mirror_ints();
  uint64_t i = 0;
  for (; i < 2 * page_size_ / sizeof(int32_t); ++i) ASSERT_EQ(m[i], 0);
  for (; i < size / sizeof(int32_t); ++i) ASSERT_EQ(m[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// anon_read_prot: a device read of PROT_NONE memory fails with EFAULT and copies nothing.
TEST_P(hmm, anon_read_prot) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });
  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = -static_cast<int32_t>(i);

  int ret = cpu().mprotect(buffer->ptr, size, kProtNone).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kRead, *buffer, npages);
  ASSERT_EQ(ret, -static_cast<int>(Errno::kEFAULT));

  ret = cpu().mprotect(buffer->ptr, size, kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);
  HMM_LOAD(v, buffer->ptr, 0, nints);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  for (uint64_t i = 0; i < nints; ++i) {
    ASSERT_EQ(buffer->mirror_ints()[i], -static_cast<int32_t>(i));
  }

  hmm_buffer_free(proc(), std::move(buffer));
}

// anon_write: the device writes private anonymous memory.
TEST_P(hmm, anon_write) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = static_cast<int32_t>(i);

  const int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kWrite, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);

  HMM_LOAD(v, buffer->ptr, 0, nints);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// anon_write_prot: a device write of read-only memory fails with EPERM; after mprotect RW it
// replaces the zero page.
TEST_P(hmm, anon_write_prot) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRead, kMapPrivateAnon));
  buffer->ptr = ptr;

  // The device reads one zero page.
  int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kRead, *buffer, 1);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, 1u);
  ASSERT_EQ(buffer->faults, 1u);

  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = static_cast<int32_t>(i);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kWrite, *buffer, npages);
  ASSERT_EQ(ret, -static_cast<int>(Errno::kEPERM));

  {
    HMM_LOAD(v, buffer->ptr, 0, nints);
    for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], 0);
  }

  ret = cpu().mprotect(buffer->ptr, size, kProtWrite | kProtRead).is_ok() ? 0 : -1;
  ASSERT_EQ(ret, 0);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kWrite, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);

  {
    HMM_LOAD(v, buffer->ptr, 0, nints);
    for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));
  }

  hmm_buffer_free(proc(), std::move(buffer));
}

// anon_write_child: after fork, a device write by the child breaks COW in the child only;
// with the buffer first migrated to the device, and with a THP-sized aligned buffer.
TEST_P(hmm, anon_write_child) {
  for (int migrate = 0; migrate < 2; ++migrate) {
    for (int use_thp = 0; use_thp < 2; ++use_thp) {
      const uint64_t npages =
          align_up(use_thp ? read_pmd_pagesize(proc()) : kHmmBufferSize, page_size_) >>
          page_shift_;
      ASSERT_NE(npages, 0u);
      const uint64_t size = npages << page_shift_;
      const uint64_t nints = size / sizeof(int32_t);

      auto buffer = hmm_buffer_alloc(size * 2, size);
      ASSERT_NE(buffer, nullptr);
      HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size * 2, kProtRw, kMapPrivateAnon));
      buffer->ptr = ptr;

      const VirtAddr old_ptr = buffer->ptr;
      if (use_thp) {
        const VirtAddr map(align_up(buffer->ptr.raw(), size));
        const int ret = hmm_madvise(proc(), map, size, kMadvHugepage);
        ASSERT_EQ(ret, 0);
        buffer->ptr = map;
      }

      HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });
      for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = -static_cast<int32_t>(i);

      if (migrate) {
        const int ret = hmm_migrate_sys_to_dev(proc(), fd_, *buffer, npages);
        ASSERT_EQ(ret, 0);
        ASSERT_EQ(buffer->cpages, npages);
      }

      // The child gets its own copy of the test's memory (the buffer struct and mirror).
      std::shared_ptr<HmmBuffer> child_buffer = hmm_buffer_fork_copy(*buffer);
      auto child_body = [child_buffer, npages, nints, migrate](ChildContext& ctx) {
        ModelProcess& child = ctx.process();
        HmmBuffer& b = *child_buffer;
        // The child sees the parent's values (device pages come back to RAM, shared COW).
        {
          HMM_ASSERT_OK_AND_ASSIGN(
              v, cpu_load_ints(child.process(), b.ptr, 0, nints));
          for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));
        }
        if (!migrate) {
          for (uint64_t i = 0; i < nints; ++i) {
            ASSERT_EQ(b.mirror_ints()[i], -static_cast<int32_t>(i));
          }
        }

        // The child needs its own mirror of its own mm: always private device 0.
        const int child_fd = hmm_open(child, 0);
        ASSERT_GE(child_fd, 0);

        const int ret = hmm_dmirror_cmd(child, child_fd, Ioctl::kWrite, b, npages);
        ASSERT_EQ(ret, 0);
        ASSERT_EQ(b.cpages, npages);
        ASSERT_EQ(b.faults, 1u);

        if (!migrate) {
          HMM_ASSERT_OK_AND_ASSIGN(
              v, cpu_load_ints(child.process(), b.ptr, 0, nints));
          for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], -static_cast<int32_t>(i));
        }

        child.close(child_fd);
        ctx.exit(0);
      };
      HMM_ASSERT_OK_AND_ASSIGN(pid, ModelChild::fork(proc(), child_body));

      const WaitStatus st = pid->wait();
      ASSERT_EQ(st.exited, true);

      // The parent's buffer did not change.
      {
        HMM_LOAD(v, buffer->ptr, 0, nints);
        for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));
      }

      buffer->ptr = old_ptr;
      hmm_buffer_free(proc(), std::move(buffer));
    }
  }
}

// anon_write_child_shared: with MAP_SHARED|MAP_ANONYMOUS the child's device write is seen by
// the parent (no COW).
TEST_P(hmm, anon_write_child_shared) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapSharedAnon));
  buffer->ptr = ptr;

  HMM_STORE(buffer->ptr, 0, nints, [](uint64_t i) { return static_cast<int32_t>(i); });
  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = -static_cast<int32_t>(i);

  std::shared_ptr<HmmBuffer> child_buffer = hmm_buffer_fork_copy(*buffer);
  auto child_body = [child_buffer, npages, nints](ChildContext& ctx) {
    ModelProcess& child = ctx.process();
    HmmBuffer& b = *child_buffer;
    {
      HMM_ASSERT_OK_AND_ASSIGN(v, cpu_load_ints(child.process(), b.ptr, 0, nints));
      for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));
    }
    for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(b.mirror_ints()[i], -static_cast<int32_t>(i));

    const int child_fd = hmm_open(child, 0);
    ASSERT_GE(child_fd, 0);

    const int ret = hmm_dmirror_cmd(child, child_fd, Ioctl::kWrite, b, npages);
    ASSERT_EQ(ret, 0);
    ASSERT_EQ(b.cpages, npages);
    ASSERT_EQ(b.faults, 1u);

    {
      HMM_ASSERT_OK_AND_ASSIGN(v, cpu_load_ints(child.process(), b.ptr, 0, nints));
      for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], -static_cast<int32_t>(i));
    }

    child.close(child_fd);
    ctx.exit(0);
  };
  HMM_ASSERT_OK_AND_ASSIGN(pid, ModelChild::fork(proc(), child_body));
  const WaitStatus st = pid->wait();
  ASSERT_EQ(st.exited, true);

  // The parent's buffer did change.
  HMM_LOAD(v, buffer->ptr, 0, nints);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], -static_cast<int32_t>(i));
  // The original returns here without freeing the buffer.
}

// anon_write_huge: the device writes a THP-aligned private anonymous range.
TEST_P(hmm, anon_write_huge) {
  uint64_t size = 2 * read_pmd_pagesize(proc());

  auto buffer = hmm_buffer_alloc(size, size);
  HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
  buffer->ptr = ptr;

  size /= 2;
  const uint64_t npages = size >> page_shift_;
  const uint64_t nints = size / sizeof(int32_t);
  const VirtAddr map(align_up(buffer->ptr.raw(), size));
  int ret = hmm_madvise(proc(), map, size, kMadvHugepage);
  ASSERT_EQ(ret, 0);
  const VirtAddr old_ptr = buffer->ptr;
  buffer->ptr = map;

  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = static_cast<int32_t>(i);

  ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kWrite, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);

  HMM_LOAD(v, buffer->ptr, 0, nints);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  buffer->ptr = old_ptr;
  hmm_buffer_free(proc(), std::move(buffer));
}

// anon_write_hugetlbfs: the device writes a hugetlbfs page.
TEST_P(hmm, anon_write_hugetlbfs) {
  if (!hugetlb_free_default_pages(proc())) GTEST_SKIP() << "Not enough huge pages";

  const uint64_t size = align_up(kTwoMeg, default_huge_page_size());
  const uint64_t npages = size >> page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  auto buffer = hmm_buffer_alloc(size, size);
  Result<VirtAddr> ptr = cpu().mmap(VirtAddr(0), size, kProtRw,
                                    kMapPrivateAnon | mm::MmapFlags::kHugetlb);
  if (ptr.is_error()) GTEST_SKIP() << "Huge page could not be allocated";
  buffer->ptr = ptr.value();

  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = static_cast<int32_t>(i);

  const int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kWrite, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);

  HMM_LOAD(v, buffer->ptr, 0, nints);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  (void)cpu().munmap(buffer->ptr, size);
  buffer->ptr = VirtAddr(0);
  hmm_buffer_free(proc(), std::move(buffer));
}

// file_read: the device reads a shared file mapping.
TEST_P(hmm, file_read) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  const int fd = hmm_create_file(proc(), size);
  ASSERT_GE(fd, 0);

  auto buffer = hmm_buffer_alloc(size, size);
  buffer->fd = fd;

  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = static_cast<int32_t>(i);
  const int64_t len =
      hmm_pwrite(proc(), buffer->fd, std::span<const std::byte>(buffer->mirror.get(), size), 0);
  ASSERT_EQ(len, static_cast<int64_t>(size));
  std::memset(buffer->mirror.get(), 0, size);

  buffer->ptr = hmm_mmap_fd(proc(), size, kProtRead, mm::MmapFlags::kShared, buffer->fd);
  ASSERT_NE(buffer->ptr.raw(), 0u);

  const int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kRead, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);

  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// file_write: the device writes a shared file mapping; pread sees the bytes.
TEST_P(hmm, file_write) {
  const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
  ASSERT_NE(npages, 0u);
  const uint64_t size = npages << page_shift_;
  const uint64_t nints = size / sizeof(int32_t);

  const int fd = hmm_create_file(proc(), size);
  ASSERT_GE(fd, 0);

  auto buffer = hmm_buffer_alloc(size, size);
  buffer->fd = fd;

  buffer->ptr = hmm_mmap_fd(proc(), size, kProtRw, mm::MmapFlags::kShared, buffer->fd);
  ASSERT_NE(buffer->ptr.raw(), 0u);

  for (uint64_t i = 0; i < nints; ++i) buffer->mirror_ints()[i] = static_cast<int32_t>(i);

  const int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kWrite, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);
  ASSERT_EQ(buffer->faults, 1u);

  HMM_LOAD(v, buffer->ptr, 0, nints);
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(v[i], static_cast<int32_t>(i));

  const int64_t len =
      hmm_pread(proc(), buffer->fd, std::span<std::byte>(buffer->mirror.get(), size), 0);
  ASSERT_EQ(len, static_cast<int64_t>(size));
  for (uint64_t i = 0; i < nints; ++i) ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i));

  hmm_buffer_free(proc(), std::move(buffer));
}

// anon_read_multiple: ten fresh buffers read by the device.
TEST_P(hmm, anon_read_multiple) {
  for (int c = 0; c < kNTimes; ++c) {
    const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
    ASSERT_NE(npages, 0u);
    const uint64_t size = npages << page_shift_;
    const uint64_t nints = size / sizeof(int32_t);

    auto buffer = hmm_buffer_alloc(size, size);
    HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
    buffer->ptr = ptr;

    HMM_STORE(buffer->ptr, 0, nints, [c](uint64_t i) { return static_cast<int32_t>(i + c); });

    const int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kRead, *buffer, npages);
    ASSERT_EQ(ret, 0);
    ASSERT_EQ(buffer->cpages, npages);
    ASSERT_EQ(buffer->faults, 1u);

    for (uint64_t i = 0; i < nints; ++i) {
      ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i + c));
    }

    hmm_buffer_free(proc(), std::move(buffer));
  }
}

// anon_teardown: a thread unmaps the second half of the buffer while the device reads it;
// any error is accepted, a success must have read everything.
TEST_P(hmm, anon_teardown) {
  for (int c = 0; c < kNTimes; ++c) {
    const uint64_t npages = align_up(kHmmBufferSize, page_size_) >> page_shift_;
    ASSERT_NE(npages, 0u);
    const uint64_t size = npages << page_shift_;
    const uint64_t nints = size / sizeof(int32_t);

    auto buffer = hmm_buffer_alloc(size, size);
    HMM_ASSERT_OK_AND_ASSIGN(ptr, cpu().mmap(VirtAddr(0), size, kProtRw, kMapPrivateAnon));
    buffer->ptr = ptr;

    HMM_STORE(buffer->ptr, 0, nints, [c](uint64_t i) { return static_cast<int32_t>(i + c); });

    // unmap_buffer(): sleeps a random time under 32 us, unmaps the second half. The
    // original also sets buffer->ptr = NULL from the thread (a data race with the ioctl's
    // read of it); here the main thread clears it after the join.
    mm::Process& cpu_ref = cpu();
    const VirtAddr half(buffer->ptr.raw() + buffer->size / 2);
    const uint64_t half_len = buffer->size / 2;
    Thread thread("unmap_buffer", [&cpu_ref, half, half_len] {
      hmm_nanosleep(hmm_random() % 32000);
      (void)cpu_ref.munmap(half, half_len);
    });

    const int rc = hmm_dmirror_cmd(proc(), fd_, Ioctl::kRead, *buffer, npages);
    if (rc == 0) {
      ASSERT_EQ(buffer->cpages, npages);
      ASSERT_EQ(buffer->faults, 1u);
      for (uint64_t i = 0; i < nints; ++i) {
        ASSERT_EQ(buffer->mirror_ints()[i], static_cast<int32_t>(i + c));
      }
    }

    thread.join();
    buffer->ptr = VirtAddr(0);  // the first half leaks, as in the original
    hmm_buffer_free(proc(), std::move(buffer));
  }
}

// mixedmap: a snapshot of the dmirror device file's own mapping (VM_MIXEDMAP) reads
// PROT_READ.
TEST_P(hmm, mixedmap) {
  const uint64_t npages = 1;
  const uint64_t size = npages << page_shift_;

  auto buffer = hmm_buffer_alloc(size, npages);
  buffer->ptr = hmm_mmap_fd(proc(), size, kProtRw, mm::MmapFlags::kPrivate, fd_);
  ASSERT_NE(buffer->ptr.raw(), 0u);

  const int ret = hmm_dmirror_cmd(proc(), fd_, Ioctl::kSnapshot, *buffer, npages);
  ASSERT_EQ(ret, 0);
  ASSERT_EQ(buffer->cpages, npages);

  const uint8_t* m = buffer->mirror_bytes();
  ASSERT_EQ(m[0], dmirror::kHmmDmirrorProtRead);

  hmm_buffer_free(proc(), std::move(buffer));
}

}  // namespace
}  // namespace dpmm::hmm_selftest
