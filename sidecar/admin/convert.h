// Between the admin API's messages (connwarden.admin.v1) and the conn layer's types: snapshots,
// selectors, durations, page tokens. Every error is INVALID_ARGUMENT and starts with the path of
// the request field at fault ("selector.peer_cidr: ..."), so the gRPC layer passes it on as is.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "connwarden/admin/v1/admin.pb.h"
#include "sidecar/conn/connection_manager.h"

namespace connwarden::admin {

namespace pb = ::connwarden::admin::v1;

// Validated durations: non-negative, at most a year. `field` names it in errors.
absl::StatusOr<std::chrono::milliseconds> fromProto(const google::protobuf::Duration& duration,
                                                    const std::string& field);
void toProto(std::chrono::milliseconds in, google::protobuf::Duration* out);
void toProto(std::chrono::system_clock::time_point in, google::protobuf::Timestamp* out);

pb::ConnectionState toProto(http::SessionState state);
absl::StatusOr<http::SessionState> fromProto(pb::ConnectionState state, const std::string& field);
pb::CloseReason toProto(network::CloseReason reason);
pb::CommandResult::Outcome toProto(conn::CommandResult::Outcome outcome);

void toProto(const conn::ConnectionSnapshot& in, pb::Connection* out);

// Names a selector may refer to: unknown ones are an error, not a silent empty match.
struct KnownNames {
  std::vector<std::string> routes;
  std::vector<std::string> listeners;
};
// `field` prefixes errors ("selector").
absl::StatusOr<conn::ConnectionSelector> fromProto(const pb::ConnectionSelector& in,
                                                   const KnownNames& names,
                                                   const std::string& field);
// True when no field that narrows the match is set (`all` aside).
bool selectsEverything(const pb::ConnectionSelector& in);

// Page tokens: opaque text carrying the offset of the next page and a hash of the query that
// made it (selector, sort, and this process's instance ID), so a token is refused for any other
// query or sidecar.
uint64_t queryHash(const pb::ListConnectionsRequest& request, const std::string& instance_id);
std::string encodePageToken(size_t offset, uint64_t query_hash);
// INVALID_ARGUMENT "page_token: ..." when malformed or made for another query.
absl::StatusOr<size_t> decodePageToken(const std::string& token, uint64_t query_hash);

}  // namespace connwarden::admin
