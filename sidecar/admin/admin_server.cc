#include "sidecar/admin/admin_server.h"

#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "sidecar/admin/admin_service.h"
#include "sidecar/event/log.h"

namespace connwarden::admin {

namespace {

absl::StatusOr<std::string> readFile(const std::string& path, const std::string& option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": cannot read \"", path, "\": ", strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<std::vector<std::string>> readTokens(const std::string& path,
                                                    const std::string& option) {
  if (path.empty()) return std::vector<std::string>{};
  auto text = readFile(path, option);
  if (!text.ok()) return text.status();
  std::vector<std::string> tokens;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(option, ": no token in \"", path, "\""));
  }
  return tokens;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials(const AdminOptions& options) {
  const bool cert = !options.tls_cert_file.empty();
  const bool key = !options.tls_key_file.empty();
  if (cert != key) {
    return absl::InvalidArgumentError(
        "--admin-tls-cert and --admin-tls-key: give both (or neither)");
  }
  if (!cert) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--admin-tls-client-ca: needs --admin-tls-cert and --admin-tls-key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  auto chain = readFile(options.tls_cert_file, "--admin-tls-cert");
  if (!chain.ok()) return chain.status();
  auto private_key = readFile(options.tls_key_file, "--admin-tls-key");
  if (!private_key.ok()) return private_key.status();
  ssl.pem_key_cert_pairs.push_back({*private_key, *chain});
  if (!options.tls_client_ca_file.empty()) {
    auto ca = readFile(options.tls_client_ca_file, "--admin-tls-client-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

std::string randomInstanceId() {
  std::random_device device;
  std::string id;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(device(), absl::kZeroPad8));
  return id;
}

}  // namespace

struct AdminServer::Impl {
  std::string bound_address;
  std::string instance_id;
  std::unique_ptr<ConnectionAdminService> service;
  std::unique_ptr<grpc::Server> server;
  bool stopped = false;
};

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::start(const AdminOptions& options,
                                                                conn::ConnectionControl& control) {
  if (options.address.empty()) return absl::InvalidArgumentError("--admin-address: empty");
  auto creds = credentials(options);
  if (!creds.ok()) return creds.status();
  Tokens tokens;
  auto read = readTokens(options.read_token_file, "--admin-read-token-file");
  if (!read.ok()) return read.status();
  auto admin = readTokens(options.admin_token_file, "--admin-admin-token-file");
  if (!admin.ok()) return admin.status();
  tokens.read = *std::move(read);
  tokens.admin = *std::move(admin);

  auto impl = std::make_unique<Impl>();
  impl->instance_id = randomInstanceId();
  impl->service = std::make_unique<ConnectionAdminService>(control, options, std::move(tokens),
                                                           impl->instance_id);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default: a second sidecar would share the port instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(options.address, *creds, &port);
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || port == 0) {
    if (impl->server != nullptr) impl->server->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "--admin-address: cannot listen on \"", options.address,
        "\" (address in use, not allowed, or malformed; see the log above)"));
  }
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  if (absl::StartsWith(options.address, "unix:")) {
    impl->bound_address = options.address;
  } else {
    const size_t colon = options.address.rfind(':');
    impl->bound_address = absl::StrCat(options.address.substr(0, colon), ":", port);
  }
  CW_LOG(kInfo, "admin API on %s (%s%s)", impl->bound_address,
         options.tls_cert_file.empty() ? "plaintext" : "tls",
         options.tls_client_ca_file.empty() ? "" : ", client certificates required");
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() { shutdown(); }

void AdminServer::shutdown() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->service->stopWatches();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  impl_->server->Wait();
}

const std::string& AdminServer::boundAddress() const { return impl_->bound_address; }
const std::string& AdminServer::instanceId() const { return impl_->instance_id; }

}  // namespace connwarden::admin
