// Why a connection closed: one enum for logs, metrics and watch events (DESIGN.md §3).
#pragma once

#include <string_view>

namespace connwarden::network {

// kPeerClosed also covers a reset by the peer, and a close the peer asked for
// (`Connection: close`, HTTP/1.0 without keep-alive).
enum class CloseReason {
  kNone = 0,
  kPeerClosed,
  kIdleTimeout,
  kHeaderTimeout,
  kRequestTimeout,
  kWriteTimeout,
  kMaxAge,
  kMaxRequests,
  kDrained,
  kKilled,
  kProtocolError,
  kTlsError,
  kUpstreamError,
  kShutdown,
  kOverload,
};

constexpr std::string_view closeReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kNone: return "none";
    case CloseReason::kPeerClosed: return "peer_closed";
    case CloseReason::kIdleTimeout: return "idle_timeout";
    case CloseReason::kHeaderTimeout: return "header_timeout";
    case CloseReason::kRequestTimeout: return "request_timeout";
    case CloseReason::kWriteTimeout: return "write_timeout";
    case CloseReason::kMaxAge: return "max_age";
    case CloseReason::kMaxRequests: return "max_requests";
    case CloseReason::kDrained: return "drained";
    case CloseReason::kKilled: return "killed";
    case CloseReason::kProtocolError: return "protocol_error";
    case CloseReason::kTlsError: return "tls_error";
    case CloseReason::kUpstreamError: return "upstream_error";
    case CloseReason::kShutdown: return "shutdown";
    case CloseReason::kOverload: return "overload";
  }
  return "unknown";
}

}  // namespace connwarden::network
