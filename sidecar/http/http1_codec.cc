// HTTP/1.1 server and client codecs on llhttp.
//
// llhttp tokenizes; this file decides. Both codecs drive llhttp the same way:
//
//   bytes ─▶ HeadScanner ─▶ llhttp_execute ─▶ callbacks record events ─▶ loop acts on them
//            (raw checks,    (one slice of      (head ready, body span,     (decoder calls,
//             byte limit)     the Buffer)        last chunk, message end)    outside llhttp)
//
// The decoder is never called from inside llhttp: callbacks that end a stage return HPE_PAUSED,
// the loop drains what llhttp consumed and only then calls the decoder, so a decoder that
// writes a response, closes the connection or resets the stream finds the input buffer in a
// consistent state. Content-Length (and close-delimited) bodies do not go through llhttp at
// all: on_headers_complete tells it "no body" and the loop moves the body's slices from the
// input buffer to the decoder without copying. Chunked bodies are de-chunked by llhttp and
// copied once.
//
// HeadScanner exists because llhttp (8.1, strict mode or not) accepts things this proxy must
// reject: bare LF line endings, obs-fold, runs of spaces in the request line. It also counts the
// head's bytes as they arrive, so a head trickled in one byte per read is still bounded.
#include "sidecar/http/http1_codec.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstring>

#include "llhttp.h"
#include "sidecar/event/dispatcher.h"

namespace connwarden::http {
namespace {

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// tchar (RFC 9110 §5.6.2), as a table: it runs on every byte of every field name.
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> table{};
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}();

inline bool isTokenChar(char c) { return kTokenChars[static_cast<unsigned char>(c)]; }

void toLowerInPlace(std::string& s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
}

// Raw checks on a head (start line and field lines) or a trailer section, before llhttp sees
// the bytes.
class HeadScanner {
 public:
  enum class Result { kMore, kDone, kInvalid, kTooLarge };

  // A request or status line follows (leading empty lines are skipped, as RFC 9112 §2.2 allows).
  void startHead(bool request) {
    *this = HeadScanner();
    active_ = true;
    check_request_line_ = request;
  }
  // A trailer section follows the last chunk: field lines up to an empty line.
  void startTrailers() {
    *this = HeadScanner();
    active_ = true;
    started_ = true;
  }

  bool active() const { return active_; }
  // The first byte of the start line has been seen.
  bool started() const { return started_; }
  const char* detail() const { return detail_; }

  // Scans `p[0, len)`. kDone: the section ended, `*used` bytes into `p` (just past its final LF);
  // kMore: all of `p` belongs to it.
  Result scan(const char* p, size_t len, uint32_t limit, size_t* used) {
    for (size_t i = 0; i < len; ++i) {
      if (started_ && !line_empty_ && !after_cr_) {
        // Inside a line only CR and LF matter here (llhttp checks the rest), and in a request
        // line its characters: skip to the next CR or LF at memchr's speed, counting the bytes
        // passed against the limit.
        const size_t stop = lineEnd(p, i, len);
        if (bytes_ + (stop - i) > limit) return Result::kTooLarge;
        if (in_start_line_ && check_request_line_) {
          if (const char* bad = checkRequestLine(p + i, p + stop)) return invalid(bad);
        }
        bytes_ += static_cast<uint32_t>(stop - i);
        i = stop;
        if (i == len) break;
      }
      const char c = p[i];
      if (++bytes_ > limit) return Result::kTooLarge;
      if (after_cr_) {
        if (c != '\n') return invalid("CR not followed by LF");
        after_cr_ = false;
        if (!started_) continue;  // an empty line before the start line
        if (line_empty_ && !in_start_line_) {
          active_ = false;
          *used = i + 1;
          return Result::kDone;
        }
        in_start_line_ = false;
        line_empty_ = true;
        continue;
      }
      if (c == '\r') {
        after_cr_ = true;
        continue;
      }
      if (c == '\n') return invalid("bare LF line ending");
      if (!started_) {
        started_ = true;
        in_start_line_ = true;
      }
      if (line_empty_ && !in_start_line_ && (c == ' ' || c == '\t')) {
        return invalid("obs-fold or whitespace before a field name");
      }
      if (in_start_line_ && check_request_line_) {
        if (c == ' ') {
          if (after_sp_ || line_empty_) return invalid("extra whitespace in the request line");
          after_sp_ = true;
        } else {
          after_sp_ = false;
          const auto u = static_cast<unsigned char>(c);
          if (u < 0x21 || u >= 0x7f) return invalid("invalid character in the request line");
        }
      }
      line_empty_ = false;
    }
    *used = len;
    return Result::kMore;
  }

 private:
  Result invalid(const char* detail) {
    detail_ = detail;
    return Result::kInvalid;
  }
  // Checks a run of request-line characters (after the first): single spaces between
  // visible ASCII characters. Returns what is wrong, or null.
  const char* checkRequestLine(const char* from, const char* to) {
    for (const char* q = from; q < to; ++q) {
      if (*q == ' ') {
        if (after_sp_) return "extra whitespace in the request line";
        after_sp_ = true;
      } else {
        after_sp_ = false;
        const auto u = static_cast<unsigned char>(*q);
        if (u < 0x21 || u >= 0x7f) return "invalid character in the request line";
      }
    }
    return nullptr;
  }
  // The index of the first CR or LF in p[from, len), or len.
  static size_t lineEnd(const char* p, size_t from, size_t len) {
    const void* cr = std::memchr(p + from, '\r', len - from);
    const size_t end = cr == nullptr ? len : static_cast<const char*>(cr) - p;
    const void* lf = std::memchr(p + from, '\n', end - from);
    return lf == nullptr ? end : static_cast<const char*>(lf) - p;
  }

  uint32_t bytes_ = 0;
  bool active_ = false;
  bool started_ = false;
  bool in_start_line_ = false;
  bool line_empty_ = true;
  bool after_cr_ = false;
  bool after_sp_ = false;
  bool check_request_line_ = false;
  const char* detail_ = "";
};

// Accumulates header fields from llhttp's span callbacks, which may cut a name or value
// anywhere (across execute calls, and so across reads). Checks names itself: llhttp 8.1 lets
// an empty name and one with a space in it through.
class FieldCollector {
 public:
  enum class Name { kOk, kTooMany, kInvalid };

