// Socket addresses: parsing "host:port" / "[v6]:port", formatting, and CIDR ranges.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace connwarden::network {

class Address {
 public:
  Address() = default;
  // Parses a numeric "a.b.c.d:port" or "[v6]:port". "localhost" is accepted as 127.0.0.1.
  // No DNS: a sidecar's addresses are numeric.
  static absl::StatusOr<Address> parse(std::string_view host_port);
  static Address fromSockaddr(const sockaddr* sa, socklen_t len);
  // The local or peer address of a connected socket.
  static Address localOf(int fd);
  static Address peerOf(int fd);

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }
  int family() const { return storage_.sa.sa_family; }
  uint16_t port() const;
  void setPort(uint16_t port);
  // "1.2.3.4:80" or "[::1]:80".
  std::string toString() const;
  // The IP alone, for X-Forwarded-For.
  std::string ipString() const;
  bool valid() const { return length_ != 0; }

 private:
  friend class Cidr;
  // IPv4 and IPv6 only: 28 bytes, not sockaddr_storage's 128 (two per connection). Zeroed
  // whole: `Storage storage_{}` zeroes only the first member (16 bytes), which left an IPv6
  // address's scope id to the compiler (clang kept garbage there; found by fuzz_address).
  union Storage {
    Storage() { std::memset(this, 0, sizeof(*this)); }
    sockaddr sa;
    sockaddr_in in4;
    sockaddr_in6 in6;
  };
  Storage storage_;
  socklen_t length_ = 0;
};

// An address range such as "10.0.0.0/8", "::1/128" or a bare address (a single host). An IPv4
// range also matches IPv4-mapped IPv6 peers (::ffff:a.b.c.d).
class Cidr {
 public:
  static absl::StatusOr<Cidr> parse(std::string_view text);
  bool contains(const Address& address) const;
  std::string toString() const;

 private:
  bool v6_ = false;
  uint8_t bytes_[16] = {};
  int prefix_ = 0;
};

}  // namespace connwarden::network
