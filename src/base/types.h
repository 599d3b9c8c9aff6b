// Strong types for every address-space quantity dpmm handles.
//
// Each quantity is its own type with an explicit constructor and only the arithmetic that
// means something:
//   PhysAddr ± bytes, PhysAddr - PhysAddr -> bytes
//   VirtAddr ± bytes, VirtAddr - VirtAddr -> bytes
//   Pfn ± PageCount, Pfn - Pfn -> PageCount
//   DevPrivOffset ± PageCount, DevPrivOffset - DevPrivOffset -> PageCount
//   PageCount ± PageCount, PageCount * n
// A Pfn and a DevPrivOffset never convert into each other: a device-private offset indexes the
// device private address space of the 2026 series, not the physical address space, and handing
// one to a PFN API is the bug class the series guards against with tags.
#pragma once

#include <cassert>
#include <compare>
#include <cstdint>
#include <fmt/format.h>

namespace dpmm {

// Both modelled arches use 4 KiB base pages; arch/ static_asserts that it agrees.
inline constexpr unsigned kPageShift = 12;
inline constexpr uint64_t kPageSize = uint64_t{1} << kPageShift;

class PageCount {
 public:
  constexpr PageCount() = default;
  explicit constexpr PageCount(uint64_t n) : n_(n) {}
  constexpr uint64_t raw() const { return n_; }
  constexpr uint64_t to_bytes() const { return n_ << kPageShift; }
  // Pages needed to hold `bytes`, rounding up (DIV_ROUND_UP(size, PAGE_SIZE)).
  static constexpr PageCount from_bytes_round_up(uint64_t bytes) {
    return PageCount((bytes + kPageSize - 1) >> kPageShift);
  }
  constexpr PageCount operator+(PageCount o) const { return PageCount(n_ + o.n_); }
  constexpr PageCount operator-(PageCount o) const {
    assert(o.n_ <= n_ && "PageCount underflow");
    return PageCount(n_ - o.n_);
  }
  constexpr PageCount operator*(uint64_t k) const { return PageCount(n_ * k); }
  constexpr PageCount& operator+=(PageCount o) { return *this = *this + o; }
  constexpr PageCount& operator-=(PageCount o) { return *this = *this - o; }
  constexpr auto operator<=>(const PageCount&) const = default;

 private:
  uint64_t n_ = 0;
};

// A buddy/folio order: a block of 2^order base pages.
class Order {
 public:
  constexpr Order() = default;
  explicit constexpr Order(unsigned o) : o_(o) { assert(o < 64 && "order out of range"); }
  constexpr unsigned raw() const { return o_; }
  constexpr PageCount pages() const { return PageCount(uint64_t{1} << o_); }
  constexpr uint64_t to_bytes() const { return pages().to_bytes(); }
  constexpr auto operator<=>(const Order&) const = default;

 private:
  unsigned o_ = 0;
};

class PhysAddr {
 public:
  constexpr PhysAddr() = default;
  explicit constexpr PhysAddr(uint64_t a) : a_(a) {}
  constexpr uint64_t raw() const { return a_; }
  constexpr bool is_page_aligned() const { return (a_ & (kPageSize - 1)) == 0; }
  constexpr PhysAddr page_base() const { return PhysAddr(a_ & ~(kPageSize - 1)); }
  constexpr uint64_t offset_in_page() const { return a_ & (kPageSize - 1); }
  constexpr PhysAddr operator+(uint64_t bytes) const { return PhysAddr(a_ + bytes); }
  constexpr PhysAddr operator-(uint64_t bytes) const {
    assert(bytes <= a_ && "PhysAddr underflow");
    return PhysAddr(a_ - bytes);
  }
  constexpr uint64_t operator-(PhysAddr o) const {
    assert(o.a_ <= a_ && "PhysAddr difference underflow");
    return a_ - o.a_;
  }
  constexpr auto operator<=>(const PhysAddr&) const = default;

