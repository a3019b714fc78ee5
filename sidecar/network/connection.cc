#include "sidecar/network/connection.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace connwarden::network {

namespace {
// How long a closing connection may take to flush its output and see the peer's FIN.
constexpr std::chrono::milliseconds kClosingTimeout{5000};
}  // namespace

Connection::Connection(event::Dispatcher& dispatcher, int fd, TransportSocketPtr transport)
    : Connection(dispatcher, fd, std::move(transport), Start::kAccepted) {}

Connection::Connection(event::Dispatcher& dispatcher, int fd, TransportSocketPtr transport,
                       Resumed)
    : Connection(dispatcher, fd, std::move(transport), Start::kResumed) {}

Connection::Connection(event::Dispatcher& dispatcher, int fd, TransportSocketPtr transport,
                       Start start)
    : dispatcher_(dispatcher),
      fd_(fd),
      transport_(std::move(transport)),
      file_event_(dispatcher.base(), fd, [this](uint32_t events) { onFileEvent(events); }),
      state_(start == Start::kConnecting ? State::kConnecting : State::kOpen) {
  CW_ASSERT(dispatcher_.isThreadSafe());
  if (start == Start::kResumed) {
    // The socket's options were set when it was accepted.
    peer_ = Address::peerOf(fd_);
    local_ = Address::localOf(fd_);
    transport_->setCallbacks(*this);
    transport_connected_ = true;
    file_event_.setEnabled(event::FileReadyType::kRead);
    return;
  }
  const bool connecting = start == Start::kConnecting;
  if (fd_ >= 0) {
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    peer_ = Address::peerOf(fd_);
    local_ = Address::localOf(fd_);
  }
  transport_->setCallbacks(*this);
  if (fd_ < 0) {
    // The socket could not be created: report a failed connect from the loop, not from here.
    file_event_.activate(event::FileReadyType::kWrite);
    return;
  }
  if (connecting) {
    file_event_.setEnabled(event::FileReadyType::kWrite);
  } else {
    file_event_.setEnabled(event::FileReadyType::kRead);
    transport_->onConnected();
  }
}

std::unique_ptr<Connection> Connection::connectTo(event::Dispatcher& dispatcher,
                                                  const Address& address,
                                                  TransportSocketPtr transport) {
  int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    int rc;
    do {
      rc = ::connect(fd, address.sockaddr_ptr(), address.length());
    } while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
      ::close(fd);
      fd = -1;
    }
  }
  auto conn = std::unique_ptr<Connection>(
      new Connection(dispatcher, fd, std::move(transport), Start::kConnecting));
  conn->peer_ = address;
  return conn;
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

void Connection::onFileEvent(uint32_t events) {
  event::MemoryAccount::Scope scope(account_);
  if (state_ == State::kConnecting) {
    onConnectReady();
    return;
  }
  // Writable again after a send the socket did not take whole: send the rest now. Readable:
  // read at the end of the pass, with every other readable connection.
  if ((events & event::FileReadyType::kWrite) && state_ != State::kClosed) flushWrite();
  if ((events & event::FileReadyType::kRead) && state_ != State::kClosed) {
    dispatcher_.ioBatch().scheduleRecv(*this);
  }
}

void Connection::onConnectReady() {
  int error = 0;
  socklen_t len = sizeof(error);
  if (fd_ < 0 || getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
    close_reason_ = CloseReason::kUpstreamError;
    closeSocket(ConnectionEvent::kRemoteClose);
    return;
  }
  local_ = Address::localOf(fd_);
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  state_ = State::kOpen;
  transport_->onConnected();
  updateInterest();
  if (!write_buffer_.empty() || write_end_stream_) flushWrite();
}

void Connection::onTransportConnected() {
  transport_connected_ = true;
  if (callbacks_ != nullptr) callbacks_->onEvent(ConnectionEvent::kConnected);
}

void Connection::setReadBufferReady() {
  read_pending_in_transport_ = true;
  if (readEnabled()) file_event_.activate(event::FileReadyType::kRead);
}

bool Connection::prepareRecv(int* fd) {
  if (state_ == State::kClosed || state_ == State::kConnecting) return false;
  if (!readEnabled() && state_ == State::kOpen) return false;
  *fd = fd_;
  return true;
}

void Connection::completeRecv(const char* data, ssize_t result) {
  if (state_ == State::kClosed) return;
  event::MemoryAccount::Scope scope(account_);
  read_pending_in_transport_ = false;
  IoResult io = transport_->completeBatchedRead(read_buffer_, data, result);
  if (io.action == PostIoAction::kKeepOpen && !readEnabled() && state_ == State::kOpen) {
    // Paused by a callback earlier in this round: keep the bytes for when reading resumes
    // (which reads again, and sees an end of stream again). What the transport made while
    // reading (TLS session tickets) goes out now.
    bytes_read_ += io.bytes;
    if (transport_->bytesToSend() > 0) dispatcher_.ioBatch().scheduleSend(*this);
    return;
  }
  if (result == static_cast<ssize_t>(event::IoBatch::kRecvSlot) &&
      io.action == PostIoAction::kKeepOpen && !io.end_stream && io.bytes < read_limit_) {
    // The slot is full: more may be waiting. Read on from the socket now.
    const IoResult more = transport_->doRead(read_buffer_, read_limit_ - io.bytes);
    io.bytes += more.bytes;
    io.action = more.action;
    io.end_stream = more.end_stream;
    io.error = more.error;
  }
  afterRead(io);
}

