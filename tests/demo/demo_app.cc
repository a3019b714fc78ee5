// connwarden-demo-app: the HTTP/1.1 application that connwarden forwards to in `make run`, in the
// integration and e2e tests and in the benchmarks. Single-threaded, libevent bufferevents for I/O,
// llhttp for parsing. Every body is streamed with flow control in both directions, so a 100 GiB
// /bytes download or /echo upload costs a few hundred KiB of memory.
//
// Endpoints: /  /bytes?n=N[&chunked=1]  /slow?ms=M  /echo  /headers  /status?code=C  /close
//            /abort?after=K  /stall?at=head|body  /ws (WebSocket echo); anything else is 404.
//            /stall sends part of a response head, or a head and 10 of 1000 body bytes, and then
//            nothing until the peer leaves.
//
// One request is handled at a time per connection. The parser pauses at the end of every request
// and resumes only once that request's response is complete, so pipelined requests wait, unparsed,
// in the input buffer (bounded by the read high watermark) and responses leave in order:
//
//   headers complete --> response starts (head, and whatever body is ready)
//   message complete --> parser paused
//   response complete + message complete --> next request, or close, or WebSocket
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace connwarden::demo {
namespace {

// Reading stops while this much input is waiting (pipelined requests behind a slow response).
constexpr size_t kReadHighWater = 256 * 1024;
// Streaming bodies are refilled when the output drops to the low mark, up to the fill target.
constexpr size_t kWriteLowWater = 256 * 1024;
constexpr size_t kWriteFillTarget = 1024 * 1024;
// Request line plus header section; more is answered with 431.
constexpr size_t kMaxHeaderBytes = 64 * 1024;
// How long a connection we are closing keeps reading (and discarding) after our FIN, so that a
// client still sending does not get a RST that destroys our last response in its receive buffer.
constexpr timeval kLingerTimeout = {2, 0};
constexpr timeval kAcceptRetry = {0, 100 * 1000};

constexpr std::string_view kHello = "hello from connwarden demo\n";
constexpr std::string_view kWebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// /bytes and /abort bodies are slices of this: 'a'..'z' repeated, with 26 spare bytes so that a
// piece can start at any phase of the pattern.
constexpr size_t kPatternPiece = 64 * 1024;
char pattern[kPatternPiece + 26];

void appendPattern(evbuffer* out, uint64_t position, size_t length) {
  const char* data = pattern + position % 26;
  // References avoid a copy for big pieces; small ones are cheaper copied into the last chain.
  if (length >= 4096) {
    evbuffer_add_reference(out, data, length, nullptr, nullptr);
  } else {
    evbuffer_add(out, data, length);
  }
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the comma-separated list `value` holds `token` (Connection: keep-alive, Upgrade).
bool listHasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (equalsIgnoreCase(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::optional<std::string_view> queryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::optional<uint64_t> parseNumber(std::optional<std::string_view> text) {
  if (!text || text->empty()) return std::nullopt;
  uint64_t value;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return value;
}

void appendNumber(std::string& out, uint64_t value) {
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof(digits), value);
  out.append(digits, result.ptr);
}

void appendHex(std::string& out, uint64_t value) {
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof(digits), value, 16);
  out.append(digits, result.ptr);
}

std::string_view reasonPhrase(int status) {
  static constexpr std::pair<int, std::string_view> kReasons[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {204, "No Content"},
      {206, "Partial Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {413, "Content Too Large"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"}};
  for (const auto& [code, reason] : kReasons) {
    if (code == status) return reason;
  }
  return "Status";
}

class Connection;

// The process-wide state: event base, listener, access log and the set of live connections.
class Server {
 public:
  explicit Server(event_base* base);
  ~Server();

  event_base* base() const { return base_; }

  // Binds and listens; returns the bound port or 0 after printing why it failed.
  uint16_t listen(const std::string& address, uint16_t port);
  bool openAccessLog(const std::string& path);
  void logRequest(std::string_view method, std::string_view target);

  // Takes ownership of a closed connection and deletes it from the event loop, once whatever
  // callback closed it has returned.
  void deferredDelete(Connection* connection);

 private:
  static void onAccept(evconnlistener* listener, evutil_socket_t fd, sockaddr* peer, int peer_len,
                       void* arg);
  static void onAcceptError(evconnlistener* listener, void* arg);
  static void onAcceptRetry(evutil_socket_t, short, void* arg);
  static void onReap(evutil_socket_t, short, void* arg);

  event_base* base_;
  evconnlistener* listener_ = nullptr;
  event* accept_retry_ = nullptr;
  event* reaper_ = nullptr;
  int access_log_fd_ = -1;
  std::string log_line_;
  std::unordered_set<Connection*> live_;
  std::vector<Connection*> closed_;
};

// One accepted socket, from accept to close. Callbacks from libevent and llhttp land here; only
// close() ends it, and the object itself is deleted later by the Server.
class Connection {
 public:
  Connection(Server& server, evutil_socket_t fd);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  static const llhttp_settings_t* parserSettings();

 private:
  enum class Framing { kNone, kLength, kChunked, kUntilClose };
  struct Header {
    std::string name;
    std::string value;
  };

  evbuffer* input() const { return bufferevent_get_input(bev_); }
  evbuffer* output() const { return bufferevent_get_output(bev_); }
  bool http11() const { return parser_.http_major == 1 && parser_.http_minor >= 1; }

  // --- libevent callbacks.
  static void onReadable(bufferevent* bev, void* arg);
  static void onWritable(bufferevent* bev, void* arg);
  static void onEvent(bufferevent* bev, short what, void* arg);
  static void onTimer(evutil_socket_t, short, void* arg);

  // --- llhttp callbacks. They only record state and write to the output; they never close.
  static int onMessageBegin(llhttp_t* parser);
  static int onUrl(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderField(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderValue(llhttp_t* parser, const char* at, size_t length);
  static int onHeaderValueComplete(llhttp_t* parser);
  static int onHeadersComplete(llhttp_t* parser);
  static int onBody(llhttp_t* parser, const char* at, size_t length);
  static int onMessageComplete(llhttp_t* parser);

  // Parses and answers requests until it must wait for input, for the output to drain, or for a
  // timer. Called after every event that can unblock it.
  void process();
  void handleRequest();
  void handleParseError(llhttp_errno_t error);
  // Ends an exchange whose request and response are both complete. False if the connection
  // stops speaking HTTP/1.1 (closing, or now a WebSocket).
  bool finishExchange();
  bool countHeaderBytes(size_t length);
  const Header* findHeader(std::string_view name) const;

  void writeHead(int status, std::string_view content_type, Framing framing, uint64_t length,
                 std::string_view extra_headers = {});
  void respond(int status, std::string_view body);
  void writeBody(const char* data, size_t length);
  void endBody();
  void startPatternBody(uint64_t length, bool close_after);
  void pumpPatternBody();
  void startTimer(const timeval& timeout);

  void acceptWebSocket();
  void processWebSocket();
  void writeFrameHead(uint8_t first_byte, uint64_t length);
  void failWebSocket(uint16_t close_code);

  void blockReading();
  // Stops answering, flushes what is already written, then closes. With `linger`, the socket is
  // shut down for writing and kept reading (discarding) until the peer closes or a timeout.
  void closeAfterFlush(bool linger);
  void onFlushedForClose();
  // Closes now: frees the socket and timer, hands this object to Server::deferredDelete.
  void close();

  Server& server_;
  bufferevent* bev_;
  event* timer_ = nullptr;
  llhttp_t parser_;
  bool closed_ = false;
  bool peer_eof_ = false;
  bool read_blocked_ = false;
  bool draining_ = false;
  bool linger_ = false;
  bool write_shut_ = false;

  // The current exchange, reset by on_message_begin.
  std::string url_;
  std::vector<Header> headers_;  // the first header_count_ entries are this request's
  size_t header_count_ = 0;
  bool header_field_started_ = false;
  size_t header_bytes_ = 0;
  bool message_begun_ = false;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool echo_ = false;
  bool slow_pending_ = false;
  bool stalled_ = false;  // /stall: the response will never go on
  bool websocket_accepted_ = false;
  Framing framing_ = Framing::kNone;
  uint64_t pattern_left_ = 0;  // /bytes and /abort
  uint64_t pattern_position_ = 0;
  bool pattern_pumping_ = false;
  bool close_after_pattern_ = false;
  std::string scratch_;

  // WebSocket state, once the connection has switched protocols.
  bool websocket_ = false;
  uint64_t ws_payload_left_ = 0;  // of the data frame being streamed back
  uint8_t ws_mask_[4] = {};
  size_t ws_mask_offset_ = 0;
};

// --- Server -------------------------------------------------------------------------------------

Server::Server(event_base* base) : base_(base) {
  reaper_ = event_new(base_, -1, 0, &Server::onReap, this);
  accept_retry_ = evtimer_new(base_, &Server::onAcceptRetry, this);
}

Server::~Server() {
  for (Connection* connection : live_) delete connection;
  for (Connection* connection : closed_) delete connection;
  if (listener_ != nullptr) evconnlistener_free(listener_);
  event_free(accept_retry_);
  event_free(reaper_);
  if (access_log_fd_ >= 0) ::close(access_log_fd_);
}

uint16_t Server::listen(const std::string& address, uint16_t port) {
  sockaddr_storage storage = {};
  socklen_t length;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof(*v4);
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof(*v6);
  } else {
    std::fprintf(stderr, "invalid --address '%s': expected an IPv4 or IPv6 literal\n",
                 address.c_str());
    return 0;
  }
  listener_ =
      evconnlistener_new_bind(base_, &Server::onAccept, this,
                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
                              1024, reinterpret_cast<sockaddr*>(&storage), length);
  if (listener_ == nullptr) {
    std::fprintf(stderr, "cannot listen on %s port %u: %s\n", address.c_str(), port,
                 std::strerror(errno));
    return 0;
  }
  evconnlistener_set_error_cb(listener_, &Server::onAcceptError);
  sockaddr_storage bound = {};
  socklen_t bound_length = sizeof(bound);
  getsockname(evconnlistener_get_fd(listener_), reinterpret_cast<sockaddr*>(&bound), &bound_length);
  return ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                          : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
}

bool Server::openAccessLog(const std::string& path) {
  access_log_fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (access_log_fd_ < 0) {
    std::fprintf(stderr, "cannot open access log %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  return true;
}

void Server::logRequest(std::string_view method, std::string_view target) {
  if (access_log_fd_ < 0) return;
  log_line_.assign(method);
  log_line_ += ' ';
  log_line_ += target;
  log_line_ += '\n';
  // One write(2) on an O_APPEND descriptor: the line is in the file when tests look, and whole.
  if (::write(access_log_fd_, log_line_.data(), log_line_.size()) < 0) {
    std::fprintf(stderr, "access log write failed: %s\n", std::strerror(errno));
  }
}

void Server::deferredDelete(Connection* connection) {
  live_.erase(connection);
  closed_.push_back(connection);
  event_active(reaper_, 0, 0);
}

void Server::onAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto* self = static_cast<Server*>(arg);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  self->live_.insert(new Connection(*self, fd));
}

void Server::onAcceptError(evconnlistener* listener, void* arg) {
  auto* self = static_cast<Server*>(arg);
  const int error = EVUTIL_SOCKET_ERROR();
  std::fprintf(stderr, "accept failed: %s\n", evutil_socket_error_to_string(error));
  // Out of descriptors: the pending connection stays in the backlog and would wake us again at
  // once, so stop accepting for a moment instead of spinning.
  if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
    evconnlistener_disable(listener);
    evtimer_add(self->accept_retry_, &kAcceptRetry);
  }
}

void Server::onAcceptRetry(evutil_socket_t, short, void* arg) {
  evconnlistener_enable(static_cast<Server*>(arg)->listener_);
}

void Server::onReap(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  std::vector<Connection*> closed;
  closed.swap(self->closed_);
  for (Connection* connection : closed) delete connection;
}

// --- Connection: setup and libevent callbacks ---------------------------------------------------

const llhttp_settings_t* Connection::parserSettings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &Connection::onMessageBegin;
    s.on_url = &Connection::onUrl;
    s.on_header_field = &Connection::onHeaderField;
    s.on_header_value = &Connection::onHeaderValue;
    s.on_header_value_complete = &Connection::onHeaderValueComplete;
    s.on_headers_complete = &Connection::onHeadersComplete;
    s.on_body = &Connection::onBody;
    s.on_message_complete = &Connection::onMessageComplete;
    return s;
  }();
  return &settings;
}

Connection::Connection(Server& server, evutil_socket_t fd) : server_(server) {
  bev_ = bufferevent_socket_new(server_.base(), fd, BEV_OPT_CLOSE_ON_FREE);
  llhttp_init(&parser_, HTTP_REQUEST, parserSettings());
  parser_.data = this;
  bufferevent_setcb(bev_, &Connection::onReadable, &Connection::onWritable, &Connection::onEvent,
                    this);
  bufferevent_setwatermark(bev_, EV_READ, 0, kReadHighWater);
  bufferevent_setwatermark(bev_, EV_WRITE, kWriteLowWater, 0);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

Connection::~Connection() {
  if (timer_ != nullptr) event_free(timer_);
  if (bev_ != nullptr) bufferevent_free(bev_);
}

void Connection::onReadable(bufferevent*, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (self->draining_) {
    evbuffer_drain(self->input(), evbuffer_get_length(self->input()));
  } else if (self->websocket_) {
    self->processWebSocket();
  } else {
    self->process();
  }
}

void Connection::onWritable(bufferevent*, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (self->draining_) {
    if (!self->write_shut_ && evbuffer_get_length(self->output()) == 0) self->onFlushedForClose();
    return;
  }
  if (self->pattern_pumping_) self->pumpPatternBody();
  if (self->read_blocked_ && evbuffer_get_length(self->output()) <= kWriteLowWater) {
    self->read_blocked_ = false;
    bufferevent_enable(self->bev_, EV_READ);
  }
  if (self->websocket_) {
    self->processWebSocket();
  } else {
    self->process();
  }
}

void Connection::onEvent(bufferevent*, short what, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if ((what & BEV_EVENT_ERROR) != 0) {
    self->close();
    return;
  }
  if ((what & BEV_EVENT_EOF) == 0) return;
  self->peer_eof_ = true;
  if (self->draining_) {
    if (self->write_shut_) self->close();
    return;
  }
  // A peer that leaves during /slow or mid-WebSocket is gone for good: nobody waits for the rest.
  // Otherwise (a half-close after sending requests) the requests already received are answered.
  if (self->slow_pending_ || self->stalled_ || self->websocket_) {
    self->close();
    return;
  }
  self->process();
}

void Connection::onTimer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (self->draining_) {
    self->close();  // the linger time is over
    return;
  }
  if (!self->slow_pending_) return;
  self->slow_pending_ = false;
  self->respond(200, kHello);
  self->process();
}

void Connection::startTimer(const timeval& timeout) {
  if (timer_ == nullptr) timer_ = evtimer_new(server_.base(), &Connection::onTimer, this);
  evtimer_add(timer_, &timeout);
}

void Connection::blockReading() {
  read_blocked_ = true;
  bufferevent_disable(bev_, EV_READ);
}

void Connection::closeAfterFlush(bool linger) {
  if (draining_) return;
  draining_ = true;
  linger_ = linger;
  slow_pending_ = false;
  pattern_pumping_ = false;
  if (timer_ != nullptr) evtimer_del(timer_);
  // Keep reading (and discarding) while our last bytes go out: a peer blocked on sending to us
  // might otherwise never read them.
  read_blocked_ = false;
  bufferevent_enable(bev_, EV_READ);
  evbuffer_drain(input(), evbuffer_get_length(input()));
  if (evbuffer_get_length(output()) == 0) onFlushedForClose();
}

void Connection::onFlushedForClose() {
  if (!linger_ || peer_eof_) {
    close();
    return;
  }
  write_shut_ = true;
  shutdown(bufferevent_getfd(bev_), SHUT_WR);
  startTimer(kLingerTimeout);
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  if (timer_ != nullptr) {
    event_free(timer_);
    timer_ = nullptr;
  }
  bufferevent_free(bev_);
  bev_ = nullptr;
  server_.deferredDelete(this);
}

// --- Connection: HTTP/1.1 ------------------------------------------------------------------------

void Connection::process() {
  while (!closed_ && !draining_) {
    if (request_complete_) {
      if (!response_complete_) return;  // resumed by the timer or the write callback
      if (!finishExchange()) return;
      continue;
    }
    if (echo_ && evbuffer_get_length(output()) > kWriteFillTarget) {
      blockReading();  // resumed by the write callback
      return;
    }
    evbuffer_iovec chunk;
    if (evbuffer_peek(input(), -1, nullptr, &chunk, 1) < 1 || chunk.iov_len == 0) {
      // Nothing more will come. A request cut off mid-way gets whatever was already written.
      if (peer_eof_) closeAfterFlush(/*linger=*/false);
      return;
    }
    const char* data = static_cast<const char*>(chunk.iov_base);
    const llhttp_errno_t error = llhttp_execute(&parser_, data, chunk.iov_len);
    const size_t consumed = error == HPE_OK ? chunk.iov_len : llhttp_get_error_pos(&parser_) - data;
    evbuffer_drain(input(), consumed);
    if (error == HPE_OK || error == HPE_PAUSED) continue;
    if (error == HPE_PAUSED_UPGRADE) {
      // An upgrade we declined (say h2c, or CONNECT): carry on with HTTP/1.1.
      llhttp_resume_after_upgrade(&parser_);
      continue;
    }
    handleParseError(error);
    return;
  }
}

bool Connection::finishExchange() {
  if (websocket_accepted_) {
    websocket_ = true;
    processWebSocket();
    return false;
  }
  if (!keep_alive_) {
    closeAfterFlush(/*linger=*/!close_after_pattern_);
    return false;
  }
  message_begun_ = false;
  request_complete_ = false;
  response_started_ = false;
  response_complete_ = false;
  echo_ = false;
  close_after_pattern_ = false;
  framing_ = Framing::kNone;
  llhttp_resume(&parser_);
  return true;
}

void Connection::handleParseError(llhttp_errno_t error) {
  if (!response_started_) {
    keep_alive_ = false;
    head_request_ = false;
    respond(error == HPE_USER ? 431 : 400,
            error == HPE_USER ? "request header section too large\n" : "bad request\n");
  }
  // After a response has begun, the best we can do is stop: a truncated body tells the peer.
  closeAfterFlush(/*linger=*/true);
}

int Connection::onMessageBegin(llhttp_t* parser) {
  auto* self = static_cast<Connection*>(parser->data);
  self->url_.clear();
  self->header_count_ = 0;
  self->header_field_started_ = false;
  self->header_bytes_ = 0;
  self->message_begun_ = true;
  return 0;
}

bool Connection::countHeaderBytes(size_t length) {
  header_bytes_ += length;
  return header_bytes_ <= kMaxHeaderBytes;
}

int Connection::onUrl(llhttp_t* parser, const char* at, size_t length) {
  auto* self = static_cast<Connection*>(parser->data);
  if (!self->countHeaderBytes(length)) return HPE_USER;
  self->url_.append(at, length);
  return 0;
}

int Connection::onHeaderField(llhttp_t* parser, const char* at, size_t length) {
  auto* self = static_cast<Connection*>(parser->data);
  if (!self->countHeaderBytes(length)) return HPE_USER;
  if (!self->header_field_started_) {
    self->header_field_started_ = true;
    if (self->header_count_ == self->headers_.size()) self->headers_.emplace_back();
    Header& header = self->headers_[self->header_count_];
    header.name.clear();
    header.value.clear();
  }
  self->headers_[self->header_count_].name.append(at, length);
  return 0;
}

int Connection::onHeaderValue(llhttp_t* parser, const char* at, size_t length) {
  auto* self = static_cast<Connection*>(parser->data);
  if (!self->countHeaderBytes(length)) return HPE_USER;
  self->headers_[self->header_count_].value.append(at, length);
  return 0;
}

int Connection::onHeaderValueComplete(llhttp_t* parser) {
  auto* self = static_cast<Connection*>(parser->data);
  Header& header = self->headers_[self->header_count_];
  while (!header.value.empty() && (header.value.back() == ' ' || header.value.back() == '\t')) {
    header.value.pop_back();
  }
  self->header_field_started_ = false;
  ++self->header_count_;
  return 0;
}

int Connection::onHeadersComplete(llhttp_t* parser) {
  auto* self = static_cast<Connection*>(parser->data);
  self->server_.logRequest(llhttp_method_name(static_cast<llhttp_method_t>(parser->method)),
                           self->url_);
  self->handleRequest();
  return 0;
}

int Connection::onBody(llhttp_t* parser, const char* at, size_t length) {
  auto* self = static_cast<Connection*>(parser->data);
  if (self->echo_) self->writeBody(at, length);
  return 0;
}

int Connection::onMessageComplete(llhttp_t* parser) {
  auto* self = static_cast<Connection*>(parser->data);
  self->request_complete_ = true;
  if (self->echo_) self->endBody();
  // Hand control back to process(): the next request waits until this response is complete.
  return HPE_PAUSED;
}

const Connection::Header* Connection::findHeader(std::string_view name) const {
  for (size_t i = 0; i < header_count_; ++i) {
    if (equalsIgnoreCase(headers_[i].name, name)) return &headers_[i];
  }
  return nullptr;
}

void Connection::handleRequest() {
  keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
  head_request_ = parser_.method == HTTP_HEAD;
  std::string_view target = url_;
  // A server must accept the absolute form too (RFC 9112 §3.2.2): what follows the authority.
  if (const size_t scheme_end = target.find("://");
      !target.empty() && target[0] != '/' && scheme_end != std::string_view::npos) {
    const size_t path_start = target.find('/', scheme_end + 3);
    target = path_start == std::string_view::npos ? "/" : target.substr(path_start);
  }
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

  if (path == "/") {
    respond(200, kHello);
  } else if (path == "/bytes") {
    const auto n = parseNumber(queryParam(query, "n"));
    if (!n) return respond(400, "/bytes needs ?n=NUMBER\n");
    const bool chunked = queryParam(query, "chunked") == "1";
    // An HTTP/1.0 client cannot read chunked framing; the end of its body is the close.
    const Framing framing = !chunked   ? Framing::kLength
                            : http11() ? Framing::kChunked
                                       : Framing::kUntilClose;
    writeHead(200, "application/octet-stream", framing, *n);
    startPatternBody(*n, /*close_after=*/false);
  } else if (path == "/slow") {
    const auto ms = parseNumber(queryParam(query, "ms"));
    if (!ms || *ms > 3600 * 1000) return respond(400, "/slow needs ?ms=0..3600000\n");
    slow_pending_ = true;
    const timeval timeout = {static_cast<time_t>(*ms / 1000),
                             static_cast<suseconds_t>(*ms % 1000 * 1000)};
    startTimer(timeout);
  } else if (path == "/echo") {
    echo_ = true;
    const Framing framing = (parser_.flags & F_CONTENT_LENGTH) != 0 ? Framing::kLength
                            : http11()                              ? Framing::kChunked
                                                                    : Framing::kUntilClose;
    const bool has_body = (parser_.flags & F_CHUNKED) != 0 || parser_.content_length > 0;
    const Header* expect = findHeader("expect");
    if (has_body && http11() && expect != nullptr &&
        equalsIgnoreCase(expect->value, "100-continue")) {
      evbuffer_add(output(), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    writeHead(200, "application/octet-stream", framing, parser_.content_length);
  } else if (path == "/headers") {
    std::string body;
    for (size_t i = 0; i < header_count_; ++i) {
      body += headers_[i].name;
      body += ": ";
      body += headers_[i].value;
      body += '\n';
    }
    respond(200, body);
  } else if (path == "/status") {
    const auto code = parseNumber(queryParam(query, "code"));
    if (!code || *code < 200 || *code > 599) {
      return respond(400, "/status needs ?code=200..599\n");
    }
    const int status = static_cast<int>(*code);
    if (status == 204 || status == 304) {
      writeHead(status, {}, Framing::kNone, 0);
      response_complete_ = true;
    } else {
      std::string body = "status ";
      appendNumber(body, status);
      body += '\n';
      respond(status, body);
    }
  } else if (path == "/close") {
    keep_alive_ = false;
    respond(200, kHello);
  } else if (path == "/abort") {
    const auto after = parseNumber(queryParam(query, "after"));
    if (!after) return respond(400, "/abort needs ?after=NUMBER\n");
    constexpr uint64_t kPromised = 1000000;
    writeHead(200, "application/octet-stream", Framing::kLength, kPromised);
    startPatternBody(std::min<uint64_t>(*after, kPromised - 1), /*close_after=*/true);
  } else if (path == "/stall") {
    const std::string_view at = queryParam(query, "at").value_or("");
    if (at == "head") {
      static constexpr std::string_view kPartialHead = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";
      evbuffer_add(output(), kPartialHead.data(), kPartialHead.size());
    } else if (at == "body") {
      writeHead(200, "application/octet-stream", Framing::kLength, 1000);
      appendPattern(output(), 0, 10);
    } else {
      return respond(400, "/stall needs ?at=head or ?at=body\n");
    }
    stalled_ = true;
  } else if (path == "/ws") {
    acceptWebSocket();
  } else {
    respond(404, "not found\n");
  }
}

void Connection::writeHead(int status, std::string_view content_type, Framing framing,
                           uint64_t length, std::string_view extra_headers) {
  if (framing == Framing::kUntilClose) keep_alive_ = false;
  framing_ = framing;
  response_started_ = true;
  std::string& head = scratch_;
  head.assign("HTTP/1.1 ");
  appendNumber(head, status);
  head += ' ';
  head += reasonPhrase(status);
  head += "\r\n";
  if (!content_type.empty()) {
    head += "Content-Type: ";
    head += content_type;
    head += "\r\n";
  }
  if (framing == Framing::kLength) {
    head += "Content-Length: ";
    appendNumber(head, length);
    head += "\r\n";
  } else if (framing == Framing::kChunked) {
    head += "Transfer-Encoding: chunked\r\n";
  }
  head += extra_headers;
  if (!keep_alive_) {
    head += "Connection: close\r\n";
  } else if (!http11()) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  evbuffer_add(output(), head.data(), head.size());
}

void Connection::respond(int status, std::string_view body) {
  writeHead(status, "text/plain", Framing::kLength, body.size());
  if (!head_request_) evbuffer_add(output(), body.data(), body.size());
  response_complete_ = true;
}

void Connection::writeBody(const char* data, size_t length) {
  if (head_request_ || length == 0) return;
  if (framing_ == Framing::kChunked) {
    scratch_.clear();
    appendHex(scratch_, length);
    scratch_ += "\r\n";
    evbuffer_add(output(), scratch_.data(), scratch_.size());
    evbuffer_add(output(), data, length);
    evbuffer_add(output(), "\r\n", 2);
  } else {
    evbuffer_add(output(), data, length);
  }
}

void Connection::endBody() {
  if (!head_request_ && framing_ == Framing::kChunked) evbuffer_add(output(), "0\r\n\r\n", 5);
  response_complete_ = true;
}

void Connection::startPatternBody(uint64_t length, bool close_after) {
  pattern_left_ = head_request_ ? 0 : length;
  pattern_position_ = 0;
  close_after_pattern_ = close_after;
  if (close_after) keep_alive_ = false;
  pattern_pumping_ = true;
  pumpPatternBody();
}

void Connection::pumpPatternBody() {
  evbuffer* out = output();
  while (pattern_left_ > 0 && evbuffer_get_length(out) < kWriteFillTarget) {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(pattern_left_, kPatternPiece));
    if (framing_ == Framing::kChunked) {
      scratch_.clear();
      appendHex(scratch_, piece);
      scratch_ += "\r\n";
      evbuffer_add(out, scratch_.data(), scratch_.size());
    }
    appendPattern(out, pattern_position_, piece);
    if (framing_ == Framing::kChunked) evbuffer_add(out, "\r\n", 2);
    pattern_left_ -= piece;
    pattern_position_ += piece;
  }
  if (pattern_left_ == 0) {
    pattern_pumping_ = false;
    // /abort's body stops short of its Content-Length; there is no end to write.
    if (close_after_pattern_) {
      response_complete_ = true;
    } else {
      endBody();
    }
  }
}

// --- Connection: WebSocket (RFC 6455) ------------------------------------------------------------

void Connection::acceptWebSocket() {
  const Header* upgrade = findHeader("upgrade");
  const Header* version = findHeader("sec-websocket-version");
  const Header* key = findHeader("sec-websocket-key");
  bool connection_upgrade = false;
  for (size_t i = 0; i < header_count_; ++i) {
    if (equalsIgnoreCase(headers_[i].name, "connection") &&
        listHasToken(headers_[i].value, "upgrade")) {
      connection_upgrade = true;
    }
  }
  // The key is 16 random bytes in base64: 24 characters ending in "==".
  unsigned char decoded[18];
  const bool key_ok =
      key != nullptr && key->value.size() == 24 && key->value.compare(22, 2, "==") == 0 &&
      EVP_DecodeBlock(decoded, reinterpret_cast<const unsigned char*>(key->value.data()), 24) == 18;
  const bool has_body = (parser_.flags & F_CHUNKED) != 0 || parser_.content_length > 0;
  if (parser_.method != HTTP_GET || !http11() || has_body || upgrade == nullptr ||
      !listHasToken(upgrade->value, "websocket") || !connection_upgrade || version == nullptr ||
      version->value != "13" || !key_ok) {
    return respond(400, "not a valid WebSocket handshake\n");
  }
  std::string accept_input = key->value;
  accept_input += kWebSocketGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(accept_input.data()), accept_input.size(), digest);
  char accept[29];
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(accept), digest, sizeof(digest));
  std::string& head = scratch_;
  head.assign(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ");
  head += accept;
  head += "\r\n\r\n";
  evbuffer_add(output(), head.data(), head.size());
  response_started_ = true;
  response_complete_ = true;
  websocket_accepted_ = true;
}

void Connection::writeFrameHead(uint8_t first_byte, uint64_t length) {
  uint8_t head[10];
  size_t size = 2;
  head[0] = first_byte;
  if (length < 126) {
    head[1] = static_cast<uint8_t>(length);
  } else if (length <= 0xffff) {
    head[1] = 126;
    head[2] = static_cast<uint8_t>(length >> 8);
    head[3] = static_cast<uint8_t>(length);
    size = 4;
  } else {
    head[1] = 127;
    for (int i = 0; i < 8; ++i) head[2 + i] = static_cast<uint8_t>(length >> (56 - 8 * i));
    size = 10;
  }
  evbuffer_add(output(), head, size);
}

void Connection::failWebSocket(uint16_t close_code) {
  const uint8_t payload[2] = {static_cast<uint8_t>(close_code >> 8),
                              static_cast<uint8_t>(close_code)};
  writeFrameHead(0x88, sizeof(payload));
  evbuffer_add(output(), payload, sizeof(payload));
  closeAfterFlush(/*linger=*/true);
}

void Connection::processWebSocket() {
  constexpr uint8_t kContinuation = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9,
                    kPong = 0xa;
  constexpr uint16_t kProtocolError = 1002, kTooBig = 1009;
  evbuffer* in = input();
  while (!closed_ && !draining_) {
    if (evbuffer_get_length(output()) > kWriteFillTarget) {
      blockReading();
      return;
    }
    if (ws_payload_left_ > 0) {
      // Stream the data frame's payload back as it arrives, unmasked, without a second copy.
      const size_t available = evbuffer_get_length(in);
      if (available == 0) return;
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>({available, ws_payload_left_, uint64_t{kPatternPiece}}));
      evbuffer_iovec space;
      if (evbuffer_reserve_space(output(), n, &space, 1) != 1) {
        close();
        return;
      }
      auto* bytes = static_cast<uint8_t*>(space.iov_base);
      evbuffer_remove(in, bytes, n);
      for (size_t i = 0; i < n; ++i) bytes[i] ^= ws_mask_[(ws_mask_offset_ + i) & 3];
      ws_mask_offset_ = (ws_mask_offset_ + n) & 3;
      space.iov_len = n;
      evbuffer_commit_space(output(), &space, 1);
      ws_payload_left_ -= n;
      continue;
    }
    uint8_t head[14];
    const ev_ssize_t have = evbuffer_copyout(in, head, sizeof(head));
    if (have < 2) break;
    const bool fin = (head[0] & 0x80) != 0;
    const uint8_t opcode = head[0] & 0x0f;
    // Client frames must be masked.
    if ((head[1] & 0x80) == 0) return failWebSocket(kProtocolError);
    const uint8_t length7 = head[1] & 0x7f;
    const size_t head_size = 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + 4;
    if (static_cast<size_t>(have) < head_size) break;
    uint64_t length = length7;
    if (length7 == 126) {
      length = uint64_t{head[2]} << 8 | head[3];
    } else if (length7 == 127) {
      length = 0;
      for (int i = 0; i < 8; ++i) length = length << 8 | head[2 + i];
    }
    const bool control = (opcode & 0x8) != 0;
    const bool known = opcode == kContinuation || opcode == kText || opcode == kBinary ||
                       opcode == kClose || opcode == kPing || opcode == kPong;
    // No extension was negotiated, so the RSV bits must be 0.
    if ((head[0] & 0x70) != 0 || !known || (control && (!fin || length > 125))) {
      return failWebSocket(kProtocolError);
    }
    if ((length >> 63) != 0) return failWebSocket(kTooBig);
    std::memcpy(ws_mask_, head + head_size - 4, 4);
    ws_mask_offset_ = 0;
    if (!control) {
      evbuffer_drain(in, head_size);
      writeFrameHead(head[0], length);
      ws_payload_left_ = length;
      continue;
    }
    if (evbuffer_get_length(in) < head_size + length) break;
    evbuffer_drain(in, head_size);
    uint8_t payload[125];
    evbuffer_remove(in, payload, length);
    for (size_t i = 0; i < length; ++i) payload[i] ^= ws_mask_[i & 3];
    if (opcode == kPing) {
      writeFrameHead(0x80 | kPong, length);
      evbuffer_add(output(), payload, length);
    } else if (opcode == kClose) {
      // Echo the status code back (not the reason), then close: the server closes first.
      const size_t reply = length >= 2 ? 2 : 0;
      writeFrameHead(0x80 | kClose, reply);
      evbuffer_add(output(), payload, reply);
      closeAfterFlush(/*linger=*/true);
      return;
    }
  }
  if (peer_eof_ && !closed_ && !draining_) close();
}

}  // namespace
}  // namespace connwarden::demo

