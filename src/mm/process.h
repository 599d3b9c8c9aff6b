// Process: a user process as the tests and the simulator see it -- one Mm and the system
// calls and CPU accesses on it. Any number of threads may use one Process at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "base/result.h"
#include "mm/access.h"
#include "mm/mm.h"

namespace dpmm::mm {

class Process {
 public:
  // ENOMEM when the PGD cannot be allocated.
  static Result<std::unique_ptr<Process>> create(Kernel& kernel);

  Mm& mm() { return *mm_; }
  Kernel& kernel() { return mm_->kernel(); }

  Result<VirtAddr> mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags) {
    return mm_->mmap(addr, len, prot, flags);
  }
  // mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0).
  Result<VirtAddr> mmap_anon(uint64_t len, MmapProt prot) {
    return mm_->mmap(VirtAddr(0), len, prot, MmapFlags::kPrivate | MmapFlags::kAnonymous);
  }
  // mmap(addr, len, prot, flags, fd, offset) of an open file (Mm::mmap's file overload).
  Result<VirtAddr> mmap_file(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags,
                             std::shared_ptr<File> file, uint64_t offset = 0) {
    return mm_->mmap(addr, len, prot, flags, std::move(file), offset);
  }
  Status munmap(VirtAddr addr, uint64_t len) { return mm_->munmap(addr, len); }
  Result<VirtAddr> mremap(VirtAddr old_addr, uint64_t old_len, uint64_t new_len,
                          MremapFlags flags, VirtAddr new_addr = VirtAddr(0)) {
    return mm_->mremap(old_addr, old_len, new_len, flags, new_addr);
  }
  Status madvise(VirtAddr addr, uint64_t len, Madvise advice) {
    return mm_->madvise(addr, len, advice);
  }
  // fork(): a child process with a copy-on-write copy of this one's memory (Mm::fork).
  Result<std::unique_ptr<Process>> fork();
  Status mprotect(VirtAddr addr, uint64_t len, MmapProt prot) {
    return mm_->mprotect(addr, len, prot);
  }

  Status read(VirtAddr addr, std::span<std::byte> out) { return cpu_read(*mm_, addr, out); }
  Status write(VirtAddr addr, std::span<const std::byte> in) { return cpu_write(*mm_, addr, in); }
  Status fill(VirtAddr addr, uint64_t len, std::byte v) { return cpu_fill(*mm_, addr, len, v); }
  Result<uint32_t> read_u32(VirtAddr addr) { return cpu_read_u32(*mm_, addr); }
  Result<uint64_t> read_u64(VirtAddr addr) { return cpu_read_u64(*mm_, addr); }
  Status write_u32(VirtAddr addr, uint32_t v) { return cpu_write_u32(*mm_, addr, v); }
  Status write_u64(VirtAddr addr, uint64_t v) { return cpu_write_u64(*mm_, addr, v); }

 private:
  explicit Process(std::unique_ptr<Mm> mm) : mm_(std::move(mm)) {}
  std::unique_ptr<Mm> mm_;
};

}  // namespace dpmm::mm
