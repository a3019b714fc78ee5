// One client connection speaking HTTP: it owns the downstream Connection, the codec and the
// request being proxied (a ProxyStream), and enforces the connection's policy with one timer.
//
//   accept ─▶ HANDSHAKE (TLS) ─▶ IDLE ──first byte──▶ ACTIVE ──response done──▶ IDLE ─▶ …
//                                 │  ▲                  │ 101         drain()
//                  hibernate.after│  │next bytes        ▼               ▼
//                                 ▼  │               TUNNEL         DRAINING ─▶ closed
//                              HIBERNATING
//   any state ── timeout (idle, header, request, write, tunnel idle), error, peer close ─▶ closed
//
// The timer always runs to the earliest deadline that applies in the current state (header,
// request, hibernate, idle, tunnel idle, max age, drain deadline); a policy change re-arms it.
// Hibernating frees the codec, the socket buffers and TLS's record buffers; the next bytes
// make them again. The observer may then take the socket away (detachSocket()) and destroy the
// session, to sleep without one; a new session resumes the connection (History) when bytes
// come.
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
#include "sidecar/http/policy.h"
#include "sidecar/http/request_stats.h"
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
  RequestStats* request_stats = nullptr;               // completed requests are counted here
};

enum class SessionState { kHandshake, kIdle, kActive, kTunnel, kDraining, kHibernating };
std::string_view sessionStateName(SessionState state);

class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void onSessionStateChanged(SessionState state) = 0;
  // The route of the latest request (null: no route matched).
  virtual void onRequestRouted(const Route* route) = 0;
  // A request/response exchange finished (counted in `requests served`).
  virtual void onRequestComplete() = 0;
  // The connection released its buffers (hibernated): memory may be given back to the system.
  virtual void onHibernated() = 0;
  // The socket is closed. The observer may hand the session to deferred deletion now.
  virtual void onSessionClosed(network::CloseReason reason) = 0;
};

class ProxyStream;

class ServerSession : public event::DeferredDeletable,
                      private network::ConnectionCallbacks,
                      private ServerCodecCallbacks {
 public:
  // What a session resuming a hibernated connection carries over from the one that slept.
  struct History {
    event::MonotonicTime opened_at;
    uint64_t requests_started = 0;
  };

  // `policy` must stay valid until replaced by setPolicy() or the session is destroyed.
  // With `history`, the connection is an idle one waking up, its transport connected.
  ServerSession(WorkerHttpContext& context, const network::ListenerConfig& listener,
                const ConnectionPolicy& policy, network::ConnectionPtr connection,
                SessionObserver& observer, const History* history = nullptr);
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
  // its peers. `reason` is recorded (drained, shutdown, max_age). At `deadline` (from now) the
  // drain becomes an abortive close; 0 means now. A second drain can only shorten the deadline.
  void drain(network::CloseReason reason, std::chrono::milliseconds deadline);
  bool draining() const { return drain_reason_ != network::CloseReason::kNone; }

  History history() const { return {opened_at_, requests_started_}; }
  // Only while hibernating (from SessionObserver::onHibernated): gives up the socket, quiet,
  // and becomes inert; the caller hands the session to deferred deletion. An empty socket (fd
  // -1) when the connection is not quiet after all; the session then goes on as it was.
  network::Connection::DetachedSocket detachSocket();

  // The policy to obey from now on (the route of the latest request, or a runtime change):
  // deadlines are recomputed at once.
  void setPolicy(const ConnectionPolicy& policy);
  const ConnectionPolicy& policy() const { return *policy_; }

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
  // What the timer does when it fires.
  enum class TimerAction { kNone, kClose, kHibernate, kStartDrain, kDrainDeadline };
  void armTimer();
  void onTimer();
  void destroyStream();
  void hibernate();
  // The codec (charged as codec memory) and the timer that resumes pipelined requests; both
  // are freed by hibernate and made again on waking.
  void createCodec();
  void wake();
  void enterIdle();

  WorkerHttpContext& context_;
  const network::ListenerConfig& listener_;
  network::ConnectionPtr connection_;
  SessionObserver& observer_;
  const ConnectionPolicy* policy_;
  event::Timer timer_;                  // the earliest deadline, see armTimer()
  std::unique_ptr<ServerCodec> codec_;  // null while hibernating
  std::unique_ptr<ProxyStream> stream_;
  std::unique_ptr<event::Timer> resume_timer_;  // pipelined requests, after a response
  std::string client_ip_;
  event::MonotonicTime opened_at_;
  event::MonotonicTime state_since_;       // entered IDLE / HIBERNATING; last tunnel bytes
  event::MonotonicTime request_started_;   // first byte of the current request
  event::MonotonicTime drain_deadline_;
  event::MonotonicTime hibernate_not_before_;
  uint64_t requests_started_ = 0;
  SessionState state_ = SessionState::kHandshake;
  TimerAction timer_action_ = TimerAction::kNone;
  network::CloseReason timer_reason_ = network::CloseReason::kNone;
  network::CloseReason drain_reason_ = network::CloseReason::kNone;
  bool request_received_ = false;  // the current request's head and body are all in
  bool tunnel_hibernated_ = false;
  bool downstream_end_stream_ = false;
  bool upstream_end_stream_ = false;
  bool pipeline_read_disabled_ = false;
  bool closed_ = false;
};

}  // namespace connwarden::http
