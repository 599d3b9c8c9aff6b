#include "devmem/device_private_space.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace dpmm::devmem {

namespace {

constexpr auto kAcquire = std::memory_order_acquire;
constexpr auto kRelease = std::memory_order_release;
constexpr auto kRelaxed = std::memory_order_relaxed;

// The smallest table; capacities are powers of two from here.
constexpr size_t kMinCapacity = 16;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

// The lock-free lookup index, rewritten by writers under lock_ and read by load() under the
// sequence counter (the header explains the protocol; every access is atomic for that).
//
// Layout: the ranges sorted by start in `records_[0, n)`, and a narrowing index over
// [0, nb << shift): bucket j covers the bytes [j << shift, (j + 1) << shift) and holds
// lo = #ranges whose start <= its first byte and hi = #ranges whose start <= its last byte.
// For an address in bucket j, the range with the greatest start <= address therefore has
// sorted index in [lo - 1, hi - 1], and only the starts in records_[lo, hi) need comparing
// (a binary search; usually none or one). nb is the power of two >= 2n and shift the smallest
// that puts the last byte of the highest range inside bucket nb - 1; addresses past the index
// lie above every range.
class DevicePrivateSpace::LookupTable {
 public:
  explicit LookupTable(size_t capacity)
      : capacity_(capacity),
        records_(new Record[capacity]),
        buckets_(new std::atomic<uint64_t>[2 * capacity]) {}

  size_t capacity() const { return capacity_; }

  // Writer side: stores the contents of `ranges` (at most capacity() of them) with release
  // stores.
  void fill(const std::map<uint64_t, Entry>& ranges) {
    const size_t n = ranges.size();
    assert(n <= capacity_ && "lookup table too small");
    size_t i = 0;
    std::vector<uint64_t> starts;
    starts.reserve(n);
    for (const auto& [start, e] : ranges) {
      records_[i].start.store(start, kRelease);
      records_[i].last.store(e.last, kRelease);
      records_[i].pgmap.store(e.pgmap, kRelease);
      starts.push_back(start);
      ++i;
    }
    const uint64_t highest = n == 0 ? 0 : ranges.rbegin()->second.last;
    const uint64_t nb = std::bit_ceil(std::max<size_t>(2 * n, 1));
    assert(nb <= 2 * capacity_ && "bucket array too small");
    unsigned shift = 0;
    while ((highest >> shift) >= nb) ++shift;
    // Two pointers over the sorted starts; (nb << shift) cannot overflow since shift is
    // minimal: highest >= nb << (shift - 1) when shift > 0, and highest < 2^63.
    size_t lo = 0, hi = 0;
    for (uint64_t j = 0; j < nb; ++j) {
      const uint64_t first = j << shift;
      const uint64_t last = first + ((uint64_t{1} << shift) - 1);
      while (lo < n && starts[lo] <= first) ++lo;
      hi = std::max(hi, lo);
      while (hi < n && starts[hi] <= last) ++hi;
      buckets_[j].store(lo | (uint64_t{hi} << 32), kRelease);
    }
    shift_.store(shift, kRelease);
    nb_.store(nb, kRelease);
  }