 private:
  uint64_t a_ = 0;
};

class VirtAddr {
 public:
  constexpr VirtAddr() = default;
  explicit constexpr VirtAddr(uint64_t a) : a_(a) {}
  constexpr uint64_t raw() const { return a_; }
  constexpr bool is_aligned(uint64_t align) const { return (a_ & (align - 1)) == 0; }
  constexpr bool is_page_aligned() const { return is_aligned(kPageSize); }
  constexpr VirtAddr align_down(uint64_t align) const { return VirtAddr(a_ & ~(align - 1)); }
  constexpr VirtAddr align_up(uint64_t align) const {
    return VirtAddr((a_ + align - 1) & ~(align - 1));
  }
  constexpr VirtAddr page_base() const { return align_down(kPageSize); }
  constexpr uint64_t offset_in_page() const { return a_ & (kPageSize - 1); }
  constexpr VirtAddr operator+(uint64_t bytes) const { return VirtAddr(a_ + bytes); }
  constexpr VirtAddr operator-(uint64_t bytes) const {
    assert(bytes <= a_ && "VirtAddr underflow");
    return VirtAddr(a_ - bytes);
  }
  constexpr uint64_t operator-(VirtAddr o) const {
    assert(o.a_ <= a_ && "VirtAddr difference underflow");
    return a_ - o.a_;
  }
  constexpr VirtAddr& operator+=(uint64_t bytes) { return *this = *this + bytes; }
  constexpr auto operator<=>(const VirtAddr&) const = default;

 private:
  uint64_t a_ = 0;
};

// A page frame number: an index into the physical address space in base pages.
class Pfn {
 public:
  constexpr Pfn() = default;
  explicit constexpr Pfn(uint64_t n) : n_(n) {}
  static constexpr Pfn from_phys(PhysAddr a) { return Pfn(a.raw() >> kPageShift); }
  constexpr uint64_t raw() const { return n_; }
  constexpr PhysAddr to_phys() const { return PhysAddr(n_ << kPageShift); }
  constexpr Pfn operator+(PageCount c) const { return Pfn(n_ + c.raw()); }
  constexpr Pfn operator-(PageCount c) const {
    assert(c.raw() <= n_ && "Pfn underflow");
    return Pfn(n_ - c.raw());
  }
  constexpr PageCount operator-(Pfn o) const {
    assert(o.n_ <= n_ && "Pfn difference underflow");
    return PageCount(n_ - o.n_);
  }
  constexpr Pfn& operator+=(PageCount c) { return *this = *this + c; }
  constexpr auto operator<=>(const Pfn&) const = default;

 private:
  uint64_t n_ = 0;
};

// An index, in base pages, into the device private address space of the 2026 series
// ([0, 2^MAX_PHYSMEM_BITS) bytes). Numerically it overlaps real PFNs, which is exactly why it
// is a different type: nothing converts it to a Pfn or a PhysAddr.
class DevPrivOffset {
 public:
  constexpr DevPrivOffset() = default;
  explicit constexpr DevPrivOffset(uint64_t n) : n_(n) {}
  constexpr uint64_t raw() const { return n_; }
  // Byte position of the page in the device private address space.
  constexpr uint64_t to_bytes() const { return n_ << kPageShift; }
  constexpr DevPrivOffset operator+(PageCount c) const { return DevPrivOffset(n_ + c.raw()); }
  constexpr DevPrivOffset operator-(PageCount c) const {
    assert(c.raw() <= n_ && "DevPrivOffset underflow");
    return DevPrivOffset(n_ - c.raw());
  }
  constexpr PageCount operator-(DevPrivOffset o) const {
    assert(o.n_ <= n_ && "DevPrivOffset difference underflow");
    return PageCount(n_ - o.n_);
  }
  constexpr auto operator<=>(const DevPrivOffset&) const = default;

 private:
  uint64_t n_ = 0;
};

}  // namespace dpmm

template <>
struct fmt::formatter<dpmm::PhysAddr> : fmt::formatter<std::string_view> {
  auto format(dpmm::PhysAddr a, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "P{:#x}", a.raw());
  }
};
template <>
struct fmt::formatter<dpmm::VirtAddr> : fmt::formatter<std::string_view> {
  auto format(dpmm::VirtAddr a, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "V{:#x}", a.raw());
  }
};
template <>
struct fmt::formatter<dpmm::Pfn> : fmt::formatter<std::string_view> {
  auto format(dpmm::Pfn p, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "pfn:{:#x}", p.raw());
  }
};
template <>
struct fmt::formatter<dpmm::DevPrivOffset> : fmt::formatter<std::string_view> {
  auto format(dpmm::DevPrivOffset o, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "dpoff:{:#x}", o.raw());
  }
};
template <>
struct fmt::formatter<dpmm::PageCount> : fmt::formatter<std::string_view> {
  auto format(dpmm::PageCount c, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{} pages", c.raw());
  }
};
template <>
struct fmt::formatter<dpmm::Order> : fmt::formatter<std::string_view> {
  auto format(dpmm::Order o, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "order-{}", o.raw());
  }
};
