#include "api/http_server.h"

#include <charconv>

#include <fmt/format.h>
#include <httplib.h>

namespace edgeward::api {

HttpServer::HttpServer() : server_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::get(const std::string& path, Handler h) {
  server_->Get(path, [h = std::move(h)](const httplib::Request&, httplib::Response& res) {
    HttpResponse r = h();
    res.status = r.status;
    res.set_content(r.body, r.contentType.c_str());
  });
}

Result<void> HttpServer::start(const std::string& address) {
  auto colon = address.rfind(':');
  int port = -1;
  if (colon != std::string::npos) {
    auto p = std::string_view(address).substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size()) port = -1;
  }
  if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535)
    return fail(ErrorCode::InvalidArgument,
                fmt::format("http: address {} is not host:port", address));
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  server_->set_keep_alive_max_count(100);
  if (port == 0) {
    port_ = server_->bind_to_any_port(host.c_str());
    if (port_ < 0) return failErrno(fmt::format("http: cannot listen on {}", address));
  } else {
    if (!server_->bind_to_port(host.c_str(), port))
      return failErrno(fmt::format("http: cannot listen on {}", address));
    port_ = port;
  }
  thread_ = std::thread([s = server_.get()] { s->listen_after_bind(); });
  return {};
}

void HttpServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace edgeward::api
