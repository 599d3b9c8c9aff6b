#include "devmem/device_private_space.h"

#include <cassert>

namespace dpmm::devmem {

DevicePrivateSpace::DevicePrivateSpace(unsigned max_physmem_bits)
    : max_(uint64_t{1} << max_physmem_bits) {
  assert(max_physmem_bits >= 32 && max_physmem_bits <= 62 && "MAX_PHYSMEM_BITS out of range");
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
  return owner;
}

std::optional<DevicePrivateRange> DevicePrivateSpace::load(uint64_t addr) const {
  ReadLocker guard(lock_);
  auto it = find_locked(addr);
  if (it == ranges_.end()) return std::nullopt;
  return DevicePrivateRange{it->first, it->second.last, it->second.pgmap};
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
