// The agent's HTTP listener (cpp-httplib): GET /metrics, and POST endpoints such as
// /v1/functions/NAME. Plain HTTP, TLS, or mutual TLS (client certificates verified against a
// CA; the caller's identity is the certificate's first URI SAN, else its CN, as on the gRPC
// API). Handlers are adapters: the agent produces the bodies.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"

namespace httplib {
class Server;
}

namespace edgeward::api {

struct HttpTls {
  std::string cert, key;  // PEM: the server's certificate and key
  std::string clientCa;   // PEM: require client certificates signed by this CA ("" = no mTLS)
};

struct HttpRequest {
  std::string method, path, body;
  std::vector<std::string> captures;  // the pattern's groups
  std::string identity;               // client certificate identity ("" without mTLS)
  std::map<std::string, std::string> headers;
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

  explicit HttpServer(std::optional<HttpTls> tls = std::nullopt);
  ~HttpServer();  // stops and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void get(const std::string& path, Handler h);
  // `pattern` is a regular expression over the path; its groups become captures.
  void post(const std::string& pattern, RequestHandler h);
  // Binds host:port (port 0: any free port) and serves on a thread. Errors name the address
  // (or the TLS file that could not be loaded).
  Result<void> start(const std::string& address);
  void stop();
  int port() const { return port_; }

 private:
  std::optional<HttpTls> tls_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace edgeward::api