void Connection::afterRead(const IoResult& result) {
  bytes_read_ += result.bytes;
  if (state_ == State::kClosing) {
    // Lingering: discard what the peer still sends until it closes.
    read_buffer_.drain(read_buffer_.length());
    if (result.end_stream || result.action == PostIoAction::kClose) {
      closeSocket(ConnectionEvent::kLocalClose);
    }
    return;
  }
  if (result.action == PostIoAction::kClose) {
    // A transport failure before the TLS handshake completed is a TLS error; after it, a reset
    // or an alert from the peer.
    close_reason_ = transport_->isTls() && !transport_connected_ ? CloseReason::kTlsError
                                                                   : CloseReason::kPeerClosed;
    closeSocket(ConnectionEvent::kRemoteClose);
    return;
  }
  if (result.end_stream) {
    read_end_stream_ = true;
    updateInterest();
  }
  // The transport made records of its own (TLS handshake messages, session tickets).
  if (transport_->bytesToSend() > 0) dispatcher_.ioBatch().scheduleSend(*this);
  // Also with no new bytes when the buffer holds some: reading was just re-enabled and the
  // owner left them there while it was paused.
  if ((!read_buffer_.empty() || result.end_stream) && callbacks_ != nullptr) {
    callbacks_->onData(read_buffer_, read_end_stream_);
  }
}

void Connection::write(Buffer& data, bool end_stream) {
  CW_ASSERT(dispatcher_.isThreadSafe());
  if (state_ == State::kClosed || write_end_stream_) {
    data.drain(data.length());
    return;
  }
  write_buffer_.move(data);
  if (end_stream) write_end_stream_ = true;
  checkWatermarks();
  if (state_ == State::kConnecting) return;  // the connect's completion flushes
  dispatcher_.ioBatch().scheduleSend(*this);  // once per pass, however many writes
}

void Connection::flushWrite() {
  if (state_ == State::kClosed || state_ == State::kConnecting) return;
  if (sendRunning()) return;  // the batch is sending it now; its completion goes on from there
  afterWrite(transport_->doWrite(write_buffer_, write_end_stream_));
}

int Connection::prepareSend(event::IoBatch::Op& op) {
  if (state_ == State::kClosed || state_ == State::kConnecting) return 0;
  event::MemoryAccount::Scope scope(account_);  // TLS encrypts here
  op.fd = fd_;
  return transport_->prepareBatchedWrite(write_buffer_, write_end_stream_)
      .peek(op.slices, event::IoBatch::kMaxSlices);
}

void Connection::completeSend(ssize_t result) {
  if (state_ == State::kClosed || state_ == State::kConnecting) return;
  event::MemoryAccount::Scope scope(account_);
  const IoResult io = transport_->completeBatchedWrite(write_buffer_, result);
  if (io.action == PostIoAction::kKeepOpen && io.sent > 0 && unsentBytes() > 0) {
    // More than one send takes, or written since it was prepared: again at the end of the next
    // pass (the socket took all it was offered, so it likely has room).
    dispatcher_.ioBatch().scheduleSend(*this);
  }
  afterWrite(io);
}

void Connection::afterWrite(const IoResult& result) {
  bytes_written_ += result.bytes;
  if (result.action == PostIoAction::kClose) {
    close_reason_ = close_reason_ != CloseReason::kNone ? close_reason_ : CloseReason::kPeerClosed;
    closeSocket(state_ == State::kClosing ? ConnectionEvent::kLocalClose
                                          : ConnectionEvent::kRemoteClose);
    return;
  }
  const bool flushed = unsentBytes() == 0;
  if (flushed && write_end_stream_ && !write_shut_down_ && transport_connected_) {
    write_shut_down_ = true;
    ::shutdown(fd_, SHUT_WR);
  }
  if (state_ == State::kClosing && flushed) {
    finishClosing();
    if (state_ == State::kClosed) return;
  }
  updateWriteTimer(result.sent);
  updateInterest();
  checkWatermarks();
}

void Connection::updateWriteTimer(uint64_t progress) {
  if (write_timeout_.count() <= 0) return;
  if (unsentBytes() == 0) {
    if (write_timer_ != nullptr) write_timer_->disable();
    return;
  }
  if (write_timer_ == nullptr) {
    write_timer_ = dispatcher_.createTimer([this] {
      event::MemoryAccount::Scope scope(account_);
      close(CloseType::kAbort, CloseReason::kWriteTimeout);
    });
  } else if (progress == 0 && write_timer_->enabled()) {
    return;  // still waiting since the last progress
  }
  write_timer_->enable(write_timeout_);
}