  void reset(HeaderMap* headers) {
    headers_ = headers;
    // Most heads have fewer fields than this: one allocation instead of a series of regrowths,
    // and small enough (768 bytes) for glibc's per-thread cache, where 16 (1 KiB) is not.
    if (headers_ != nullptr) headers_->fields().reserve(12);
    in_name_ = false;
    count_ = 0;
    name_length_ = 0;
  }
  Name onName(const char* at, size_t len, uint32_t max_fields) {
    if (!in_name_) {
      in_name_ = true;
      name_length_ = 0;
      if (++count_ > max_fields) return Name::kTooMany;
      if (headers_ != nullptr) headers_->add(std::string(), std::string());
    }
    for (size_t i = 0; i < len; ++i) {
      if (!isTokenChar(at[i])) return Name::kInvalid;
    }
    name_length_ += len;
    if (headers_ != nullptr) headers_->fields().back().name.append(at, len);
    return Name::kOk;
  }
  // Returns false for an empty name.
  bool onNameComplete() {
    in_name_ = false;
    return name_length_ > 0;
  }
  void onValue(const char* at, size_t len) {
    if (headers_ != nullptr && !headers_->empty()) headers_->fields().back().value.append(at, len);
  }
  // llhttp skips leading whitespace of a value but hands over the trailing one.
  void onValueComplete() {
    in_name_ = false;
    if (headers_ == nullptr || headers_->empty()) return;
    std::string& value = headers_->fields().back().value;
    size_t end = value.size();
    while (end > 0 && (value[end - 1] == ' ' || value[end - 1] == '\t')) --end;
    value.resize(end);
  }

 private:
  HeaderMap* headers_ = nullptr;  // null: check and count only (trailers)
  bool in_name_ = false;
  uint32_t count_ = 0;
  size_t name_length_ = 0;
};

// Transfer-Encoding, over every field that carries it. Only a lone `chunked` is accepted.
struct TransferCoding {
  bool present = false;
  bool chunked_final = false;  // the last coding is chunked
  bool malformed = false;      // empty or invalid element, or chunked not last
  bool other_coding = false;   // a well-formed coding other than chunked

  void add(std::string_view value) {
    present = true;
    while (true) {
      const size_t comma = value.find(',');
      const std::string_view element = trimOws(value.substr(0, comma));
      if (element.empty() || !std::all_of(element.begin(), element.end(), isTokenChar)) {
        malformed = true;
      } else if (chunked_final) {
        malformed = true;  // something after chunked
      } else if (equalsIgnoreCase(element, "chunked")) {
        chunked_final = true;
      } else {
        other_coding = true;
      }
      if (comma == std::string_view::npos) return;
      value.remove_prefix(comma + 1);
    }
  }
};

// Connection tokens that matter to framing and reuse.
struct ConnectionTokens {
  bool close = false;
  bool keep_alive = false;
  bool upgrade = false;

  void add(std::string_view value) {
    close = close || hasToken(value, "close");
    keep_alive = keep_alive || hasToken(value, "keep-alive");
    upgrade = upgrade || hasToken(value, "upgrade");
  }
};

// Host and authority syntax (RFC 3986 reg-name or IP literal, optional port). Lower-cases the
// host and drops the port into `*host`.
bool parseAuthority(std::string_view authority, std::string* host) {
  std::string_view name = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    name = authority.substr(0, close + 1);
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
    for (char c : name.substr(1, name.size() - 2)) {
      if (!(isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      name = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) return false;
    }
    for (char c : name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~' || c == '%' || c == '!' ||
                      c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' ||
                      c == '+' || c == ',' || c == ';' || c == '=';
      if (!ok) return false;
    }
  }
  if (port.size() > 5) return false;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
  }
  host->assign(name.data(), name.size());
  toLowerInPlace(*host);
  return true;
}

// Writes a message head straight into the tail of an output buffer: no string to build and
// copy on every request. `bound` must cover everything appended; the encoders pass the sizes of
// the variable parts (fields, target, reason) plus kFixedHeadBytes for their fixed lines.
class HeadWriter {
 public:
  // More than any encoder's fixed parts: "HTTP/1.1 NNN " and CRLF, Content-Length with 20
  // digits, "Transfer-Encoding: chunked", "Connection: keep-alive", the final CRLF.
  static constexpr size_t kFixedHeadBytes = 160;

  HeadWriter(network::Buffer& out, size_t bound) : out_(out) {
    out_.reserve(bound, &slice_, 1);
    next_ = static_cast<char*>(slice_.iov_base);
    end_ = next_ + slice_.iov_len;
  }
  HeadWriter(const HeadWriter&) = delete;
  HeadWriter& operator=(const HeadWriter&) = delete;

  void append(std::string_view text) {
    CW_ASSERT(text.size() <= static_cast<size_t>(end_ - next_));
    std::memcpy(next_, text.data(), text.size());
    next_ += text.size();
  }
  void push_back(char c) { append(std::string_view(&c, 1)); }
  // Makes what was written part of the buffer.
  void commit() {
    out_.commit(&slice_, 1, static_cast<size_t>(next_ - static_cast<char*>(slice_.iov_base)));
  }

 private:
  network::Buffer& out_;
  iovec slice_{};
  char* next_;
  char* end_;
};

void appendNumber(HeadWriter& out, uint64_t value, int base = 10) {
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof(digits), value, base);
  out.append(std::string_view(digits, static_cast<size_t>(result.ptr - digits)));
}

size_t fieldsSize(const HeaderMap& headers) {
  size_t size = 0;
  for (const HeaderMap::Field& field : headers.fields())
    size += field.name.size() + field.value.size() + 4;
  return size;
}

bool isFramingField(std::string_view name) {
  return equalsIgnoreCase(name, "content-length") || equalsIgnoreCase(name, "transfer-encoding");
}

void appendField(HeadWriter& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

// One chunk of a chunked body: size line, the bytes (moved), CRLF; and the last chunk.
void encodeChunk(network::Buffer& data, bool end_stream, network::Buffer& out) {
  if (!data.empty()) {
    char line[24];
    auto result = std::to_chars(line, line + sizeof(line) - 2, data.length(), 16);
    *result.ptr++ = '\r';
    *result.ptr++ = '\n';
    out.add(line, static_cast<size_t>(result.ptr - line));
    out.move(data);
    out.add(end_stream ? std::string_view("\r\n0\r\n\r\n") : std::string_view("\r\n"));
  } else if (end_stream) {
    out.add("0\r\n\r\n");
  }
}

std::string llhttpErrorDetail(const llhttp_t& parser, llhttp_errno_t err) {
  std::string detail = llhttp_errno_name(err);
  const char* reason = llhttp_get_error_reason(&parser);
  if (reason != nullptr && *reason != '\0') {
    detail += ": ";
    detail += reason;
  }
  return detail;
}

enum class Slice { kParsed, kError };

}  // namespace

