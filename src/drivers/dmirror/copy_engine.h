// The dmirror device's copy engine: how data moves between system pages and device memory.
//
// lib/test_hmm.c copies with the CPU (copy_highpage, memcpy_from_page, memcpy_to_page,
// folio_copy, clear_highpage); a real device would use its DMA engine. dpmm keeps the data
// movement behind this one small interface (ARCHITECTURE.md, "a device's memory and its copy
// engine sit behind one small interface"): host memcpy today, a GPU's DMA copies on a machine
// that has one. Every call runs on the caller's thread and is complete when it returns.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>

namespace dpmm::dmirror {

class CopyEngine {
 public:
  virtual ~CopyEngine() = default;
  // Copies src into dst. REQUIRES: dst.size() == src.size(), no overlap.
  virtual void copy(std::span<std::byte> dst, std::span<const std::byte> src) = 0;
  // Zero-fills dst (clear_highpage).
  virtual void clear(std::span<std::byte> dst) = 0;
};

// memcpy/memset on the host.
class HostCopyEngine final : public CopyEngine {
 public:
  void copy(std::span<std::byte> dst, std::span<const std::byte> src) override {
    std::memcpy(dst.data(), src.data(), dst.size() < src.size() ? dst.size() : src.size());
  }
  void clear(std::span<std::byte> dst) override { std::memset(dst.data(), 0, dst.size()); }
};

}  // namespace dpmm::dmirror
