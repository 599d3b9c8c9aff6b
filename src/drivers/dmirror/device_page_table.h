// The dmirror device page table: the kernel driver's `struct xarray pt`, indexed by virtual
// page number, holding tagged struct page pointers (lib/test_hmm.c):
//
//   untagged               read-only mapping        (xa_tag_pointer(page, 0))
//   DPT_XA_TAG_ATOMIC = 1  device-exclusive (atomic) mapping; readable, not writable
//   DPT_XA_TAG_WRITE  = 3  writable mapping
//
// The entries hold no page references: correctness rests on the MMU interval notifier, whose
// invalidate callback erases every entry of an invalidated range before the CPU side changes
// (dmirror_interval_invalidate). For a device-private page the entry holds the *backing*
// system page (rpage), whose bytes are the device page's data, as the kernel driver stores it.
//
// Not thread-safe by itself: the owning Dmirror guards it with its mutex (dmirror->mutex).
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

#include "page/page.h"

namespace dpmm::dmirror {

// The xarray pointer tags of lib/test_hmm.c.
enum class DptTag : uint8_t {
  kRead = 0,    // no tag: read-only
  kAtomic = 1,  // DPT_XA_TAG_ATOMIC
  kWrite = 3,   // DPT_XA_TAG_WRITE
};

// One xarray value: a page and its tag (xa_tag_pointer / xa_untag_pointer / xa_pointer_tag).
struct DptEntry {
  page::Page* page = nullptr;
  DptTag tag = DptTag::kRead;
  bool operator==(const DptEntry&) const = default;
};

class DevicePageTable {
 public:
  // xa_load: the entry at virtual page `vpn`, or null.
  const DptEntry* load(uint64_t vpn) const {
    auto it = map_.find(vpn);
    return it == map_.end() ? nullptr : &it->second;
  }
  // xa_store.
  void store(uint64_t vpn, DptEntry e) { map_[vpn] = e; }
  // xa_erase.
  void erase(uint64_t vpn) { map_.erase(vpn); }
  // xa_for_each_range(first, last) + xa_erase: erases every entry with first <= vpn <= last
  // (inclusive, as the kernel's xa_for_each_range is). Returns how many were erased.
  uint64_t erase_range(uint64_t first, uint64_t last) {
    if (first > last) return 0;
    auto lo = map_.lower_bound(first);
    auto hi = last == UINT64_MAX ? map_.end() : map_.upper_bound(last);
    const auto n = static_cast<uint64_t>(std::distance(lo, hi));
    map_.erase(lo, hi);
    return n;
  }
  // xa_destroy.
  void clear() { map_.clear(); }
  uint64_t size() const { return map_.size(); }
  // Every entry, in address order (tests).
  const std::map<uint64_t, DptEntry>& entries() const { return map_; }

 private:
  std::map<uint64_t, DptEntry> map_;
};

}  // namespace dpmm::dmirror
