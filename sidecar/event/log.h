// Logging to stderr, one line per event, with a process-wide level (--log-level). Cheap when a
// level is off: the message is not even formatted.
#pragma once

#include <atomic>
#include <string_view>

#include "absl/strings/str_format.h"

namespace connwarden::event {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

extern std::atomic<int> g_log_level;

inline bool logEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_log_level.load(std::memory_order_relaxed);
}
void setLogLevel(LogLevel level);
// Parses "debug", "info", "warn", "error", "off".
bool parseLogLevel(std::string_view text, LogLevel* level);
void logLine(LogLevel level, std::string_view message);

}  // namespace connwarden::event

#define CW_LOG(level, ...)                                                                 \
  do {                                                                                     \
    if (::connwarden::event::logEnabled(::connwarden::event::LogLevel::level)) {          \
      ::connwarden::event::logLine(::connwarden::event::LogLevel::level,                  \
                                   ::absl::StrFormat(__VA_ARGS__));                       \
    }                                                                                      \
  } while (0)