// --- Server codec --------------------------------------------------------------------------------

struct Http1ServerCodec::Impl {
  // Where the current request stands. kAwaitResponse: the request is complete and llhttp is
  // paused until its response completes. kDone: nothing more will be parsed.
  enum class Phase { kIdle, kHead, kIdentityBody, kChunkedBody, kAwaitResponse, kDone };

  Impl(Http1ServerCodec& codec, ServerCodecCallbacks& callbacks, Http1Limits limits)
      : codec(codec), callbacks(callbacks), limits(limits) {
    llhttp_init(&parser, HTTP_REQUEST, &settings());
    parser.data = this;
  }

  static const llhttp_settings_t& settings();
  static Impl& from(llhttp_t* p) { return *static_cast<Impl*>(p->data); }

  bool dispatch(network::Buffer& data);
  Slice parseSlice(network::Buffer& data);
  void startRequest();
  void deliverHead();
  void deliverBody(network::Buffer& body, bool end_stream);
  bool fail(int status, std::string detail);
  int onHeadersComplete();
  bool finishHead(RequestHead& head);

  void encodeHeaders(ResponseHead& head, bool end_stream);
  void encodeData(network::Buffer& data, bool end_stream);
  void finishResponse();

  Http1ServerCodec& codec;
  ServerCodecCallbacks& callbacks;
  const Http1Limits limits;
  llhttp_t parser;
  HeadScanner scanner;
  FieldCollector collector;

  Phase phase = Phase::kIdle;
  bool stream_active = false;     // first byte of a request seen, its response not complete
  bool no_more_requests = false;  // close after the in-flight response
  bool upgraded = false;
  bool failed = false;
  bool in_dispatch = false;
  bool stop_dispatch = false;  // the response completed inside dispatch(): return to the session

  // Events recorded by llhttp callbacks, acted upon by parseSlice().
  bool head_ready = false;
  bool last_chunk = false;
  bool message_complete = false;
  size_t head_end = 0;     // HeadScanner's end of the head within the current slice
  int pending_status = 0;  // set by a callback that failed
  std::string pending_detail;

  // Request.
  std::unique_ptr<RequestHead> head;
  bool in_trailers = false;
  uint64_t chunk_extension_bytes = 0;
  uint64_t body_remaining = 0;
  network::Buffer body;  // body bytes on their way to the decoder
  RequestDecoder* decoder = nullptr;
  bool request_complete = false;
  bool http10 = false;
  bool head_method = false;
  bool expect_continue = false;
  bool upgrade_request = false;

  // Response.
  bool response_pending = false;  // a stream exists whose response is not complete
  bool response_started = false;
  bool response_no_body = false;
  bool response_chunked = false;
  bool response_close = false;
  std::optional<uint64_t> response_remaining;  // Content-Length framing
  bool continue_sent = false;
  network::Buffer out;
};

const llhttp_settings_t& Http1ServerCodec::Impl::settings() {
  static const llhttp_settings_t kSettings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_url = [](llhttp_t* p, const char* at, size_t len) {
      from(p).head->target.append(at, len);
      return 0;
    };
    s.on_version_complete = [](llhttp_t* p) {
      if (p->http_major == 1 && p->http_minor <= 1) return 0;
      Impl& impl = from(p);
      impl.pending_status = 505;
      impl.pending_detail = "unsupported HTTP version";
      return -1;
    };
    s.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      Impl& impl = from(p);
      switch (impl.collector.onName(at, len, impl.limits.max_headers)) {
        case FieldCollector::Name::kOk:
          return 0;
        case FieldCollector::Name::kTooMany:
          impl.pending_status = 431;
          impl.pending_detail =
              impl.in_trailers ? "too many trailer fields" : "too many header fields";
          return -1;
        case FieldCollector::Name::kInvalid:
          break;
      }
      impl.pending_status = 400;
      impl.pending_detail = "invalid character in a field name";
      return -1;
    };
    s.on_header_field_complete = [](llhttp_t* p) {
      Impl& impl = from(p);
      if (impl.collector.onNameComplete()) return 0;
      impl.pending_status = 400;
      impl.pending_detail = "empty field name";
      return -1;
    };
    s.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      from(p).collector.onValue(at, len);
      return 0;
    };
    s.on_header_value_complete = [](llhttp_t* p) {
      from(p).collector.onValueComplete();
      return 0;
    };
    s.on_headers_complete = [](llhttp_t* p) { return from(p).onHeadersComplete(); };
    s.on_chunk_extension_name = [](llhttp_t* p, const char*, size_t len) {
      Impl& impl = from(p);
      impl.chunk_extension_bytes += len;
      if (impl.chunk_extension_bytes > impl.limits.max_header_bytes) {
        impl.pending_status = 400;
        impl.pending_detail = "chunk extensions too long";
        return -1;
      }
      return 0;
    };
    s.on_chunk_extension_value = s.on_chunk_extension_name;
    s.on_chunk_header = [](llhttp_t* p) {
      if (p->content_length != 0) return 0;
      // The last chunk: stop so that the trailer section is scanned like a head.
      Impl& impl = from(p);
      impl.last_chunk = true;
      impl.in_trailers = true;
      impl.collector.reset(nullptr);
      return static_cast<int>(HPE_PAUSED);
    };
    s.on_body = [](llhttp_t* p, const char* at, size_t len) {
      from(p).body.add(at, len);
      return 0;
    };
    s.on_message_complete = [](llhttp_t* p) {
      from(p).message_complete = true;
      return static_cast<int>(HPE_PAUSED);
    };
    return s;
  }();
  return kSettings;
}

bool Http1ServerCodec::Impl::fail(int status, std::string detail) {
  codec.error_.status = status;
  codec.error_.detail = std::move(detail);
  failed = true;
  phase = Phase::kDone;
  no_more_requests = true;
  return false;
}

void Http1ServerCodec::Impl::startRequest() {
  head = std::make_unique<RequestHead>();
  collector.reset(&head->headers);
  scanner.startHead(/*request=*/true);
  in_trailers = false;
  chunk_extension_bytes = 0;
  request_complete = false;
  expect_continue = false;
  upgrade_request = false;
  // The previous request left llhttp paused at its end.
  llhttp_resume(&parser);
  phase = Phase::kHead;
}