namespace {

void onStopSignal(evutil_socket_t, short, void* arg) {
  event_base_loopexit(static_cast<event_base*>(arg), nullptr);
}

void usage() {
  std::fprintf(stderr,
               "usage: connwarden-demo-app [--address 127.0.0.1] [--port 8081] "
               "[--access-log FILE]\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  std::string access_log;
  uint64_t port = 8081;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string value;
    const size_t eq = arg.find('=');
    if (arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
      arg = arg.substr(0, eq);
    } else if (arg == "--address" || arg == "--port" || arg == "--access-log") {
      if (i + 1 >= argc) {
        usage();
        return 2;
      }
      value = argv[++i];
    }
    if (arg == "--address") {
      address = value;
    } else if (arg == "--port") {
      const auto parsed = connwarden::demo::parseNumber(std::string_view(value));
      if (!parsed || *parsed > 65535) {
        std::fprintf(stderr, "invalid --port '%s'\n", value.c_str());
        return 2;
      }
      port = *parsed;
    } else if (arg == "--access-log") {
      access_log = value;
    } else {
      usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }

  // A peer that resets while we write must surface as EPIPE on that connection, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < sizeof(connwarden::demo::pattern); ++i) {
    connwarden::demo::pattern[i] = static_cast<char>('a' + i % 26);
  }

  event_base* base = event_base_new();
  if (base == nullptr) {
    std::fprintf(stderr, "event_base_new failed\n");
    return 1;
  }
  int status = 0;
  {
    connwarden::demo::Server server(base);
    const uint16_t bound = server.listen(address, static_cast<uint16_t>(port));
    if (bound == 0 || (!access_log.empty() && !server.openAccessLog(access_log))) {
      status = 1;
    } else {
      event* sigterm = evsignal_new(base, SIGTERM, &onStopSignal, base);
      event* sigint = evsignal_new(base, SIGINT, &onStopSignal, base);
      evsignal_add(sigterm, nullptr);
      evsignal_add(sigint, nullptr);
      const bool v6 = address.find(':') != std::string::npos;
      std::printf("listening on %s%s%s:%u\n", v6 ? "[" : "", address.c_str(), v6 ? "]" : "", bound);
      std::fflush(stdout);
      event_base_dispatch(base);
      event_free(sigterm);
      event_free(sigint);
    }
  }
  event_base_free(base);
  return status;
}
