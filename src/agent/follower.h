// Follow mode: the agent subscribes to an upstream `edgeward controller` and applies every
// policy it pushes for the agent's group. While disconnected it keeps enforcing the last good
// policy and reconnects with exponential backoff; the state shows in status and Watch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "agent/agent.h"
#include "agent/config.h"

namespace grpc {
class ClientContext;
}

namespace edgeward::agent {

class Follower {
 public:
  Follower(Agent& agent, UpstreamConfig cfg);
  ~Follower();  // stops the stream and the thread

 private:
  void run();
  bool sleepFor(std::chrono::milliseconds d);  // false when stopping

  Agent& agent_;
  UpstreamConfig cfg_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  grpc::ClientContext* ctx_ = nullptr;  // the open stream, to cancel it
  std::thread thread_;
};

}  // namespace edgeward::agent
