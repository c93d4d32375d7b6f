#pragma once
/// \file
/// Status: the only error channel across the plugin boundary.

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace mambakit::sdk {

/// What kind of failure a Status reports. Values are stable (append only).
enum class StatusCode : std::int32_t {
  kOk = 0,
  kInvalidArgument = 1,  ///< the caller passed something the callee cannot accept
  kUnsupported = 2,      ///< valid request, but this component cannot serve it (device, dtype, size)
  kOutOfMemory = 3,      ///< an allocation failed
  kInternal = 4,         ///< a bug or an unexpected exception inside the component
  kDeviceError = 5,      ///< the accelerator runtime reported an error
};

/// Plain-data result of a call across the plugin boundary: a code and a message.
/// Trivially copyable, holds no pointers, so it stays valid after the plugin that made it
/// is unloaded. Messages longer than kMessageCapacity-1 bytes are truncated.
struct Status {
  static constexpr std::size_t kMessageCapacity = 480;

  StatusCode code = StatusCode::kOk;
  char message[kMessageCapacity] = {};

  /// True when the call succeeded.
  [[nodiscard]] bool ok() const noexcept { return code == StatusCode::kOk; }

  /// A success.
  static Status success() noexcept { return Status{}; }

  /// A failure with a printf-style message. Thread-safe; allocates nothing.
  [[gnu::format(printf, 2, 3)]] static Status error(StatusCode code, const char* format, ...) noexcept {
    Status status;
    status.code = code;
    va_list arguments;
    va_start(arguments, format);
    std::vsnprintf(status.message, kMessageCapacity, format, arguments);
    va_end(arguments);
    return status;
  }
};

/// Human-readable name of a status code ("ok", "invalid argument", ...). Static storage.
inline const char* status_code_name(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kInternal: return "internal error";
    case StatusCode::kDeviceError: return "device error";
  }
  return "unknown status";
}

}  // namespace mambakit::sdk

/// Returns from the enclosing function when `expr` yields a failed Status.
#define MAMBAKIT_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::mambakit::sdk::Status mambakit_status_ = (expr);   \
    if (!mambakit_status_.ok()) return mambakit_status_; \
  } while (false)