bool Http1ServerCodec::Impl::dispatch(network::Buffer& data) {
  if (failed) return false;
  // The session calls dispatch() again from its own loop, never from inside a codec callback.
  CW_ASSERT(!in_dispatch);
  in_dispatch = true;
  stop_dispatch = false;
  bool ok = true;
  while (ok && !stop_dispatch) {
    if (phase == Phase::kIdle) {
      if (no_more_requests) {
        phase = Phase::kDone;  // pipelined requests after a closing one are dropped
        break;
      }
      if (data.empty()) break;
      startRequest();
    }
    if (phase == Phase::kDone || phase == Phase::kAwaitResponse || data.empty()) break;
    if (phase == Phase::kIdentityBody) {
      const uint64_t n = std::min<uint64_t>(body_remaining, data.length());
      body.move(data, static_cast<size_t>(n));
      body_remaining -= n;
      deliverBody(body, body_remaining == 0);
      continue;
    }
    ok = parseSlice(data) == Slice::kParsed;
  }
  in_dispatch = false;
  return ok;
}

// Feeds llhttp the first slice of `data` (or the part of it up to a pause), drains what llhttp
// consumed, then acts on what the callbacks recorded.
Slice Http1ServerCodec::Impl::parseSlice(network::Buffer& data) {
  iovec slice;
  data.peek(&slice, 1);
  const char* start = static_cast<const char*>(slice.iov_base);
  const size_t len = slice.iov_len;

  head_end = len;
  bool scanned_to_end = false;
  if (scanner.active()) {
    const bool was_started = scanner.started();
    const auto result = scanner.scan(start, len, limits.max_header_bytes, &head_end);
    if (!was_started && scanner.started() && phase == Phase::kHead) stream_active = true;
    switch (result) {
      case HeadScanner::Result::kInvalid:
        fail(400, scanner.detail());
        return Slice::kError;
      case HeadScanner::Result::kTooLarge:
        fail(431, in_trailers ? "trailer section too large" : "request head too large");
        return Slice::kError;
      case HeadScanner::Result::kDone:
        scanned_to_end = true;
        break;
      case HeadScanner::Result::kMore:
        break;
    }
  }

  llhttp_errno_t err = llhttp_execute(&parser, start, len);
  if (err == HPE_PAUSED_UPGRADE && !message_complete && llhttp_get_error_pos(&parser) == start) {
    // Resumed after an Upgrade request that got no 101: llhttp pauses once more, before reading
    // anything of the next request.
    llhttp_resume_after_upgrade(&parser);
    err = llhttp_execute(&parser, start, len);
  }
  size_t consumed = len;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    consumed = static_cast<size_t>(llhttp_get_error_pos(&parser) - start);
  }
  data.drain(consumed);
  if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
    if (pending_status != 0) {
      const int status = pending_status;
      pending_status = 0;
      fail(status, std::move(pending_detail));
    } else if (err == HPE_PAUSED_H2_UPGRADE) {
      fail(505, "HTTP/2 connection preface on an HTTP/1.1 connection");
    } else {
      fail(400, llhttpErrorDetail(parser, err));
    }
    return Slice::kError;
  }
  // The scanner and llhttp must agree on where the head (or trailer section) ends; bytes one of
  // them takes for body and the other for head are exactly what smuggling is made of.
  const bool section_end = head_ready || (in_trailers && message_complete);
  if (section_end != scanned_to_end || (section_end && consumed != head_end)) {
    fail(400, "inconsistent end of the request head");
    return Slice::kError;
  }

  if (head_ready) {
    head_ready = false;
    message_complete = false;
    deliverHead();
    return Slice::kParsed;
  }
  if (last_chunk) {
    last_chunk = false;
    scanner.startTrailers();
    llhttp_resume(&parser);
  }
  if (message_complete) {
    message_complete = false;
    deliverBody(body, true);
  } else if (!body.empty()) {
    deliverBody(body, false);
  }
  return Slice::kParsed;
}

int Http1ServerCodec::Impl::onHeadersComplete() {
  if (in_trailers) return 0;
  if (!finishHead(*head)) return -1;
  head_ready = true;
  // Chunked: pause so that the head reaches the decoder before llhttp de-chunks the body.
  // Otherwise llhttp is told there is no body; the loop moves Content-Length bytes itself.
  return head->chunked ? static_cast<int>(HPE_PAUSED) : 1;
}

