#include "sidecar/network/address.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace connwarden::network {

absl::StatusOr<Address> Address::parse(std::string_view host_port_view) {
  // absl::StrCat takes absl::string_view, which is not std::string_view in Debian's Abseil.
  const std::string host_port(host_port_view);
  std::string host;
  std::string port_text;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", host_port, "\" is not \"[ipv6]:port\""));
    }
    host = host_port.substr(1, close - 1);
    port_text = host_port.substr(close + 2);
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("\"", host_port, "\" has no port"));
    }
    host = host_port.substr(0, colon);
    port_text = host_port.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", host_port, "\": write an IPv6 address in brackets, \"[::1]:80\""));
    }
  }
  uint32_t port;
  if (!absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", port_text, "\" is not a port number"));
  }
  if (host == "localhost") host = "127.0.0.1";

  Address addr;
  const std::string host_z(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr.storage_);
  if (inet_pton(AF_INET, host_z.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    addr.length_ = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host_z.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    addr.length_ = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", host, "\" is not a numeric IPv4 or IPv6 address"));
  }
  return addr;
}

Address Address::fromSockaddr(const sockaddr* sa, socklen_t len) {
  Address addr;
  if (len > sizeof(addr.storage_)) len = sizeof(addr.storage_);
  std::memcpy(static_cast<void*>(&addr.storage_), sa, len);
  addr.length_ = len;
  return addr;
}

Address Address::localOf(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return Address();
  return fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Address Address::peerOf(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return Address();
  return fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

uint16_t Address::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

void Address::setPort(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

std::string Address::ipString() const {
  char text[INET6_ADDRSTRLEN] = {0};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
              sizeof(text));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text,
              sizeof(text));
  }
  return text;
}

std::string Address::toString() const {
  if (family() == AF_INET6) return absl::StrCat("[", ipString(), "]:", port());
  if (family() == AF_INET) return absl::StrCat(ipString(), ":", port());
  return "-";
}

absl::StatusOr<Cidr> Cidr::parse(std::string_view text_view) {
  const std::string text(text_view);
  const size_t slash = text.find('/');
  const std::string ip(text.substr(0, slash));
  Cidr cidr;
  if (inet_pton(AF_INET, ip.c_str(), cidr.bytes_) == 1) {
    cidr.prefix_ = 32;
  } else if (inet_pton(AF_INET6, ip.c_str(), cidr.bytes_) == 1) {
    cidr.v6_ = true;
    cidr.prefix_ = 128;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not an address range such as 10.0.0.0/8 or ::1/128"));
  }
  if (slash != std::string::npos) {
    const std::string bits = text.substr(slash + 1);
    int prefix = 0;
    if (bits.empty() || bits.size() > 3 ||
        bits.find_first_not_of("0123456789") != std::string::npos ||
        (prefix = std::stoi(bits)) > cidr.prefix_) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": the prefix length must be 0..",
                                                     cidr.prefix_));
    }
    cidr.prefix_ = prefix;
  }
  return cidr;
}

bool Cidr::contains(const Address& address) const {
  const uint8_t* bytes = nullptr;
  if (address.family() == AF_INET && !v6_) {
    bytes = reinterpret_cast<const uint8_t*>(&address.storage_.in4.sin_addr);
  } else if (address.family() == AF_INET6) {
    bytes = reinterpret_cast<const uint8_t*>(&address.storage_.in6.sin6_addr);
    if (!v6_) {
      if (!IN6_IS_ADDR_V4MAPPED(&address.storage_.in6.sin6_addr)) return false;
      bytes += 12;
    }
  } else {
    return false;
  }
  const int whole = prefix_ / 8;
  if (std::memcmp(bytes, bytes_, whole) != 0) return false;
  const int rest = prefix_ % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes[whole] & mask) == (bytes_[whole] & mask);
}

std::string Cidr::toString() const {
  char text[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6_ ? AF_INET6 : AF_INET, bytes_, text, sizeof(text));
  return absl::StrCat(text, "/", prefix_);
}

}  // namespace connwarden::network
