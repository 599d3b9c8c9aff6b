// The device private address space (the 2026 series, patch 13: device_private_pgmap_tree in
// mm/memremap.c, a maple tree initialised with MT_FLAGS_ALLOC_RANGE).
//
// A range allocator over byte addresses [0, kMax], kMax = 1 << MAX_PHYSMEM_BITS. The kernel
// calls mtree_alloc_range(tree, &start, pgmap, nr_pages * PAGE_SIZE, 0, 1ull <<
// MAX_PHYSMEM_BITS, GFP_KERNEL): the maximum is inclusive there (lib/maple_tree.c
// mas_empty_area), so the space is one byte longer than 2^MAX_PHYSMEM_BITS; with page-multiple
// sizes allocated lowest-first from 0 that byte is never part of a range. The answer is the
// LOWEST gap that fits (mas_empty_area searches forward). A device-private offset is
// address >> PAGE_SHIFT.
//
// Errors as lib/maple_tree.c gives them:
//   mtree_alloc_range  EINVAL  size 0, size larger than the whole space, or a null entry
//                      EBUSY   no gap is large enough (the space is full or fragmented)
//   mtree_erase        the kernel returns the erased entry or NULL; here ENOENT when no
//                      range holds the address.
//
// Complexity: load (the lookup on every offset -> page decode) is O(log n) in the number of
// ranges; alloc_range scans the gaps in address order, O(n), which is registration-time
// work (the maple tree keeps per-node gap maxima to make it O(log n)).
//
// Concurrency: an RwLock of rank kPagemapTree; lookups take it shared (the kernel's
// mtree_load runs under RCU), alloc and erase exclusively (the tree's spinlock).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/thread_annotations.h"

namespace dpmm::devmem {

class DevPagemap;

// One allocated range: [start, last], inclusive as struct range and the maple tree keep it.
struct DevicePrivateRange {
  uint64_t start = 0;
  uint64_t last = 0;
  DevPagemap* pgmap = nullptr;

  uint64_t size() const { return last - start + 1; }
  bool operator==(const DevicePrivateRange&) const = default;
};

class DevicePrivateSpace {
 public:
  // REQUIRES: 32 <= max_physmem_bits <= 62.
  explicit DevicePrivateSpace(unsigned max_physmem_bits);
  DevicePrivateSpace(const DevicePrivateSpace&) = delete;
  DevicePrivateSpace& operator=(const DevicePrivateSpace&) = delete;

  // The inclusive maximum address (1 << MAX_PHYSMEM_BITS).
  uint64_t max() const { return max_; }

  // mtree_alloc_range(tree, &start, pgmap, size, 0, max()): the start of the lowest gap of
  // `size` bytes, now owned by `pgmap`. Errors above.
  Result<uint64_t> alloc_range(DevPagemap* pgmap, uint64_t size) EXCLUDES(lock_);
  // mtree_erase(tree, addr): removes the range holding `addr`; returns its owner.
  Result<DevPagemap*> erase(uint64_t addr) EXCLUDES(lock_);
  // mtree_load(tree, addr): the range holding `addr`, if any.
  std::optional<DevicePrivateRange> load(uint64_t addr) const EXCLUDES(lock_);

  size_t nr_ranges() const EXCLUDES(lock_);
  // Every range in address order (tests, reports).
  std::vector<DevicePrivateRange> ranges() const EXCLUDES(lock_);

 private:
  struct Entry {
    uint64_t last;
    DevPagemap* pgmap;
  };
  // The range whose start is the greatest <= addr, if it also holds addr.
  std::map<uint64_t, Entry>::const_iterator find_locked(uint64_t addr) const
      REQUIRES_SHARED(lock_);

  const uint64_t max_;
  mutable RwLock lock_{LockRank::kPagemapTree};
  std::map<uint64_t, Entry> ranges_ GUARDED_BY(lock_);  // keyed by start
};

}  // namespace dpmm::devmem
