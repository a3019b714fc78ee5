#include "sidecar/event/log.h"

#include <time.h>

#include <cstdio>
#include <string>

namespace connwarden::event {

std::atomic<int> g_log_level{static_cast<int>(LogLevel::kInfo)};

void setLogLevel(LogLevel level) { g_log_level.store(static_cast<int>(level)); }

bool parseLogLevel(std::string_view text, LogLevel* level) {
  if (text == "debug") *level = LogLevel::kDebug;
  else if (text == "info") *level = LogLevel::kInfo;
  else if (text == "warn") *level = LogLevel::kWarn;
  else if (text == "error") *level = LogLevel::kError;
  else if (text == "off") *level = LogLevel::kOff;
  else return false;
  return true;
}

void logLine(LogLevel level, std::string_view message) {
  static constexpr const char* kNames[] = {"debug", "info", "warn", "error", "off"};
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc;
  gmtime_r(&now.tv_sec, &utc);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  // One fprintf per line: stdio locks the stream, so lines from workers never interleave.
  std::fprintf(stderr, "%s.%03ldZ %s %.*s\n", stamp, now.tv_nsec / 1000000,
               kNames[static_cast<int>(level)], static_cast<int>(message.size()),
               message.data());
}

}  // namespace connwarden::event
