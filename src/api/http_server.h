// The agent's HTTP listener (GNU libmicrohttpd): GET /metrics, and POST endpoints such as
// /v1/functions/NAME. Plain HTTP, TLS, or mutual TLS (client certificates verified against a
// CA; the caller's identity is the certificate's first URI SAN, else its CN, as on the gRPC
// API). Handlers are adapters: the agent produces the bodies.
//
// `threads` event loops (epoll) share the connections; a handler runs on its connection's loop,
// inline, as Envoy's workers run WebAssembly filters: no hand-over to another thread per request.
// A slow handler delays the other connections of its loop, so handlers must be bounded (function
// calls are, by their CPU limit).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

struct MHD_Daemon;
struct MHD_Connection;

namespace edgeward::api {

struct HttpTls {
  std::string cert, key;  // PEM files: the server's certificate and key
  std::string clientCa;   // PEM file: require client certificates signed by this CA ("" = no mTLS)
};

struct HttpRequest {
  std::string method, path, body;
  std::string name;      // a post() route: the path segment after its prefix
  std::string identity;  // client certificate identity ("" without mTLS)
};

struct HttpResponse {
  int status = 200;
  std::string contentType = "text/plain; charset=utf-8";
  std::string body;
  std::map<std::string, std::string> headers;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse()>;
  using RequestHandler = std::function<HttpResponse(const HttpRequest&)>;

  static constexpr size_t kMaxBody = 16u << 20;  // larger request bodies get 413

  explicit HttpServer(std::optional<HttpTls> tls = std::nullopt, unsigned threads = 1);
  ~HttpServer();  // stops and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes are added before start().
  void get(const std::string& path, Handler h);
  // Paths of `prefix` + NAME, NAME one non-empty path segment (no '/'), which reaches the
  // handler as HttpRequest::name.
  void post(const std::string& prefix, RequestHandler h);
  // Binds host:port (port 0: any free port) and serves. Errors name the address (or the TLS
  // file that could not be loaded).
  Result<void> start(const std::string& address);
  void stop();
  int port() const { return port_; }

  struct Callbacks;  // libmicrohttpd's callbacks (http_server.cc)

 private:
  HttpResponse route(HttpRequest& req) const;

  std::optional<HttpTls> tls_;
  unsigned threads_;
  std::string certPem_, keyPem_, caPem_;  // the daemon reads them from memory
  std::map<std::string, Handler> gets_;
  std::vector<std::pair<std::string, RequestHandler>> posts_;  // prefix, handler
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace edgeward::api
