// PfnOrOffset: a page index that is either a PFN or a device-private offset, with its tag.
//
// In the dpas designs a device-private entry holds an offset into the device private address
// space, which numerically overlaps real PFNs. Wherever a value may be either, it travels with
// its tag (as the series' MIGRATE_PFN_DEVICE_PRIVATE / HMM_PFN_DEVICE_PRIVATE do), and the only
// ways out are checked: to_pfn() refuses an offset and to_offset() refuses a PFN.
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "base/result.h"
#include "base/types.h"

namespace dpmm::arch {

class PfnOrOffset {
 public:
  enum class Tag : uint8_t { kPfn, kDevPrivOffset };

  static constexpr PfnOrOffset of_pfn(Pfn p) { return PfnOrOffset(Tag::kPfn, p.raw()); }
  static constexpr PfnOrOffset of_offset(DevPrivOffset o) {
    return PfnOrOffset(Tag::kDevPrivOffset, o.raw());
  }

  constexpr Tag tag() const { return tag_; }
  constexpr bool is_pfn() const { return tag_ == Tag::kPfn; }
  constexpr bool is_offset() const { return tag_ == Tag::kDevPrivOffset; }
  // The page index without its meaning: for bit packing and printing only.
  constexpr uint64_t raw_index() const { return index_; }

  // EINVAL when the value is a device-private offset.
  Result<Pfn> to_pfn() const {
    if (!is_pfn())
      return make_error(Errno::kEINVAL, "dpoff:{:#x} is a device-private offset, not a PFN",
                        index_);
    return Pfn(index_);
  }
  // EINVAL when the value is a PFN.
  Result<DevPrivOffset> to_offset() const {
    if (!is_offset())
      return make_error(Errno::kEINVAL, "pfn:{:#x} is a PFN, not a device-private offset",
                        index_);
    return DevPrivOffset(index_);
  }

  constexpr bool operator==(const PfnOrOffset&) const = default;

 private:
  constexpr PfnOrOffset(Tag t, uint64_t i) : index_(i), tag_(t) {}
  uint64_t index_;
  Tag tag_;
};

}  // namespace dpmm::arch

template <>
struct fmt::formatter<dpmm::arch::PfnOrOffset> : fmt::formatter<std::string_view> {
  auto format(const dpmm::arch::PfnOrOffset& v, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{}:{:#x}", v.is_pfn() ? "pfn" : "dpoff", v.raw_index());
  }
};
