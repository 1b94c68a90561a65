// edgeward agent --config FILE: the long-running agent, in the foreground.
#include <signal.h>

#include <thread>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/follower.h"
#include "api/grpc_server.h"
#include "api/function_http.h"
#include "api/http_server.h"
#include "cli/commands.h"

namespace edgeward::cli {
namespace {

void runAgent(const std::string& configPath) {
  auto cfg = orExit(agent::loadAgentConfig(configPath));

  // SIGINT/SIGTERM are taken synchronously below; block them before any thread starts.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto ag = orExit(agent::Agent::start(cfg));
  api::ApiServerConfig api;
  api.unixPath = cfg.unixSocket;
  if (cfg.tcp) {
    api.tcpAddress = cfg.tcp->address;
    api.caFile = cfg.tcp->tls.ca;
    api.certFile = cfg.tcp->tls.cert;
    api.keyFile = cfg.tcp->tls.key;
    api.roles = cfg.tcp->roles;
  }
  api::ApiServer server(*ag, api);
  orExit(server.start());

  api::HttpServer http;
  if (!cfg.metricsAddress.empty()) {
    http.get("/metrics", [&ag] {
      auto text = ag->metricsText();
      if (!text) return api::HttpResponse{500, "text/plain", text.error().str() + "\n"};
      return api::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", *text};
    });
    orExit(http.start(cfg.metricsAddress));
  }

  // Functions: POST /v1/functions/NAME, body -> stdin, stdout -> response, exit code -> status.
  std::optional<api::HttpServer> fnHttp;
  if (!cfg.plugins.functionsAddress.empty()) {
    const auto& t = cfg.plugins.functionsTls;
    fnHttp.emplace(t.cert.empty() ? std::nullopt
                                  : std::optional<api::HttpTls>(api::HttpTls{t.cert, t.key, t.ca}),
                   cfg.plugins.functionsThreads
                       ? cfg.plugins.functionsThreads
                       : std::max(1u, std::thread::hardware_concurrency()));
    api::serveFunctions(
        *fnHttp, [&ag](const std::string& name, std::string body, const std::string& caller) {
          return ag->invokeFunction(name, std::move(body), caller);
        });
    orExit(fnHttp->start(cfg.plugins.functionsAddress));
  }

  std::unique_ptr<agent::Follower> follower;
  if (cfg.upstream) follower = std::make_unique<agent::Follower>(*ag, *cfg.upstream);

  auto st = orExit(ag->status());
  fmt::print("edgeward agent: policy version {}{}; {} link(s); API on unix://{}{}\n",
             st.policy.version, st.policy.version ? " (" + st.policy.name + ")" : " (none yet)",
             st.interfaces.size(), cfg.unixSocket,
             cfg.tcp ? fmt::format(" and {} (mTLS)", cfg.tcp->address) : "");
  if (!cfg.metricsAddress.empty()) fmt::print("  metrics: http://{}/metrics\n", cfg.metricsAddress);
  for (const auto& note : ag->startupNotes()) fmt::print("  {}\n", note);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  fmt::print(
      "edgeward agent: {} received; the data plane stays pinned and keeps enforcing "
      "(`edgeward reset` removes it)\n",
      sig == SIGTERM ? "SIGTERM" : "SIGINT");
  follower.reset();
  if (fnHttp) fnHttp->stop();
  http.stop();
  server.shutdown();
}

}  // namespace

void addAgentCommand(CLI::App& app) {
  static std::string config;
  auto* cmd = app.add_subcommand("agent", "Run the agent in the foreground (see docs/config.md)");
  cmd->add_option("-c,--config", config, "Agent config file")->required();
  cmd->callback([] { runAgent(config); });
}

}  // namespace edgeward::cli