// Validates the head llhttp has parsed and fills the framing fields. On failure, records the
// error for the loop and returns false.
bool Http1ServerCodec::Impl::finishHead(RequestHead& h) {
  auto reject = [this](int status, std::string detail) {
    pending_status = status;
    pending_detail = std::move(detail);
    return false;
  };
  if (parser.http_major != 1 || parser.http_minor > 1) {
    return reject(505, "unsupported HTTP version");
  }
  if (parser.method == HTTP_CONNECT) return reject(501, "CONNECT is not supported");
  h.method = llhttp_method_name(static_cast<llhttp_method_t>(parser.method));
  h.version_minor = parser.http_minor;
  const bool is_http10 = parser.http_minor == 0;

  TransferCoding coding;
  ConnectionTokens connection;
  bool has_upgrade_field = false;
  bool bad_expect = false;
  int host_count = 0;
  std::string_view host_value;
  for (const HeaderMap::Field& field : h.headers.fields()) {
    const std::string& name = field.name;
    if (equalsIgnoreCase(name, "transfer-encoding")) {
      coding.add(field.value);
    } else if (equalsIgnoreCase(name, "host")) {
      ++host_count;
      host_value = field.value;
    } else if (equalsIgnoreCase(name, "connection")) {
      connection.add(field.value);
    } else if (equalsIgnoreCase(name, "upgrade")) {
      has_upgrade_field = true;
    } else if (equalsIgnoreCase(name, "expect")) {
      if (equalsIgnoreCase(field.value, "100-continue")) {
        // An HTTP/1.0 client cannot read a 100 (RFC 9110 §10.1.1): the expectation is ignored.
        h.expect_continue = !is_http10;
      } else {
        bad_expect = true;
      }
    }
  }

  if (coding.present) {
    if (is_http10) return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (coding.malformed || !coding.chunked_final) {
      return reject(400, "Transfer-Encoding is not a final chunked");
    }
    // RFC 9112 §6.1: a coding the server does not understand is a 501; only chunked is.
    if (coding.other_coding) return reject(501, "unsupported transfer coding");
    if ((parser.flags & F_CHUNKED) == 0) return reject(400, "Transfer-Encoding not understood");
  }
  if ((parser.flags & F_CONTENT_LENGTH) != 0 && coding.present) {
    return reject(400, "both Content-Length and Transfer-Encoding");
  }
  if (host_count > 1) return reject(400, "more than one Host field");
  if (host_count == 0 && !is_http10) return reject(400, "missing Host field");
  if (bad_expect) return reject(417, "unsupported expectation");

  // Routing fields: host and path.
  std::string_view target = h.target;
  if (target.find('#') != std::string_view::npos) return reject(400, "fragment in request target");
  std::string_view path = target;
  if (target == "*" && parser.method != HTTP_OPTIONS) {
    return reject(400, "asterisk target on a method but OPTIONS");
  }
  if (target == "*" || (!target.empty() && target.front() == '/')) {
    if (host_count == 1 && !parseAuthority(host_value, &h.host)) {
      return reject(400, "invalid Host field");
    }
  } else {
    // Absolute form: the authority in the target wins over Host (RFC 9112 §3.2.2); a Host that
    // says otherwise is rejected rather than left for the application to believe.
    const size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos ||
        !(equalsIgnoreCase(target.substr(0, scheme_end), "http") ||
          equalsIgnoreCase(target.substr(0, scheme_end), "https"))) {
      return reject(400, "invalid request target");
    }
    std::string_view rest = target.substr(scheme_end + 3);
    const size_t authority_end = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, authority_end);
    if (authority.empty() || authority.find('@') != std::string_view::npos ||
        !parseAuthority(authority, &h.host)) {
      return reject(400, "invalid authority in request target");
    }
    if (host_count == 1) {
      std::string from_field;
      if (!parseAuthority(host_value, &from_field) || from_field != h.host) {
        return reject(400, "Host field does not match the request target");
      }
    }
    path = authority_end == std::string_view::npos ? std::string_view("/")
                                                   : rest.substr(authority_end);
    if (!path.empty() && path.front() == '?') path = "/";
  }
  h.path.assign(path.substr(0, path.find('?')));

  h.chunked = (parser.flags & F_CHUNKED) != 0;
  if ((parser.flags & F_CONTENT_LENGTH) != 0) h.content_length = parser.content_length;
  const bool has_body = h.chunked || h.content_length.value_or(0) > 0;
  h.keep_alive = is_http10 ? connection.keep_alive && !connection.close : !connection.close;
  h.upgrade = has_upgrade_field && connection.upgrade && !has_body;
  h.head_method = parser.method == HTTP_HEAD;

  std::vector<HeaderMap::Field>& fields = h.headers.fields();
  fields.erase(std::remove_if(fields.begin(), fields.end(),
                              [](const HeaderMap::Field& f) {
                                return isFramingField(f.name) || equalsIgnoreCase(f.name, "expect");
                              }),
               fields.end());
  return true;
}

void Http1ServerCodec::Impl::deliverHead() {
  std::unique_ptr<RequestHead> h = std::move(head);
  collector.reset(nullptr);
  http10 = h->version_minor == 0;
  head_method = h->head_method;
  expect_continue = h->expect_continue;
  upgrade_request = h->upgrade;
  if (!h->keep_alive) no_more_requests = true;
  const bool has_body = h->chunked || h->content_length.value_or(0) > 0;
  if (h->chunked) {
    phase = Phase::kChunkedBody;
    llhttp_resume(&parser);
  } else if (has_body) {
    phase = Phase::kIdentityBody;
    body_remaining = *h->content_length;
  } else {
    phase = Phase::kAwaitResponse;
    request_complete = true;
  }
  response_pending = true;
  response_started = false;
  response_close = false;
  response_remaining.reset();
  continue_sent = false;
  decoder = &callbacks.newStream(codec);
  decoder->decodeHeaders(std::move(h), !has_body);
}

void Http1ServerCodec::Impl::deliverBody(network::Buffer& data, bool end_stream) {
  if (end_stream) {
    phase = Phase::kAwaitResponse;
    request_complete = true;
  }
  if (decoder != nullptr) decoder->decodeData(data, end_stream);
  data.drain(data.length());
}

void Http1ServerCodec::Impl::encodeHeaders(ResponseHead& h, bool end_stream) {
  CW_ASSERT(response_pending && !response_started);
  const int status = h.status;
  const std::string_view reason =
      h.reason.empty() ? reasonPhrase(status) : std::string_view(h.reason);
  const bool interim = status >= 100 && status < 200 && status != 101;
  // An HTTP/1.0 client cannot read an interim response (RFC 9110 §15.2).
  if (interim && http10) return;

  HeadWriter text(out, HeadWriter::kFixedHeadBytes + reason.size() + fieldsSize(h.headers));
  text.append("HTTP/1.1 ");
  appendNumber(text, static_cast<uint64_t>(status));
  text.push_back(' ');
  text.append(reason);
  text.append("\r\n");

  if (interim || (status == 101 && upgrade_request)) {
    // Written as given: the caller keeps Upgrade and Connection for a 101.
    for (const HeaderMap::Field& field : h.headers.fields())
      appendField(text, field.name, field.value);
    text.append("\r\n");
    text.commit();
    callbacks.writeToConnection(out, false);
    if (interim) return;
    response_started = true;
    response_pending = false;
    upgraded = true;
    no_more_requests = true;
    stream_active = false;
    phase = Phase::kDone;
    return;
  }

  response_started = true;
  // A 101 the client did not ask for cannot start a tunnel: it ends the connection instead.
  response_no_body = head_method || status == 101 || status == 204 || status == 304;
  response_chunked = false;
  // Once the response is complete the rest of an unfinished request cannot be read: close.
  response_close = no_more_requests || !request_complete || status == 101;
  for (const HeaderMap::Field& field : h.headers.fields()) {
    if (isFramingField(field.name) || equalsIgnoreCase(field.name, "connection")) continue;
    appendField(text, field.name, field.value);
  }
  if (response_no_body) {
    // HEAD and 304 may state the length the body would have; 1xx and 204 must not.
    if (h.content_length && status != 204 && status != 101) {
      text.append("Content-Length: ");
      appendNumber(text, *h.content_length);
      text.append("\r\n");
    }
  } else if (h.content_length || end_stream) {
    response_remaining = h.content_length.value_or(0);
    text.append("Content-Length: ");
    appendNumber(text, *response_remaining);
    text.append("\r\n");
  } else if (!http10) {
    response_chunked = true;
    text.append("Transfer-Encoding: chunked\r\n");
  } else {
    response_close = true;  // the body ends when the connection does
  }
  if (response_close) {
    text.append("Connection: close\r\n");
  } else if (http10) {
    text.append("Connection: keep-alive\r\n");
  }
  text.append("\r\n");
  text.commit();
  callbacks.writeToConnection(out, false);
  if (end_stream) finishResponse();
}

