// Result<T>: a value or an Error carrying a Linux errno and a message in words.
//
// Modelled on zx::result / ErrorOr: fallible operations return Result<T> (never out-parameters),
// callers propagate with TRY and assert impossibility with MUST. The errno numbers are Linux's,
// so a failure reads as the kernel would report it ("ERANGE (-34)").
#pragma once

#include <cassert>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace dpmm {

// Linux errno values (include/uapi/asm-generic/errno-base.h and errno.h).
enum class Errno : int {
  kEPERM = 1,
  kENOENT = 2,
  kEIO = 5,
  kENXIO = 6,
  kE2BIG = 7,
  kEBADF = 9,
  kEAGAIN = 11,
  kENOMEM = 12,
  kEACCES = 13,
  kEFAULT = 14,
  kEBUSY = 16,
  kEEXIST = 17,
  kENODEV = 19,
  kEINVAL = 22,
  kENOSPC = 28,
  kERANGE = 34,
  kENOSYS = 38,
  kEOVERFLOW = 75,
  kEOPNOTSUPP = 95,
  kEHWPOISON = 133,
};

// "ERANGE" for Errno::kERANGE; "E?" for a value not in the table.
std::string_view errno_name(Errno e);
// The number as the kernel returns it (negative).
constexpr int errno_neg(Errno e) { return -static_cast<int>(e); }

class Error {
 public:
  Error(Errno code, std::string message) : code_(code), message_(std::move(message)) {}
  Errno code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ERANGE (-34): no free 128 MiB-aligned window ..."
  std::string to_string() const;

 private:
  Errno code_;
  std::string message_;
};

// Builds an Error with a fmt-formatted message.
template <typename... Args>
Error make_error(Errno code, fmt::format_string<Args...> f, Args&&... args) {
  return Error(code, fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  using ValueType = T;
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool is_ok() const { return v_.index() == 0; }
  bool is_error() const { return v_.index() == 1; }
  explicit operator bool() const { return is_ok(); }

  T& value() & {
    check_ok();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check_ok();
    return std::get<0>(v_);
  }
  T&& value() && {
    check_ok();
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& {
    assert(is_error() && "Result::error() on a value");
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(is_error() && "Result::error() on a value");
    return std::get<1>(std::move(v_));
  }

 private:
  void check_ok() const {
    if (is_ok()) return;
    // Using a value that is not there is a programming error; say which error it was.
    std::fprintf(stderr, "dpmm: Result::value() on error: %s\n",
                 std::get<1>(v_).to_string().c_str());
    std::abort();
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  using ValueType = void;
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool is_ok() const { return ok_; }
  bool is_error() const { return !ok_; }
  explicit operator bool() const { return ok_; }
  void value() const {
    if (ok_) return;
    std::fprintf(stderr, "dpmm: Result<void>::value() on error: %s\n", error_.to_string().c_str());
    std::abort();
  }
  const Error& error() const& {
    assert(!ok_ && "Result::error() on success");
    return error_;
  }
  Error&& error() && {
    assert(!ok_ && "Result::error() on success");
    return std::move(error_);
  }

 private:
  Error error_{Errno::kEINVAL, ""};
  bool ok_ = true;
};

using Status = Result<void>;
inline Status ok() { return Status(); }

namespace detail {
template <typename T>
decltype(auto) result_release_value(Result<T>&& r) {
  if constexpr (std::is_void_v<T>) {
    return;
  } else {
    return std::move(r).value();
  }
}
}  // namespace detail

}  // namespace dpmm

// TRY(expr): evaluates a Result; on error returns the Error from the enclosing function,
// otherwise yields the value. Uses a GNU statement expression (GCC and Clang).
#define TRY(expr)                                                   \
  ({                                                                \
    auto _dpmm_try_result = (expr);                                 \
    if (_dpmm_try_result.is_error()) [[unlikely]]                   \
      return std::move(_dpmm_try_result).error();                   \
    ::dpmm::detail::result_release_value(std::move(_dpmm_try_result)); \
  })

// MUST(expr, why): the caller knows the operation cannot fail and says why; aborts if it does.
#define MUST(expr, why)                                             \
  ({                                                                \
    auto _dpmm_must_result = (expr);                                \
    if (_dpmm_must_result.is_error()) [[unlikely]] {                \
      std::fprintf(stderr, "dpmm: MUST failed (%s): %s\n", why,     \
                   _dpmm_must_result.error().to_string().c_str());  \
      std::abort();                                                 \
    }                                                               \
    ::dpmm::detail::result_release_value(std::move(_dpmm_must_result)); \
  })