void Connection::setWriteTimeout(std::chrono::milliseconds timeout) {
  write_timeout_ = timeout;
  if (timeout.count() <= 0) {
    if (write_timer_ != nullptr) write_timer_->disable();
  } else if (state_ != State::kClosed && unsentBytes() > 0) {
    updateWriteTimer(1);
  }
}

void Connection::releaseBuffers() {
  read_buffer_.release();
  write_buffer_.release();
  transport_->releaseBuffers();
  file_event_.releaseIdle();
  releaseSpareTimers();
}

void Connection::prepareBuffers() {
  read_buffer_.prepare();
  write_buffer_.prepare();
}

void Connection::releaseSpareTimers() {
  if (write_timer_ != nullptr && !write_timer_->enabled()) write_timer_.reset();
  if (close_timer_ != nullptr && state_ == State::kOpen) close_timer_.reset();
}

bool Connection::quiet() const {
  return state_ == State::kOpen && transport_connected_ && read_buffer_.empty() &&
         unsentBytes() == 0 && !write_end_stream_ && !read_end_stream_ &&
         !read_pending_in_transport_ && !sendQueued() && readEnabled();
}

Connection::DetachedSocket Connection::detachSocket() {
  CW_ASSERT(dispatcher_.isThreadSafe());
  CW_ASSERT(quiet());
  file_event_.setEnabled(0);
  if (close_timer_ != nullptr) close_timer_->disable();
  if (write_timer_ != nullptr) write_timer_->disable();
  state_ = State::kClosed;
  DetachedSocket out{fd_, std::move(transport_)};
  fd_ = -1;
  return out;
}

void Connection::checkWatermarks() {
  const size_t len = unsentBytes();
  if (!above_high_watermark_ && len > high_watermark_) {
    above_high_watermark_ = true;
    if (callbacks_ != nullptr) callbacks_->onAboveWriteBufferHighWatermark();
  } else if (above_high_watermark_ && len <= high_watermark_ / 2) {
    above_high_watermark_ = false;
    if (callbacks_ != nullptr) callbacks_->onBelowWriteBufferLowWatermark();
  }
}

void Connection::setBufferLimits(uint32_t high_watermark) { high_watermark_ = high_watermark; }

void Connection::readDisable(bool disable) {
  CW_ASSERT(dispatcher_.isThreadSafe());
  if (disable) {
    ++read_disable_count_;
  } else {
    CW_ASSERT(read_disable_count_ > 0);
    --read_disable_count_;
  }
  if (state_ != State::kOpen) return;
  updateInterest();
  if (readEnabled() && (read_pending_in_transport_ || !read_buffer_.empty())) {
    // Bytes already held (in our buffer or inside TLS) will not make the socket readable again.
    file_event_.activate(event::FileReadyType::kRead);
  }
}

void Connection::updateInterest() {
  if (state_ == State::kClosed || state_ == State::kConnecting) return;
  uint32_t events = 0;
  const bool reading = state_ == State::kClosing || (readEnabled() && !read_end_stream_);
  if (reading && !read_end_stream_) events |= event::FileReadyType::kRead;
  // A queued batched send needs no writability: it is tried at the end of the pass.
  if (unsentBytes() > 0 && !sendQueued()) events |= event::FileReadyType::kWrite;
  file_event_.setEnabled(events);
}

void Connection::close(CloseType type, CloseReason reason) {
  CW_ASSERT(dispatcher_.isThreadSafe());
  if (state_ == State::kClosed) return;
  if (close_reason_ == CloseReason::kNone) close_reason_ = reason;
  if (type == CloseType::kAbort && fd_ >= 0) {
    const linger abortive{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
  }
  if (type != CloseType::kFlushWrite || state_ == State::kConnecting || fd_ < 0) {
    closeSocket(ConnectionEvent::kLocalClose);
    return;
  }
  if (state_ == State::kClosing) return;
  state_ = State::kClosing;
  write_end_stream_ = true;
  close_timer_ = dispatcher_.createTimer([this] {
    event::MemoryAccount::Scope scope(account_);
    closeSocket(ConnectionEvent::kLocalClose);
  });
  close_timer_->enable(kClosingTimeout);
  flushWrite();
}

void Connection::finishClosing() {
  // Output is flushed and the FIN sent. Closing with unread input would make the kernel send a
  // reset that can destroy our last response before the client reads it; so with input pending
  // keep reading (and discarding) until the peer closes or the closing timer fires.
  int unread = 0;
  if (read_end_stream_ || (ioctl(fd_, FIONREAD, &unread) == 0 && unread == 0)) {
    closeSocket(ConnectionEvent::kLocalClose);
  }
}

void Connection::closeSocket(ConnectionEvent event) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  if (close_reason_ == CloseReason::kNone) close_reason_ = CloseReason::kPeerClosed;
  file_event_.setEnabled(0);
  // Not destroyed here: this may run inside the timer's own callback.
  if (close_timer_ != nullptr) close_timer_->disable();
  if (write_timer_ != nullptr) write_timer_->disable();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  write_buffer_.drain(write_buffer_.length());
  if (callbacks_ != nullptr) callbacks_->onEvent(event);
}

}  // namespace connwarden::network
