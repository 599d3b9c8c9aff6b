// The bytes of simulated RAM.
//
// Each RAM range gets one anonymous private mapping with MAP_NORESERVE, so a simulated
// machine may have far more RAM than the host (256 GiB on a 16 GiB host): host memory is
// spent only on pages that are touched, and discard() gives it back (MADV_DONTNEED, after
// which a page reads as zeros again, as freshly allocated anonymous memory does). Transparent
// huge pages are turned off for the mappings so a touch costs one base page, not 2 MiB.
//
// The set of ranges is fixed at creation, so lookups take no lock and any number of threads
// may use different pages at once; two threads writing one page race as two CPUs would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/types.h"
#include "phys/phys_range.h"

namespace dpmm::phys {

class BackingStore {
 public:
  // One mapping per range, trimmed to the whole pages inside it (a partial page at either
  // end is not RAM, as memblock sees it). EINVAL for overlapping ranges; ENOMEM when the host
  // refuses a mapping.
  static Result<std::unique_ptr<BackingStore>> create(std::span<const PhysRange> ram);
  ~BackingStore();
  BackingStore(const BackingStore&) = delete;
  BackingStore& operator=(const BackingStore&) = delete;

  // The bytes from `addr` to the end of its page. EFAULT when `addr` is not RAM.
  Result<std::span<std::byte>> bytes(PhysAddr addr) const;
  // The page's kPageSize bytes. EFAULT when the page is not RAM.
  Result<std::span<std::byte>> page_bytes(Pfn pfn) const;
  // Drops the host pages behind [pfn, pfn + count): they cost no host memory afterwards and
  // read as zeros. EFAULT unless the whole run lies in one RAM range.
  Status discard(Pfn pfn, PageCount count) const;

  // Host memory currently behind the store (mincore over every mapping), in bytes.
  uint64_t resident_bytes() const;
  uint64_t total_bytes() const;
  const std::vector<PhysRange>& ranges() const { return ranges_; }

 private:
  struct Mapping {
    PhysRange range;
    std::byte* base;
  };
  BackingStore() = default;
  const Mapping* find(PhysAddr addr) const;

  std::vector<PhysRange> ranges_;
  std::vector<Mapping> maps_;  // sorted by range.start
};

}  // namespace dpmm::phys
