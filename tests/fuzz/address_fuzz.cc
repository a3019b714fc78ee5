// Fuzzes the address parsers: "host:port" (config files) and CIDR ranges (the admin API's peer
// selectors, from any gRPC client). Besides "no crash": what parses formats back to text that
// parses to the same thing, and a range contains the address it was written from.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "sidecar/network/address.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using connwarden::network::Address;
  using connwarden::network::Cidr;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (const auto address = Address::parse(text); address.ok()) {
    const std::string formatted = address->toString();
    const auto again = Address::parse(formatted);
    FUZZ_CHECK(again.ok(), "\"" + formatted + "\" does not parse back");
    FUZZ_CHECK(
        again->length() == address->length() &&
            std::memcmp(again->sockaddr_ptr(), address->sockaddr_ptr(), address->length()) == 0,
        "\"" + formatted + "\" parses to another address");
    const auto host = Cidr::parse(address->ipString());
    FUZZ_CHECK(host.ok() && host->contains(*address),
               "the range of " + address->ipString() + " does not contain it");
  } else {
    FUZZ_CHECK(!address.status().message().empty(), "an error without a message");
  }

  if (const auto range = Cidr::parse(text); range.ok()) {
    const std::string formatted = range->toString();
    const auto again = Cidr::parse(formatted);
    FUZZ_CHECK(again.ok() && again->toString() == formatted,
               "\"" + formatted + "\" does not parse back to itself");
  } else {
    FUZZ_CHECK(!range.status().message().empty(), "an error without a message");
  }
  return 0;
}