void Http1ServerCodec::Impl::encodeData(network::Buffer& data, bool end_stream) {
  CW_ASSERT(response_pending && response_started);
  if (response_no_body) {
    data.drain(data.length());
  } else if (response_chunked) {
    encodeChunk(data, end_stream, out);
  } else if (response_remaining) {
    const uint64_t n = std::min<uint64_t>(*response_remaining, data.length());
    out.move(data, static_cast<size_t>(n));
    *response_remaining -= n;
    if (!data.empty()) {
      // More than the stated length would be read by the client as the next response.
      data.drain(data.length());
      response_close = true;
    }
  } else {
    out.move(data);
  }
  if (!out.empty()) callbacks.writeToConnection(out, false);
  if (end_stream) finishResponse();
}

void Http1ServerCodec::Impl::finishResponse() {
  // A body shorter than its Content-Length: only closing tells the client.
  if (!response_no_body && response_remaining.value_or(0) > 0) response_close = true;
  response_pending = false;
  stream_active = false;
  decoder = nullptr;
  if (response_close || !request_complete) {
    no_more_requests = true;
    phase = Phase::kDone;
  } else if (phase == Phase::kAwaitResponse) {
    phase = Phase::kIdle;
  }
  if (in_dispatch) stop_dispatch = true;
  callbacks.onStreamComplete(codec);
}

Http1ServerCodec::Http1ServerCodec(ServerCodecCallbacks& callbacks, Http1Limits limits)
    : impl_(std::make_unique<Impl>(*this, callbacks, limits)) {}

Http1ServerCodec::~Http1ServerCodec() = default;

bool Http1ServerCodec::dispatch(network::Buffer& data) { return impl_->dispatch(data); }

bool Http1ServerCodec::streamActive() const { return impl_->stream_active; }

bool Http1ServerCodec::readingHeaders() const {
  return impl_->stream_active && impl_->phase == Impl::Phase::kHead;
}

void Http1ServerCodec::shutdownAfterCurrent() {
  impl_->no_more_requests = true;
  if (!impl_->response_pending) {
    // Nothing handed to the proxy yet: a partial head is dropped with the rest.
    impl_->phase = Impl::Phase::kDone;
    impl_->stream_active = false;
  }
}

bool Http1ServerCodec::wantsClose() const {
  return impl_->no_more_requests && !impl_->response_pending;
}

bool Http1ServerCodec::upgraded() const { return impl_->upgraded; }

void Http1ServerCodec::releaseBuffers() {
  impl_->body.release();
  impl_->out.release();
}

bool Http1ServerCodec::requestComplete() const { return impl_->request_complete; }

void Http1ServerCodec::encode100Continue() {
  Impl& impl = *impl_;
  if (!impl.expect_continue || impl.continue_sent || impl.response_started ||
      impl.request_complete) {
    return;
  }
  impl.continue_sent = true;
  impl.out.add("HTTP/1.1 100 Continue\r\n\r\n");
  impl.callbacks.writeToConnection(impl.out, false);
}

void Http1ServerCodec::encodeHeaders(ResponseHead& head, bool end_stream) {
  impl_->encodeHeaders(head, end_stream);
}

void Http1ServerCodec::encodeData(network::Buffer& data, bool end_stream) {
  impl_->encodeData(data, end_stream);
}

void Http1ServerCodec::setCloseAfterResponse() { impl_->no_more_requests = true; }

// --- Client codec --------------------------------------------------------------------------------

struct Http1ClientCodec::Impl {
  enum class Phase {
    kIdle,  // no request in flight
    kHead,
    kIdentityBody,
    kChunkedBody,
    kCloseDelimited,
    kComplete,
    kUpgraded,
    kAbandoned,  // reset(), or an error: the connection is not reused
  };

  Impl(Http1ClientCodec& codec, Http1Limits limits) : codec(codec), limits(limits) {
    llhttp_init(&parser, HTTP_RESPONSE, &settings());
    parser.data = this;
  }

  static const llhttp_settings_t& settings();
  static Impl& from(llhttp_t* p) { return *static_cast<Impl*>(p->data); }

  bool dispatch(network::Buffer& data);
  Slice parseSlice(network::Buffer& data);
  bool fail(std::string detail);
  int onHeadersComplete();
  void startHead();
  void deliverHead(network::Buffer& data);
  void deliverBody(network::Buffer& data, bool end_stream);
  void complete(network::Buffer& data);

  Http1ClientCodec& codec;
  const Http1Limits limits;
  llhttp_t parser;
  HeadScanner scanner;
  FieldCollector collector;
  Phase phase = Phase::kIdle;

  ResponseDecoder* decoder = nullptr;
  bool head_request = false;
  bool upgrade_request = false;
  bool request_chunked = false;
  bool request_complete = false;
  bool response_started = false;
  bool keep_alive = false;

  bool head_ready = false;
  bool interim = false;
  bool last_chunk = false;
  bool message_complete = false;
  bool in_trailers = false;
  std::string pending_error;
  std::unique_ptr<ResponseHead> head;
  uint64_t body_remaining = 0;
  network::Buffer body;
};

