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
// Complexity: load (the lookup on every offset -> page decode) takes no lock and, for ranges
// spread evenly over the used part of the space, O(1): one bucket of a narrowing index, then a
// binary search over the (usually zero or one) range starts inside that bucket; O(log n)
// when one bucket holds many starts (a huge range next to many small ones). alloc_range scans
// the gaps in address order, O(n), and every alloc_range/erase rebuilds the lookup index,
// O(n): registration-time work (the maple tree keeps per-node gap maxima to make allocation
// O(log n)).
//
// Concurrency. Writers (alloc_range, erase) serialise on an RwLock of rank kPagemapTree (the
// tree's spinlock); nr_ranges() and ranges() read under it. load() takes no lock, as the
// kernel's mtree_load runs under RCU: it reads a LookupTable through a sequence counter
// (a seqlock, include/linux/seqlock.h in spirit):
//   writer (lock held): seq = s + 1 (odd); rewrite the table, every store a release store;
//                       seq = s + 2 (release).
//   reader: s0 = seq (acquire), retry while odd; search with acquire loads only; s1 = seq;
//           the answer stands iff s1 == s0, else retry.
// Why that is enough: if any acquire load of the search reads a value stored by a writer's
// rewrite, that release store synchronises with it, so the writer's earlier store of s + 1
// happens before the reader's later load of s1, and s1 != s0 (unless s0 was itself taken
// after that rewrite finished). Every table field is a std::atomic, so a torn search is never
// undefined behaviour, and every index it computes stays inside the table (all stored
// indices are bounded by the table's fixed capacity), so it only ever yields a discarded
// answer. Acquire loads and release stores are plain moves on x86-64, and no fences are used
// (ThreadSanitizer sees every edge).
// Reclamation: a table is rewritten in place while it has room; when the ranges outgrow it, a
// table of twice the capacity is built, published with a release store of the table pointer
// inside the odd window, and the old one is retired but kept until the DevicePrivateSpace is
// destroyed (a reader may still be searching it; it only ever sees a consistent old state
// there, since retired tables are never written again). Capacities double and never shrink,
// so the retired tables together hold fewer slots than the live one: the memory cost is at
// most 2x the high-water mark of ranges, with no per-reader bookkeeping.
#pragma once

#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
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
  ~DevicePrivateSpace();
  DevicePrivateSpace(const DevicePrivateSpace&) = delete;
  DevicePrivateSpace& operator=(const DevicePrivateSpace&) = delete;

  // The inclusive maximum address (1 << MAX_PHYSMEM_BITS).
  uint64_t max() const { return max_; }

  // mtree_alloc_range(tree, &start, pgmap, size, 0, max()): the start of the lowest gap of
  // `size` bytes, now owned by `pgmap`. Errors above.
  Result<uint64_t> alloc_range(DevPagemap* pgmap, uint64_t size) EXCLUDES(lock_);
  // mtree_erase(tree, addr): removes the range holding `addr`; returns its owner.
  Result<DevPagemap*> erase(uint64_t addr) EXCLUDES(lock_);
  // mtree_load(tree, addr): the range holding `addr`, if any. Lock-free (see above); never
  // blocks, retries while a writer is rewriting the lookup table. The answer is the state
  // before or after any concurrent alloc_range/erase, never a mix.
  std::optional<DevicePrivateRange> load(uint64_t addr) const;
  // load(addr)->pgmap, or null: the same lock-free lookup returning one register, for the
  // offset -> page decode.
  DevPagemap* load_pgmap(uint64_t addr) const;

  size_t nr_ranges() const EXCLUDES(lock_);
  // Every range in address order (tests, reports).
  std::vector<DevicePrivateRange> ranges() const EXCLUDES(lock_);

 private:
  class LookupTable;
  struct Entry {
    uint64_t last;
    DevPagemap* pgmap;
  };
  // The range whose start is the greatest <= addr, if it also holds addr.
  std::map<uint64_t, Entry>::const_iterator find_locked(uint64_t addr) const
      REQUIRES_SHARED(lock_);
  // Rebuilds the lookup table from ranges_ and publishes it (the writer side above).
  void publish_locked() REQUIRES(lock_);
  // Runs fn(live table) under the sequence counter until it ran against a stable table.
  template <typename Fn>
  auto read_table(Fn fn) const;

  const uint64_t max_;
  mutable RwLock lock_{LockRank::kPagemapTree};
  std::map<uint64_t, Entry> ranges_ GUARDED_BY(lock_);  // keyed by start
  // Every table ever published, the live one last; retired ones kept (see above).
  std::vector<std::unique_ptr<LookupTable>> tables_ GUARDED_BY(lock_);
  // The live table (tables_.back()), for lock-free readers.
  std::atomic<const LookupTable*> table_{nullptr};
  // Odd while a writer rewrites the live table or swaps it.
  std::atomic<uint64_t> seq_{0};
};

}  // namespace dpmm::devmem
