#include "sidecar/admin/convert.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace connwarden::admin {

namespace {

constexpr int64_t kMaxSeconds = 365LL * 24 * 3600;
constexpr char kTokenVersion[] = "cw1";

uint64_t fnv1a(std::string_view bytes, uint64_t hash = 14695981039346656037ull) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

absl::StatusOr<std::chrono::milliseconds> fromProto(const google::protobuf::Duration& duration,
                                                    const std::string& field) {
  const int64_t seconds = duration.seconds();
  const int32_t nanos = duration.nanos();
  if (nanos <= -1'000'000'000 || nanos >= 1'000'000'000 || (seconds > 0 && nanos < 0) ||
      (seconds < 0 && nanos > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a valid duration (seconds ",
                                                   seconds, ", nanos ", nanos, ")"));
  }
  if (seconds < 0 || nanos < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not be negative"));
  }
  if (seconds > kMaxSeconds) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be at most 1 year (",
                                                   kMaxSeconds, "s)"));
  }
  return std::chrono::milliseconds(seconds * 1000 + nanos / 1'000'000);
}

void toProto(std::chrono::milliseconds in, google::protobuf::Duration* out) {
  out->set_seconds(in.count() / 1000);
  out->set_nanos(static_cast<int32_t>(in.count() % 1000) * 1'000'000);
}

void toProto(std::chrono::system_clock::time_point in, google::protobuf::Timestamp* out) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(in.time_since_epoch()).count();
  int64_t seconds = micros / 1'000'000;
  int64_t rest = micros % 1'000'000;
  if (rest < 0) {
    --seconds;
    rest += 1'000'000;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rest * 1000));
}

pb::ConnectionState toProto(http::SessionState state) {
  switch (state) {
    case http::SessionState::kHandshake: return pb::CONNECTION_STATE_HANDSHAKE;
    case http::SessionState::kIdle: return pb::CONNECTION_STATE_IDLE;
    case http::SessionState::kActive: return pb::CONNECTION_STATE_ACTIVE;
    case http::SessionState::kTunnel: return pb::CONNECTION_STATE_TUNNEL;
    case http::SessionState::kDraining: return pb::CONNECTION_STATE_DRAINING;
    case http::SessionState::kHibernating: return pb::CONNECTION_STATE_HIBERNATING;
  }
  return pb::CONNECTION_STATE_UNSPECIFIED;
}

absl::StatusOr<http::SessionState> fromProto(pb::ConnectionState state, const std::string& field) {
  switch (state) {
    case pb::CONNECTION_STATE_HANDSHAKE: return http::SessionState::kHandshake;
    case pb::CONNECTION_STATE_IDLE: return http::SessionState::kIdle;
    case pb::CONNECTION_STATE_ACTIVE: return http::SessionState::kActive;
    case pb::CONNECTION_STATE_TUNNEL: return http::SessionState::kTunnel;
    case pb::CONNECTION_STATE_DRAINING: return http::SessionState::kDraining;
    case pb::CONNECTION_STATE_HIBERNATING: return http::SessionState::kHibernating;
    default: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": unknown connection state ", static_cast<int>(state)));
}

pb::CloseReason toProto(network::CloseReason reason) {
  const int value = static_cast<int>(reason);
  // The two enums share their numbers (admin.proto lists them in CloseReason's order).
  return pb::CloseReason_IsValid(value) ? static_cast<pb::CloseReason>(value)
                                        : pb::CLOSE_REASON_UNSPECIFIED;
}

pb::CommandResult::Outcome toProto(conn::CommandResult::Outcome outcome) {
  switch (outcome) {
    case conn::CommandResult::Outcome::kNotFound: return pb::CommandResult::OUTCOME_NOT_FOUND;
    case conn::CommandResult::Outcome::kClosed: return pb::CommandResult::OUTCOME_CLOSED;
    case conn::CommandResult::Outcome::kDraining: return pb::CommandResult::OUTCOME_DRAINING;
  }
  return pb::CommandResult::OUTCOME_UNSPECIFIED;
}