const llhttp_settings_t& Http1ClientCodec::Impl::settings() {
  static const llhttp_settings_t kSettings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_status = [](llhttp_t* p, const char* at, size_t len) {
      from(p).head->reason.append(at, len);
      return 0;
    };
    s.on_version_complete = [](llhttp_t* p) {
      if (p->http_major == 1 && p->http_minor <= 1) return 0;
      from(p).pending_error = "unsupported HTTP version in response";
      return -1;
    };
    s.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      Impl& impl = from(p);
      switch (impl.collector.onName(at, len, impl.limits.max_headers)) {
        case FieldCollector::Name::kOk:
          return 0;
        case FieldCollector::Name::kTooMany:
          impl.pending_error = "too many response header fields";
          return -1;
        case FieldCollector::Name::kInvalid:
          break;
      }
      impl.pending_error = "invalid character in a response field name";
      return -1;
    };
    s.on_header_field_complete = [](llhttp_t* p) {
      Impl& impl = from(p);
      if (impl.collector.onNameComplete()) return 0;
      impl.pending_error = "empty field name in response";
      return -1;
    };
    s.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      from(p).collector.onValue(at, len);
      return 0;
    };
    s.on_header_value_complete = [](llhttp_t* p) {
      from(p).collector.onValueComplete();
      return 0;
    };
    s.on_headers_complete = [](llhttp_t* p) { return from(p).onHeadersComplete(); };
    s.on_chunk_header = [](llhttp_t* p) {
      if (p->content_length != 0) return 0;
      Impl& impl = from(p);
      impl.last_chunk = true;
      impl.in_trailers = true;
      impl.collector.reset(nullptr);
      return static_cast<int>(HPE_PAUSED);
    };
    s.on_body = [](llhttp_t* p, const char* at, size_t len) {
      from(p).body.add(at, len);
      return 0;
    };
    s.on_message_complete = [](llhttp_t* p) {
      from(p).message_complete = true;
      return static_cast<int>(HPE_PAUSED);
    };
    return s;
  }();
  return kSettings;
}

// The phase stays as it was: a response that completed before the bad bytes is still complete.
bool Http1ClientCodec::Impl::fail(std::string detail) {
  if (codec.error_.empty()) codec.error_ = std::move(detail);
  return false;
}

void Http1ClientCodec::Impl::startHead() {
  head = std::make_unique<ResponseHead>();
  collector.reset(&head->headers);
  scanner.startHead(/*request=*/false);
  in_trailers = false;
  interim = false;
}

bool Http1ClientCodec::Impl::dispatch(network::Buffer& data) {
  if (!codec.error_.empty()) return false;
  while (true) {
    switch (phase) {
      case Phase::kIdle:
        if (data.empty()) return true;
        return fail("bytes from the application with no request in flight");
      case Phase::kComplete:
        if (data.empty()) return true;
        return fail("bytes after the end of the response");
      case Phase::kUpgraded:
      case Phase::kAbandoned:
        return true;  // the bytes belong to the tunnel, or to nobody
      case Phase::kIdentityBody: {
        if (data.empty()) return true;
        const uint64_t n = std::min<uint64_t>(body_remaining, data.length());
        body.move(data, static_cast<size_t>(n));
        body_remaining -= n;
        if (body_remaining == 0) {
          complete(data);
        } else {
          deliverBody(body, false);
        }
        break;
      }
      case Phase::kCloseDelimited:
        if (data.empty()) return true;
        body.move(data);
        deliverBody(body, false);
        break;
      case Phase::kHead:
      case Phase::kChunkedBody:
        if (data.empty()) return true;
        response_started = true;
        if (parseSlice(data) == Slice::kError) return false;
        break;
    }
    if (!codec.error_.empty()) return false;
  }
}

Slice Http1ClientCodec::Impl::parseSlice(network::Buffer& data) {
  iovec slice;
  data.peek(&slice, 1);
  const char* start = static_cast<const char*>(slice.iov_base);
  const size_t len = slice.iov_len;

  size_t head_end = len;
  bool scanned_to_end = false;
  if (scanner.active()) {
    switch (scanner.scan(start, len, limits.max_header_bytes, &head_end)) {
      case HeadScanner::Result::kInvalid:
        fail(std::string("invalid response head: ") + scanner.detail());
        return Slice::kError;
      case HeadScanner::Result::kTooLarge:
        fail("response head too large");
        return Slice::kError;
      case HeadScanner::Result::kDone:
        scanned_to_end = true;
        break;
      case HeadScanner::Result::kMore:
        break;
    }
  }

  const llhttp_errno_t err = llhttp_execute(&parser, start, len);
  size_t consumed = len;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    consumed = static_cast<size_t>(llhttp_get_error_pos(&parser) - start);
  }
  data.drain(consumed);
  if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
    fail(!pending_error.empty() ? pending_error
                                : "invalid response: " + llhttpErrorDetail(parser, err));
    return Slice::kError;
  }
  const bool section_end = head_ready || (in_trailers && message_complete);
  if (section_end != scanned_to_end || (section_end && consumed != head_end)) {
    fail("invalid response: inconsistent end of the head");
    return Slice::kError;
  }

  if (head_ready) {
    head_ready = false;
    message_complete = false;
    if (interim) {
      // 100 Continue and friends: dropped; the real response follows.
      startHead();
      llhttp_resume(&parser);
      return Slice::kParsed;
    }
    deliverHead(data);
    return Slice::kParsed;
  }
  if (last_chunk) {
    last_chunk = false;
    scanner.startTrailers();
    llhttp_resume(&parser);
  }
  if (message_complete) {
    message_complete = false;
    complete(data);
  } else if (!body.empty()) {
    deliverBody(body, false);
  }
  return Slice::kParsed;
}

int Http1ClientCodec::Impl::onHeadersComplete() {
  if (in_trailers) return 0;
  ResponseHead& h = *head;
  if (parser.http_major != 1 || parser.http_minor > 1) {
    pending_error = "unsupported HTTP version in response";
    return -1;
  }
  h.status = parser.status_code;
  h.version_minor = parser.http_minor;
  head_ready = true;
  if (h.status < 200 && h.status != 101) {
    interim = true;
    return 1;
  }

  TransferCoding coding;
  ConnectionTokens connection;
  for (const HeaderMap::Field& field : h.headers.fields()) {
    if (equalsIgnoreCase(field.name, "transfer-encoding")) {
      coding.add(field.value);
    } else if (equalsIgnoreCase(field.name, "connection")) {
      connection.add(field.value);
    }
  }
  // A response body in any coding but chunked would reach the client relabelled as identity.
  if (coding.present &&
      (h.version_minor == 0 || coding.malformed || !coding.chunked_final || coding.other_coding)) {
    pending_error = "unsupported Transfer-Encoding in response";
    return -1;
  }
  const bool no_body = head_request || h.status == 101 || h.status == 204 || h.status == 304;
  if ((parser.flags & F_CONTENT_LENGTH) != 0) h.content_length = parser.content_length;
  h.chunked = !no_body && (parser.flags & F_CHUNKED) != 0;
  h.close_delimited = !no_body && !h.chunked && !h.content_length;
  h.keep_alive =
      (h.version_minor == 0 ? connection.keep_alive && !connection.close : !connection.close) &&
      !h.close_delimited;
  std::vector<HeaderMap::Field>& fields = h.headers.fields();
  fields.erase(std::remove_if(fields.begin(), fields.end(),
                              [](const HeaderMap::Field& f) { return isFramingField(f.name); }),
               fields.end());
  return h.chunked ? static_cast<int>(HPE_PAUSED) : 1;
}

