// Bit-set operators for flag enums (enum class with one bit per enumerator):
//   enum class Prot : uint16_t { kNone = 0, kWrite = 1 << 0, ... };
//   DPMM_FLAG_OPS(Prot)
// gives |, &, ~, |=, &=, has(set, bits) (every bit of `bits` is in `set`) and
// has_any(set, bits), defined in the enum's own namespace so argument-dependent lookup finds
// them.
#pragma once

#include <type_traits>

#define DPMM_FLAG_OPS(E)                                                                  \
  constexpr E operator|(E a, E b) {                                                       \
    using U = std::underlying_type_t<E>;                                                  \
    return static_cast<E>(static_cast<U>(static_cast<U>(a) | static_cast<U>(b)));       \
  }                                                                                       \
  constexpr E operator&(E a, E b) {                                                       \
    using U = std::underlying_type_t<E>;                                                  \
    return static_cast<E>(static_cast<U>(static_cast<U>(a) & static_cast<U>(b)));       \
  }                                                                                       \
  constexpr E operator~(E a) {                                                            \
    using U = std::underlying_type_t<E>;                                                  \
    return static_cast<E>(static_cast<U>(~static_cast<U>(a)));                           \
  }                                                                                       \
  constexpr E& operator|=(E& a, E b) { return a = a | b; }                                \
  constexpr E& operator&=(E& a, E b) { return a = a & b; }                                \
  [[maybe_unused]] constexpr bool has(E set, E bits) { return (set & bits) == bits; }     \
  [[maybe_unused]] constexpr bool has_any(E set, E bits) {                                \
    return static_cast<std::underlying_type_t<E>>(set & bits) != 0;                       \
  }