void toProto(const conn::ConnectionSnapshot& in, pb::Connection* out) {
  out->set_id(in.id);
  out->set_worker(in.worker);
  out->set_listener(in.listener);
  out->set_peer_address(in.peer);
  out->set_local_address(in.local);
  out->set_tls(in.tls);
  out->set_tls_version(in.tls_info.version);
  out->set_alpn(in.tls_info.alpn);
  out->set_sni(in.tls_info.sni);
  out->set_protocol(in.protocol);
  out->set_state(toProto(in.state));
  out->set_route(in.route);
  if (in.created.time_since_epoch().count() != 0) toProto(in.created, out->mutable_created_time());
  if (in.last_activity.time_since_epoch().count() != 0) {
    toProto(in.last_activity, out->mutable_last_activity_time());
  }
  toProto(in.age, out->mutable_age());
  toProto(in.idle, out->mutable_idle());
  out->set_requests(in.requests);
  out->set_bytes_in(in.bytes_in);
  out->set_bytes_out(in.bytes_out);
  pb::MemoryUsage* memory = out->mutable_memory();
  memory->set_total_bytes(in.memory.total);
  memory->set_buffer_bytes(in.memory.buffers);
  memory->set_tls_bytes(in.memory.tls);
  memory->set_codec_bytes(in.memory.codec);
  memory->set_other_bytes(in.memory.other);
  memory->set_peak_bytes(in.memory.peak);
  out->set_close_reason(toProto(in.close_reason));
}

absl::StatusOr<conn::ConnectionSelector> fromProto(const pb::ConnectionSelector& in,
                                                   const KnownNames& names,
                                                   const std::string& field) {
  conn::ConnectionSelector out;
  if (in.state() != pb::CONNECTION_STATE_UNSPECIFIED) {
    auto state = fromProto(in.state(), field + ".state");
    if (!state.ok()) return state.status();
    out.state = *state;
  }
  if (!in.route().empty()) {
    if (std::find(names.routes.begin(), names.routes.end(), in.route()) == names.routes.end()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".route: no route named \"",
                                                     in.route(), "\""));
    }
    out.route = in.route();
  }
  if (!in.listener().empty()) {
    if (std::find(names.listeners.begin(), names.listeners.end(), in.listener()) ==
        names.listeners.end()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".listener: no listener named \"",
                                                     in.listener(), "\""));
    }
    out.listener = in.listener();
  }
  if (!in.peer_cidr().empty()) {
    auto cidr = network::Cidr::parse(in.peer_cidr());
    if (!cidr.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".peer_cidr: ", cidr.status().message()));
    }
    out.peer = *cidr;
  }
  if (in.has_min_idle()) {
    auto idle = fromProto(in.min_idle(), field + ".min_idle");
    if (!idle.ok()) return idle.status();
    out.idle_at_least = *idle;
  }
  if (in.has_min_age()) {
    auto age = fromProto(in.min_age(), field + ".min_age");
    if (!age.ok()) return age.status();
    out.age_at_least = *age;
  }
  if (in.min_memory_bytes() > 0) {
    if (in.min_memory_bytes() > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".min_memory_bytes: too large"));
    }
    out.memory_at_least = static_cast<int64_t>(in.min_memory_bytes());
  }
  return out;
}

bool selectsEverything(const pb::ConnectionSelector& in) {
  return in.state() == pb::CONNECTION_STATE_UNSPECIFIED && in.route().empty() &&
         in.listener().empty() && in.peer_cidr().empty() && !in.has_min_idle() &&
         !in.has_min_age() && in.min_memory_bytes() == 0;
}

uint64_t queryHash(const pb::ListConnectionsRequest& request, const std::string& instance_id) {
  pb::ListConnectionsRequest query;
  *query.mutable_selector() = request.selector();
  query.mutable_selector()->set_all(false);
  query.set_sort_by(request.sort_by() == pb::ListConnectionsRequest::SORT_BY_ID
                        ? pb::ListConnectionsRequest::SORT_BY_UNSPECIFIED
                        : request.sort_by());
  query.set_descending(request.descending());
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    query.SerializeToCodedStream(&coded);
  }
  return fnv1a(bytes, fnv1a(instance_id));
}

std::string encodePageToken(size_t offset, uint64_t query_hash) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(kTokenVersion, ":", offset, ":", absl::Hex(query_hash)));
}

absl::StatusOr<size_t> decodePageToken(const std::string& token, uint64_t query_hash) {
  std::string text;
  if (!absl::WebSafeBase64Unescape(token, &text)) {
    return absl::InvalidArgumentError("page_token: malformed (not a token this API made)");
  }
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  size_t offset = 0;
  uint64_t hash = 0;
  if (parts.size() != 3 || parts[0] != kTokenVersion || !absl::SimpleAtoi(parts[1], &offset) ||
      !absl::SimpleHexAtoi(parts[2], &hash)) {
    return absl::InvalidArgumentError("page_token: malformed (not a token this API made)");
  }
  if (hash != query_hash) {
    return absl::InvalidArgumentError(
        "page_token: made for another query (the selector and sort must stay the same across "
        "pages) or another sidecar");
  }
  return offset;
}

}  // namespace connwarden::admin
