// One client connection speaking HTTP: it owns the downstream Connection, the codec and the
// request being proxied (a ProxyStream), and runs the connection's timers.
//
//   accept ─▶ HANDSHAKE (TLS) ─▶ IDLE ──first byte──▶ ACTIVE ──response done──▶ IDLE ─▶ …
//                                  │                    │ 101
//                                  │                    ▼
//                                  │                  TUNNEL (bytes both ways)
//                                  └── idle / header / tunnel-idle timeout, error, peer close ─▶ closed
//
// The layer above (conn/) learns every state change and the close through SessionObserver.
// Worker thread only.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "sidecar/event/dispatcher.h"
#include "sidecar/http/codec.h"
#include "sidecar/http/router.h"
#include "sidecar/http/upstream_pool.h"
#include "sidecar/network/connection.h"
#include "sidecar/network/listener_config.h"

namespace connwarden::http {

// What every session of one worker shares: routing and the upstream pools.
struct WorkerHttpContext {
  event::Dispatcher& dispatcher;
  const Router& router;
  std::vector<std::unique_ptr<UpstreamPool>>& pools;  // by cluster index
};

enum class SessionState { kHandshake, kIdle, kActive, kTunnel, kDraining };
std::string_view sessionStateName(SessionState state);

class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void onSessionStateChanged(SessionState state) = 0;
  // The route of the latest request (null: no route matched).
  virtual void onRequestRouted(const Route* route) = 0;
  // A request/response exchange finished (counted in `requests served`).
  virtual void onRequestComplete() = 0;
  // The socket is closed. The observer may hand the session to deferred deletion now.
  virtual void onSessionClosed(network::CloseReason reason) = 0;
};

class ProxyStream;

class ServerSession : private network::ConnectionCallbacks, private ServerCodecCallbacks {
 public:
  ServerSession(WorkerHttpContext& context, const network::ListenerConfig& listener,
                network::ConnectionPtr connection, SessionObserver& observer);
  ~ServerSession() override;

  SessionState state() const { return state_; }
  network::Connection& connection() { return *connection_; }
  const network::ListenerConfig& listener() const { return listener_; }
  WorkerHttpContext& context() { return context_; }
  // The client's IP as text, for X-Forwarded-For (formatted once per connection).
  const std::string& clientIp();

  // Closes the client connection now (abortive when `abort`), cancelling any request in
  // flight; its upstream connection is discarded.
  void close(network::CloseReason reason, bool abort);
  // Graceful close: an idle connection closes now; a request in flight completes with
  // `Connection: close` and pipelined requests not yet started are dropped; a tunnel is left to
  // its peers. `reason` is recorded (drained, shutdown).
  void drain(network::CloseReason reason);

  // --- For ProxyStream ---
  void setRoute(const Route* route) { observer_.onRequestRouted(route); }
  // The response was 101: the connection becomes a byte tunnel to `stream`'s upstream.
  void startTunnel();
  // Bytes from the upstream in tunnel mode.
  void writeTunnel(network::Buffer& data, bool end_stream);
  // The exchange failed after the response started: the client cannot be told in-band.
  void resetAfterResponseStarted(network::CloseReason reason);
  void readDisableDownstream(bool disable);

 private:
  // network::ConnectionCallbacks
  void onData(network::Buffer& data, bool end_stream) override;
  void onEvent(network::ConnectionEvent event) override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  // ServerCodecCallbacks
  RequestDecoder& newStream(ResponseEncoder& encoder) override;
  void onStreamComplete(ResponseEncoder& encoder) override;
  void writeToConnection(network::Buffer& data, bool end_stream) override;

  void dispatchRequests();
  void onCodecError();
  void setState(SessionState state);
  void armTimer();
  void onTimer();
  void destroyStream();

  WorkerHttpContext& context_;
  const network::ListenerConfig& listener_;
  network::ConnectionPtr connection_;
  SessionObserver& observer_;
  std::unique_ptr<ServerCodec> codec_;
  std::unique_ptr<ProxyStream> stream_;
  std::unique_ptr<event::Timer> timer_;         // idle, header or tunnel-idle timeout
  std::unique_ptr<event::Timer> resume_timer_;  // pipelined requests, after a response
  std::string client_ip_;
  SessionState state_ = SessionState::kHandshake;
  network::CloseReason timer_reason_ = network::CloseReason::kNone;
  network::CloseReason drain_reason_ = network::CloseReason::kNone;
  bool downstream_end_stream_ = false;
  bool upstream_end_stream_ = false;
  bool pipeline_read_disabled_ = false;
  bool downstream_write_blocked_ = false;
  bool closed_ = false;
};

}  // namespace connwarden::http
