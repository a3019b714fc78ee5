// Request and response heads: the start line and header fields of an HTTP message, as the codecs
// parse them and the proxy forwards them. Field names keep their case; lookups ignore it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace connwarden::http {

// a and b of the same length.
bool equalsIgnoreCaseSameLength(std::string_view a, std::string_view b);
// Inline: header names are compared many times per request, and most differ in length.
inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && equalsIgnoreCaseSameLength(a, b);
}

class HeaderMap {
 public:
  struct Field {
    std::string name;
    std::string value;
  };

  void add(std::string name, std::string value) {
    fields_.push_back({std::move(name), std::move(value)});
  }
  // The first field named `name` (any case), or null.
  const std::string* get(std::string_view name) const;
  // Removes every field named `name`; returns how many.
  size_t remove(std::string_view name);
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  const std::vector<Field>& fields() const { return fields_; }
  std::vector<Field>& fields() { return fields_; }

 private:
  std::vector<Field> fields_;
};

// True if the comma-separated list `value` holds `token` (any case), as in `Connection: close`.
bool hasToken(std::string_view value, std::string_view token);

// A request's head as parsed. The codec fills the framing fields and keeps the framing headers
// (Content-Length, Transfer-Encoding) out of `headers`: the encoder that writes the message on
// writes its own framing.
struct RequestHead {
  std::string method;
  std::string target;      // as received: "/path?query", or absolute form for proxies
  uint8_t version_minor = 1;  // HTTP/1.x
  HeaderMap headers;
  std::string host;        // lower-cased, port removed; from Host (or the absolute target)
  std::string path;        // target without the query, for routing
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;  // HTTP/1.1 unless `Connection: close`; HTTP/1.0 only if asked
  bool expect_continue = false;  // `Expect: 100-continue` (removed from headers)
  bool upgrade = false;          // `Connection: upgrade` + `Upgrade: x` (both kept in headers)
  bool head_method = false;
};

struct ResponseHead {
  int status = 200;
  std::string reason;
  uint8_t version_minor = 1;
  HeaderMap headers;
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;  // the upstream connection may be reused after this response
  // The body runs until the connection closes (no length, not chunked).
  bool close_delimited = false;
};

// Removes hop-by-hop fields (RFC 9110 §7.6.1): Connection and every field it names, Keep-Alive,
// Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade. With `keep_upgrade`, Upgrade and
// the `upgrade` token survive (a WebSocket handshake being forwarded).
void removeHopByHopHeaders(HeaderMap& headers, bool keep_upgrade);

// Makes a request as the client sent it into the one the application receives: hop-by-hop
// fields removed, X-Forwarded-For extended with `client_ip`, X-Forwarded-Proto set, a Host
// added where the client sent none (an HTTP/1.0 request; we speak HTTP/1.1 upstream), and the
// upstream connection kept alive whatever the client asked of its own.
void prepareUpstreamRequest(RequestHead& head, std::string_view client_ip, bool tls);

std::string_view reasonPhrase(int status);

}  // namespace connwarden::http