  // Reader side, acquire loads only: 1 + the sorted index of the range whose start is the
  // greatest <= addr, 0 if none. Under a concurrent rewrite the answer may be wrong, but every
  // index stays inside the table (all stored lo/hi are <= the table's n <= capacity, and
  // nb <= 2 * capacity), so the search is always safe; the callers discard such answers.
  size_t find(uint64_t addr) const {
    const unsigned shift = shift_.load(kAcquire);
    const uint64_t j = addr >> shift;
    if (j >= nb_.load(kAcquire)) return 0;
    const uint64_t b = buckets_[j].load(kAcquire);
    uint64_t lo = b & 0xffffffffu;
    uint64_t hi = b >> 32;
    // Binary search in records_[lo, hi) for the first start > addr.
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      if (records_[mid].start.load(kAcquire) <= addr) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  // The range found by find(): REQUIRES 1 <= found <= capacity().
  uint64_t start(size_t found) const { return records_[found - 1].start.load(kAcquire); }
  uint64_t last(size_t found) const { return records_[found - 1].last.load(kAcquire); }
  DevPagemap* pgmap(size_t found) const { return records_[found - 1].pgmap.load(kAcquire); }

 private:
  struct Record {
    std::atomic<uint64_t> start{0};
    std::atomic<uint64_t> last{0};
    std::atomic<DevPagemap*> pgmap{nullptr};
  };

  const size_t capacity_;
  const std::unique_ptr<Record[]> records_;
  const std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // lo | hi << 32
  std::atomic<unsigned> shift_{0};
  std::atomic<uint64_t> nb_{0};  // 0 until the first fill: every address misses
};

DevicePrivateSpace::DevicePrivateSpace(unsigned max_physmem_bits)
    : max_(uint64_t{1} << max_physmem_bits) {
  assert(max_physmem_bits >= 32 && max_physmem_bits <= 62 && "MAX_PHYSMEM_BITS out of range");
  WriteLocker guard(lock_);
  publish_locked();
}

DevicePrivateSpace::~DevicePrivateSpace() = default;

void DevicePrivateSpace::publish_locked() {
  const size_t n = ranges_.size();
  LookupTable* table = tables_.empty() ? nullptr : tables_.back().get();
  const bool grow = table == nullptr || n > table->capacity();
  if (grow) {
    // Not yet visible to readers: fill it before the odd window.
    tables_.push_back(std::make_unique<LookupTable>(std::max(kMinCapacity, std::bit_ceil(n))));
    table = tables_.back().get();
    table->fill(ranges_);
  }
  // Only writers store seq_, and they hold lock_: a plain read-modify-write is enough.
  const uint64_t s = seq_.load(kRelaxed);
  seq_.store(s + 1, kRelaxed);  // ordered before the release stores that follow
  if (grow) {
    table_.store(table, kRelease);
  } else {
    table->fill(ranges_);
  }
  seq_.store(s + 2, kRelease);
}

Result<uint64_t> DevicePrivateSpace::alloc_range(DevPagemap* pgmap, uint64_t size) {
  if (pgmap == nullptr) {
    return make_error(Errno::kEINVAL, "mtree_alloc_range: null entry");
  }
  // mas_empty_area: size 0, or max - min < size - 1 (min is 0 here).
  if (size == 0 || max_ < size - 1) {
    return make_error(Errno::kEINVAL,
                      "mtree_alloc_range: a range of {:#x} bytes cannot fit the device private "
                      "address space [0, {:#x}]",
                      size, max_);
  }
  WriteLocker guard(lock_);
  // Walk the gaps in address order; the first that fits is the lowest.
  uint64_t gap_start = 0;
  for (const auto& [start, e] : ranges_) {
    if (start > gap_start && start - gap_start >= size) break;
    gap_start = e.last + 1;
  }
  // The candidate [gap_start, gap_start + size - 1] must end at or below max_.
  if (gap_start > max_ || max_ - gap_start < size - 1) {
    return make_error(Errno::kEBUSY,
                      "mtree_alloc_range: no free range of {:#x} bytes in the device private "
                      "address space [0, {:#x}] ({} ranges allocated)",
                      size, max_, ranges_.size());
  }
  ranges_.emplace(gap_start, Entry{gap_start + size - 1, pgmap});
  publish_locked();
  return gap_start;
}

std::map<uint64_t, DevicePrivateSpace::Entry>::const_iterator DevicePrivateSpace::find_locked(
    uint64_t addr) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return ranges_.end();
  --it;
  return addr <= it->second.last ? it : ranges_.end();
}

Result<DevPagemap*> DevicePrivateSpace::erase(uint64_t addr) {
  WriteLocker guard(lock_);
  auto it = find_locked(addr);
  if (it == ranges_.end()) {
    return make_error(Errno::kENOENT, "mtree_erase: no device private range holds {:#x}", addr);
  }
  DevPagemap* owner = it->second.pgmap;
  ranges_.erase(it);
  publish_locked();
  return owner;
}

template <typename Fn>
auto DevicePrivateSpace::read_table(Fn fn) const {
  for (;;) {
    const uint64_t s0 = seq_.load(kAcquire);
    if ((s0 & 1) != 0) {
      cpu_relax();
      continue;
    }
    // Acquire: a table published by a finished write (s0 even) is seen complete.
    const auto r = fn(*table_.load(kAcquire));
    // fn's acquire loads keep this load after them (the header's argument).
    if (seq_.load(kRelaxed) == s0) return r;
  }
}

std::optional<DevicePrivateRange> DevicePrivateSpace::load(uint64_t addr) const {
  return read_table([addr](const LookupTable& t) -> std::optional<DevicePrivateRange> {
    const size_t found = t.find(addr);
    if (found == 0) return std::nullopt;
    const DevicePrivateRange r{t.start(found), t.last(found), t.pgmap(found)};
    if (addr < r.start || addr > r.last) return std::nullopt;
    return r;
  });
}

DevPagemap* DevicePrivateSpace::load_pgmap(uint64_t addr) const {
  return read_table([addr](const LookupTable& t) -> DevPagemap* {
    const size_t found = t.find(addr);
    if (found == 0 || addr > t.last(found)) return nullptr;
    return t.pgmap(found);
  });
}

size_t DevicePrivateSpace::nr_ranges() const {
  ReadLocker guard(lock_);
  return ranges_.size();
}

std::vector<DevicePrivateRange> DevicePrivateSpace::ranges() const {
  ReadLocker guard(lock_);
  std::vector<DevicePrivateRange> out;
  out.reserve(ranges_.size());
  for (const auto& [start, e] : ranges_) out.push_back({start, e.last, e.pgmap});
  return out;
}

}  // namespace dpmm::devmem
