// connwarden.admin.v1.ConnectionAdmin on gRPC's callback API. Each call is checked (token scope,
// arguments) on the gRPC thread that receives it, then carried out on the admin executor's own
// threads, which reach connections only through conn::ConnectionControl and wait for the workers
// at most until the call's deadline. Watch streams are fed by ConnectionControl subscriptions,
// whose callbacks run on worker threads: they only append to the watcher's bounded queue and
// never block; the executor turns the queue into writes.
//
//   worker thread                  executor thread                gRPC thread
//   offer(event) ─▶ queue (≤ cap) ─▶ pump(): StartWrite(next) ─▶ OnWriteDone ─▶ pump() ...
//        └ full: overflowed ──────▶ pump(): unsubscribe, Finish(RESOURCE_EXHAUSTED)
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "connwarden/admin/v1/admin.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "sidecar/admin/admin_server.h"
#include "sidecar/admin/convert.h"
#include "sidecar/conn/control.h"

namespace connwarden::admin {

// A few threads of our own for the admin work: gRPC's callback threads must not block.
class AdminExecutor {
 public:
  explicit AdminExecutor(size_t threads);
  // Runs what is queued, then joins.
  ~AdminExecutor();
  // Never blocks beyond a short mutex: callable from worker threads.
  void post(std::function<void()> task);

 private:
  void run();
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mutex_)
  bool stopping_ = false;                    // GUARDED_BY(mutex_)
  std::vector<std::thread> threads_;
};

// Bearer tokens by scope. Empty: calls need no token.
struct Tokens {
  std::vector<std::string> read;
  std::vector<std::string> admin;
  bool required() const { return !read.empty() || !admin.empty(); }
};

class ConnectionAdminService final : public v1::ConnectionAdmin::CallbackService {
 public:
  ConnectionAdminService(conn::ConnectionControl& control, const AdminOptions& options,
                         Tokens tokens, std::string instance_id);
  ~ConnectionAdminService() override;

  // Ends every open watch (CANCELLED) so that the server can shut down.
  void stopWatches();

  grpc::ServerUnaryReactor* ListConnections(grpc::CallbackServerContext* context,
                                            const pb::ListConnectionsRequest* request,
                                            pb::ListConnectionsResponse* response) override;
  grpc::ServerUnaryReactor* GetConnection(grpc::CallbackServerContext* context,
                                          const pb::GetConnectionRequest* request,
                                          pb::Connection* response) override;
  grpc::ServerUnaryReactor* DrainConnections(grpc::CallbackServerContext* context,
                                             const pb::DrainConnectionsRequest* request,
                                             pb::CommandResponse* response) override;
  grpc::ServerUnaryReactor* KillConnections(grpc::CallbackServerContext* context,
                                            const pb::KillConnectionsRequest* request,
                                            pb::CommandResponse* response) override;
  grpc::ServerWriteReactor<pb::ConnectionEvent>* WatchConnections(
      grpc::CallbackServerContext* context, const pb::WatchConnectionsRequest* request) override;
  grpc::ServerUnaryReactor* ListRoutePolicies(grpc::CallbackServerContext* context,
                                              const pb::ListRoutePoliciesRequest* request,
                                              pb::ListRoutePoliciesResponse* response) override;
  grpc::ServerUnaryReactor* SetRoutePolicy(grpc::CallbackServerContext* context,
                                           const pb::SetRoutePolicyRequest* request,
                                           pb::RoutePolicyEntry* response) override;
  grpc::ServerUnaryReactor* ResetRoutePolicy(grpc::CallbackServerContext* context,
                                             const pb::ResetRoutePolicyRequest* request,
                                             pb::RoutePolicyEntry* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const pb::GetServerInfoRequest* request,
                                          pb::ServerInfo* response) override;

  class WatchReactor;

 private:
  enum class Scope { kRead, kAdmin };
  grpc::Status authorize(const grpc::CallbackServerContext& context, Scope scope,
                         const char* method) const;
  // How long this call may wait for the workers: the call's deadline, capped by the options.
  std::chrono::milliseconds timeoutFor(const grpc::CallbackServerContext& context) const;
  // Checks the scope, then runs `work` on the executor and finishes the call with its status.
  grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* context, Scope scope,
                                  const char* method,
                                  std::function<grpc::Status(std::chrono::milliseconds)> work);
  grpc::Status command(const google::protobuf::RepeatedField<uint64_t>& ids,
                       const pb::ConnectionSelector& selector,
                       std::optional<std::chrono::milliseconds> deadline, bool kill,
                       std::chrono::milliseconds timeout, pb::CommandResponse* response);
  grpc::Status policyEntry(const std::string& route, pb::RoutePolicyEntry* out) const;

  conn::ConnectionControl& control_;
  const AdminOptions options_;
  const Tokens tokens_;
  const std::string instance_id_;
  const std::chrono::system_clock::time_point started_;
  const std::chrono::steady_clock::time_point started_steady_;
  KnownNames names_;

  std::mutex watches_mutex_;
  std::vector<std::weak_ptr<WatchReactor>> watches_;  // GUARDED_BY(watches_mutex_)
  // Last member: destroyed (joined) first, while everything its tasks touch is still alive.
  AdminExecutor executor_;
};

}  // namespace connwarden::admin
