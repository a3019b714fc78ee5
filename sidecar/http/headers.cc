// Header field lookups, list tokens, hop-by-hop removal, the forwarded request's fields and reason
// phrases.
#include "sidecar/http/headers.h"

#include <algorithm>

namespace connwarden::http {
namespace {

char toLowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `fn` with each trimmed, non-empty element of a comma-separated list; stops early when
// `fn` returns true and returns whether it did.
template <typename Fn>
bool forEachListElement(std::string_view value, Fn fn) {
  while (true) {
    const size_t comma = value.find(',');
    const std::string_view element = trimOws(value.substr(0, comma));
    if (!element.empty() && fn(element)) return true;
    if (comma == std::string_view::npos) return false;
    value.remove_prefix(comma + 1);
  }
}

bool isFixedHopByHop(std::string_view name, bool keep_upgrade) {
  return equalsIgnoreCase(name, "connection") || equalsIgnoreCase(name, "keep-alive") ||
         equalsIgnoreCase(name, "proxy-connection") || equalsIgnoreCase(name, "te") ||
         equalsIgnoreCase(name, "trailer") || equalsIgnoreCase(name, "transfer-encoding") ||
         (!keep_upgrade && equalsIgnoreCase(name, "upgrade"));
}

}  // namespace

bool equalsIgnoreCaseSameLength(std::string_view a, std::string_view b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (toLowerAscii(a[i]) != toLowerAscii(b[i])) return false;
  }
  return true;
}

const std::string* HeaderMap::get(std::string_view name) const {
  for (const Field& field : fields_) {
    if (equalsIgnoreCase(field.name, name)) return &field.value;
  }
  return nullptr;
}

size_t HeaderMap::remove(std::string_view name) {
  const auto end = std::remove_if(fields_.begin(), fields_.end(), [name](const Field& field) {
    return equalsIgnoreCase(field.name, name);
  });
  const size_t removed = static_cast<size_t>(fields_.end() - end);
  fields_.erase(end, fields_.end());
  return removed;
}

bool hasToken(std::string_view value, std::string_view token) {
  return forEachListElement(
      value, [token](std::string_view element) { return equalsIgnoreCase(element, token); });
}

void removeHopByHopHeaders(HeaderMap& headers, bool keep_upgrade) {
  // Fields the Connection header names are hop-by-hop too. Host is never removed that way:
  // `Connection: host` would otherwise strip the field the application routes on. The names are
  // copied: remove_if below overwrites the Connection fields they come from.
  std::vector<std::string> nominated;
  for (const HeaderMap::Field& field : headers.fields()) {
    if (!equalsIgnoreCase(field.name, "connection")) continue;
    forEachListElement(field.value, [&](std::string_view element) {
      if (!equalsIgnoreCase(element, "close") && !equalsIgnoreCase(element, "host") &&
          !isFixedHopByHop(element, keep_upgrade) &&
          !(keep_upgrade && equalsIgnoreCase(element, "upgrade"))) {
        nominated.emplace_back(element);
      }
      return false;
    });
  }
  auto is_nominated = [&nominated](std::string_view name) {
    for (const std::string& n : nominated) {
      if (equalsIgnoreCase(n, name)) return true;
    }
    return false;
  };
  std::vector<HeaderMap::Field>& fields = headers.fields();
  const auto end = std::remove_if(fields.begin(), fields.end(), [&](const HeaderMap::Field& f) {
    return isFixedHopByHop(f.name, keep_upgrade) || is_nominated(f.name);
  });
  fields.erase(end, fields.end());
  if (keep_upgrade && headers.get("upgrade") != nullptr) headers.add("Connection", "upgrade");
}

void prepareUpstreamRequest(RequestHead& head, std::string_view client_ip, bool tls) {
  removeHopByHopHeaders(head.headers, head.upgrade);
  bool appended = false;
  for (HeaderMap::Field& field : head.headers.fields()) {
    if (equalsIgnoreCase(field.name, "x-forwarded-for")) {
      field.value.append(", ").append(client_ip);
      appended = true;
      break;
    }
  }
  if (!appended) head.headers.add("X-Forwarded-For", std::string(client_ip));
  head.headers.remove("x-forwarded-proto");
  head.headers.add("X-Forwarded-Proto", tls ? "https" : "http");
  head.keep_alive = true;
  // The codec refuses an HTTP/1.1 request without Host: only an HTTP/1.0 one needs looking at.
  if (head.version_minor == 0 && head.headers.get("host") == nullptr) {
    // RFC 9112 §3.2: an HTTP/1.1 request carries Host; its value is the target URI's authority,
    // or empty when it has none. The codec checked an absolute-form target's authority.
    std::string_view authority;
    const size_t scheme_end = head.target.find("://");
    if (!head.target.empty() && head.target[0] != '/' && scheme_end != std::string::npos) {
      authority = std::string_view(head.target).substr(scheme_end + 3);
      authority = authority.substr(0, authority.find_first_of("/?"));
    }
    head.headers.add("Host", std::string(authority));
  }
}

std::string_view reasonPhrase(int status) {
  // clang-format off
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
  // clang-format on
}

}  // namespace connwarden::http