void Http1ClientCodec::Impl::deliverHead(network::Buffer& data) {
  std::unique_ptr<ResponseHead> h = std::move(head);
  collector.reset(nullptr);
  keep_alive = h->keep_alive;
  if (h->status == 101) {
    if (!upgrade_request) {
      fail("101 Switching Protocols to a request that did not ask to upgrade");
      return;
    }
    // The bytes after the head belong to the tunnel and stay in `data`.
    phase = Phase::kUpgraded;
    keep_alive = false;
    decoder->decodeResponseHeaders(std::move(h), false);
    return;
  }
  bool end_stream = false;
  if (h->chunked) {
    phase = Phase::kChunkedBody;
    llhttp_resume(&parser);
  } else if (h->close_delimited) {
    phase = Phase::kCloseDelimited;
  } else if (h->content_length.value_or(0) > 0 &&
             !(head_request || h->status == 204 || h->status == 304)) {
    phase = Phase::kIdentityBody;
    body_remaining = *h->content_length;
  } else {
    end_stream = true;
    phase = Phase::kComplete;
    if (!data.empty()) fail("bytes after the end of the response");
  }
  decoder->decodeResponseHeaders(std::move(h), end_stream);
}

void Http1ClientCodec::Impl::deliverBody(network::Buffer& data, bool end_stream) {
  if (decoder != nullptr) decoder->decodeResponseData(data, end_stream);
  data.drain(data.length());
}

// The response ended; anything still in `data` was sent after it.
void Http1ClientCodec::Impl::complete(network::Buffer& data) {
  phase = Phase::kComplete;
  // Recorded before the decoder hears of the end, so that reusable() is already false when the
  // stream hands the connection back.
  if (!data.empty()) fail("bytes after the end of the response");
  deliverBody(body, true);
}

Http1ClientCodec::Http1ClientCodec(Http1Limits limits)
    : impl_(std::make_unique<Impl>(*this, limits)) {}

Http1ClientCodec::~Http1ClientCodec() = default;

void Http1ClientCodec::encodeHeaders(const RequestHead& head, ResponseDecoder& decoder,
                                     network::Buffer& out) {
  Impl& impl = *impl_;
  CW_ASSERT(impl.phase == Impl::Phase::kIdle || impl.phase == Impl::Phase::kComplete);
  // One response per request: a fresh parser state instead of resuming the last pause.
  llhttp_reset(&impl.parser);
  impl.decoder = &decoder;
  impl.head_request = head.head_method;
  impl.upgrade_request = head.upgrade;
  impl.request_chunked = head.chunked;
  impl.request_complete = false;
  impl.response_started = false;
  impl.keep_alive = false;
  impl.head_ready = impl.last_chunk = impl.message_complete = false;
  impl.pending_error.clear();
  impl.body_remaining = 0;
  impl.phase = Impl::Phase::kHead;
  impl.startHead();

  HeadWriter text(out, HeadWriter::kFixedHeadBytes + head.method.size() + head.target.size() +
                           fieldsSize(head.headers));
  text.append(head.method);
  text.push_back(' ');
  text.append(head.target);
  text.append(" HTTP/1.1\r\n");
  bool has_connection = false;
  for (const HeaderMap::Field& field : head.headers.fields()) {
    if (isFramingField(field.name)) continue;
    has_connection = has_connection || equalsIgnoreCase(field.name, "connection");
    appendField(text, field.name, field.value);
  }
  if (head.content_length) {
    text.append("Content-Length: ");
    appendNumber(text, *head.content_length);
    text.append("\r\n");
  } else if (head.chunked) {
    text.append("Transfer-Encoding: chunked\r\n");
  }
  if (!head.keep_alive && !has_connection) text.append("Connection: close\r\n");
  text.append("\r\n");
  text.commit();
  if (!head.chunked && head.content_length.value_or(0) == 0) impl.request_complete = true;
}

void Http1ClientCodec::encodeData(network::Buffer& data, bool end_stream, network::Buffer& out) {
  if (impl_->request_chunked) {
    encodeChunk(data, end_stream, out);
  } else {
    out.move(data);
  }
  if (end_stream) impl_->request_complete = true;
}

bool Http1ClientCodec::dispatch(network::Buffer& data) { return impl_->dispatch(data); }

bool Http1ClientCodec::onConnectionClosed() {
  Impl& impl = *impl_;
  if (!error_.empty()) return false;
  switch (impl.phase) {
    case Impl::Phase::kComplete:
    case Impl::Phase::kUpgraded:
      return true;
    case Impl::Phase::kCloseDelimited: {
      network::Buffer empty;
      impl.phase = Impl::Phase::kComplete;
      impl.keep_alive = false;
      impl.deliverBody(empty, true);
      return true;
    }
    default:
      impl.fail(impl.response_started ? "connection closed in the middle of the response"
                                      : "connection closed before the response");
      return false;
  }
}

bool Http1ClientCodec::reusable() const {
  return impl_->phase == Impl::Phase::kComplete && impl_->keep_alive && impl_->request_complete &&
         error_.empty();
}

bool Http1ClientCodec::responseComplete() const {
  return impl_->phase == Impl::Phase::kComplete || impl_->phase == Impl::Phase::kUpgraded;
}

bool Http1ClientCodec::responseStarted() const { return impl_->response_started; }

bool Http1ClientCodec::responseHeadComplete() const {
  switch (impl_->phase) {
    case Impl::Phase::kIdentityBody:
    case Impl::Phase::kChunkedBody:
    case Impl::Phase::kCloseDelimited:
    case Impl::Phase::kComplete:
    case Impl::Phase::kUpgraded:
      return true;
    case Impl::Phase::kIdle:
    case Impl::Phase::kHead:
    case Impl::Phase::kAbandoned:
      return false;
  }
  return false;
}

void Http1ClientCodec::reset() {
  impl_->decoder = nullptr;
  impl_->phase = Impl::Phase::kAbandoned;
}

}  // namespace connwarden::http
