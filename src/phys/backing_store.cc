#include "phys/backing_store.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/bits.h"
#include "base/size.h"

namespace dpmm::phys {

namespace {

// Pages asked of mincore() per call: bounds the vector it fills to 64 KiB.
constexpr uint64_t kMincoreChunkPages = uint64_t{1} << 16;

}  // namespace

Result<std::unique_ptr<BackingStore>> BackingStore::create(std::span<const PhysRange> ram) {
  std::vector<PhysRange> sorted;
  for (const PhysRange& r : ram) {
    if (r.end < r.start) return make_error(Errno::kEINVAL, "RAM range {} ends before it starts", r);
    // Whole pages only, as memblock keeps only the whole pages of a RAM range.
    const uint64_t lo = bits::align_up(r.start.raw(), kPageSize);
    if (r.end.raw() == ~uint64_t{0}) {
      return make_error(Errno::kEINVAL, "RAM range {} reaches 2^64", r);
    }
    const uint64_t hi_excl = bits::align_down(r.end.raw() + 1, kPageSize);
    if (lo < r.start.raw() || hi_excl <= lo) continue;  // wrapped, or no whole page inside
    sorted.push_back(PhysRange{PhysAddr(lo), PhysAddr(hi_excl - 1)});
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const PhysRange& a, const PhysRange& b) { return a.start < b.start; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1].overlaps(sorted[i])) {
      return make_error(Errno::kEINVAL, "RAM ranges {} and {} overlap", sorted[i - 1], sorted[i]);
    }
  }
  std::unique_ptr<BackingStore> store(new BackingStore());
  for (const PhysRange& r : sorted) {
    void* p = mmap(nullptr, r.size(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      return make_error(Errno::kENOMEM, "cannot map {} of RAM for {}: {}", format_size(r.size()),
                        r, std::strerror(err));
    }
    // Best effort: without THP control a touch may cost 2 MiB instead of 4 KiB.
    (void)madvise(p, r.size(), MADV_NOHUGEPAGE);
    store->maps_.push_back(Mapping{r, static_cast<std::byte*>(p)});
    store->ranges_.push_back(r);
  }
  return store;
}

BackingStore::~BackingStore() {
  for (const Mapping& m : maps_) munmap(m.base, m.range.size());
}

const BackingStore::Mapping* BackingStore::find(PhysAddr addr) const {
  auto it = std::upper_bound(maps_.begin(), maps_.end(), addr,
                             [](PhysAddr a, const Mapping& m) { return a < m.range.start; });
  if (it == maps_.begin()) return nullptr;
  --it;
  return it->range.contains(addr) ? &*it : nullptr;
}

Result<std::span<std::byte>> BackingStore::bytes(PhysAddr addr) const {
  const Mapping* m = find(addr);
  if (!m) return make_error(Errno::kEFAULT, "{} is not RAM", addr);
  std::byte* p = m->base + (addr - m->range.start);
  return std::span<std::byte>(p, kPageSize - addr.offset_in_page());
}

Result<std::span<std::byte>> BackingStore::page_bytes(Pfn pfn) const {
  const PhysAddr addr = pfn.to_phys();
  const Mapping* m = find(addr);
  if (!m) return make_error(Errno::kEFAULT, "{} ({}) is not RAM", pfn, addr);
  return std::span<std::byte>(m->base + (addr - m->range.start), kPageSize);
}

Status BackingStore::discard(Pfn pfn, PageCount count) const {
  if (count.raw() == 0) return ok();
  const PhysAddr start = pfn.to_phys();
  const Mapping* m = find(start);
  const PhysAddr last = (pfn + count).to_phys() - 1;
  if (!m || !m->range.contains(last)) {
    return make_error(Errno::kEFAULT, "discard of {} from {}: not inside one RAM range", count,
                      pfn);
  }
  if (madvise(m->base + (start - m->range.start), count.to_bytes(), MADV_DONTNEED) != 0) {
    const int err = errno;
    return make_error(Errno::kEIO, "madvise(MADV_DONTNEED) of {} from {}: {}", count, pfn,
                      std::strerror(err));
  }
  return ok();
}

uint64_t BackingStore::resident_bytes() const {
  std::vector<unsigned char> vec;
  uint64_t pages = 0;
  for (const Mapping& m : maps_) {
    const uint64_t total = m.range.size() >> kPageShift;
    for (uint64_t done = 0; done < total; done += kMincoreChunkPages) {
      const uint64_t n = std::min(kMincoreChunkPages, total - done);
      vec.resize(n);
      if (mincore(m.base + (done << kPageShift), n << kPageShift, vec.data()) != 0) continue;
      for (unsigned char v : vec) pages += v & 1;
    }
  }
  return pages << kPageShift;
}

uint64_t BackingStore::total_bytes() const {
  uint64_t total = 0;
  for (const PhysRange& r : ranges_) total += r.size();
  return total;
}

}  // namespace dpmm::phys
