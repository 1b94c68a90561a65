#include "api/http_server.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <charconv>
#include <fstream>

#include <fmt/format.h>
#include <httplib.h>

namespace edgeward::api {
namespace {

// The first URI SAN of the peer's certificate, else its CN; "" when there is none.
std::string peerIdentity(const SSL* ssl) {
  if (!ssl) return {};
  X509* cert = SSL_get_peer_certificate(ssl);
  if (!cert) return {};
  std::string id;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && id.empty(); i++) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
    if (n->type == GEN_URI)
      id.assign(
          reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.uniformResourceIdentifier)),
          ASN1_STRING_length(n->d.uniformResourceIdentifier));
  }
  if (sans) GENERAL_NAMES_free(sans);
  if (id.empty()) {
    char cn[256] = "";
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0)
      id = cn;
  }
  X509_free(cert);
  return id;
}

void fill(const HttpResponse& r, httplib::Response& res) {
  res.status = r.status;
  for (const auto& [k, v] : r.headers) res.set_header(k, v);
  res.set_content(r.body, r.contentType.c_str());
}

}  // namespace

HttpServer::HttpServer(std::optional<HttpTls> tls) : tls_(std::move(tls)) {
  if (tls_)
    server_ = std::make_unique<httplib::SSLServer>(
        tls_->cert.c_str(), tls_->key.c_str(),
        tls_->clientCa.empty() ? nullptr : tls_->clientCa.c_str());
  else
    server_ = std::make_unique<httplib::Server>();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::get(const std::string& path, Handler h) {
  server_->Get(path, [h = std::move(h)](const httplib::Request&, httplib::Response& res) {
    fill(h(), res);
  });
}

void HttpServer::post(const std::string& pattern, RequestHandler h) {
  server_->Post(pattern, [h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r;
    r.method = req.method;
    r.path = req.path;
    r.body = req.body;
    for (size_t i = 1; i < req.matches.size(); i++) r.captures.push_back(req.matches[i]);
    for (const auto& [k, v] : req.headers) r.headers[k] = v;
    r.identity = peerIdentity(req.ssl);
    fill(h(r), res);
  });
}

Result<void> HttpServer::start(const std::string& address) {
  if (tls_) {
    for (const auto& f : {tls_->cert, tls_->key, tls_->clientCa})
      if (!f.empty() && !std::ifstream(f))
        return failErrno(fmt::format("http: cannot read TLS file {}", f));
    if (!server_->is_valid())
      return fail(ErrorCode::InvalidArgument,
                  fmt::format("http: cannot load the TLS certificate {} / key {}{}", tls_->cert,
                              tls_->key, tls_->clientCa.empty() ? "" : " / CA " + tls_->clientCa));
  }
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
  // httplib's default adds SO_REUSEPORT, which would let a second agent share the port
  // silently; a port in use must be an error.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
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
