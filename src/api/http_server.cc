#include "api/http_server.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "api/pem.h"
#include "common/unique_fd.h"

namespace edgeward::api {
namespace {

constexpr unsigned kIdleTimeoutSeconds = 30;

// A connection's client identity, checked once per connection (not per request).
struct Peer {
  bool checked = false;
  bool trusted = false;
  std::string identity;
};

std::string certIdentity(gnutls_x509_crt_t crt) {
  for (unsigned seq = 0;; seq++) {
    char buf[1024];
    size_t size = sizeof buf - 1;
    unsigned critical = 0;
    int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf, &size, &critical);
    if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
    if (type == GNUTLS_SAN_URI) return std::string(buf, size);
    // Other SAN types, or one too long for the buffer: not an identity; look further.
  }
  char cn[256];
  size_t size = sizeof cn;
  if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &size) == 0)
    return std::string(cn, size);
  return {};
}

// Per-request state: the body as it arrives.
struct Request {
  std::string body;
  bool tooLarge = false;
};

// Verifies the client's certificate chain (CA, validity dates) against the daemon's trust list.
void checkPeer(MHD_Connection* c, Peer& peer) {
  peer.checked = true;
  const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (!info || !info->tls_session) return;
  auto session = static_cast<gnutls_session_t>(info->tls_session);
  unsigned status = 0;
  if (gnutls_certificate_verify_peers2(session, &status) < 0 || status != 0) return;
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  if (!certs || n == 0) return;
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) < 0) return;
  if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
    peer.identity = certIdentity(crt);
    peer.trusted = true;
  }
  gnutls_x509_crt_deinit(crt);
}

MHD_Result send(MHD_Connection* c, const HttpResponse& r) {
  MHD_Response* res = MHD_create_response_from_buffer(
      r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (!res) return MHD_NO;
  MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, r.contentType.c_str());
  for (const auto& [k, v] : r.headers) MHD_add_response_header(res, k.c_str(), v.c_str());
  MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(r.status), res);
  MHD_destroy_response(res);
  return ok;
}

// host:port -> a bound, listening socket (SO_REUSEADDR only: a port in use is an error).
Result<UniqueFd> listenOn(const std::string& address) {
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
  if (host == "localhost") host = "127.0.0.1";
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v6;
  } else {
    return fail(ErrorCode::InvalidArgument,
                fmt::format("http: address {}: {} is not an IPv4 or IPv6 address", address, host));
  }
  UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return failErrno(fmt::format("http: cannot listen on {}", address));
  int yes = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  // Responses go out as soon as they are written (accepted sockets inherit it).
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(fd.get(), SOMAXCONN) != 0)
    return failErrno(fmt::format("http: cannot listen on {}", address));
  return fd;
}

}  // namespace

struct HttpServer::Callbacks {
  static MHD_Result onRequest(void* self, MHD_Connection* c, const char* url, const char* method,
                              const char*, const char* data, size_t* size, void** state) {
    auto* server = static_cast<HttpServer*>(self);
    if (!*state) {  // headers are in; the body (if any) follows in later calls
      *state = new Request;
      return MHD_YES;
    }
    auto* req = static_cast<Request*>(*state);
    if (*size) {
      if (req->body.size() + *size > kMaxBody)
        req->tooLarge = true;
      else
        req->body.append(data, *size);
      *size = 0;
      return MHD_YES;
    }
    HttpRequest r;
    if (!server->caPem_.empty()) {
      const MHD_ConnectionInfo* ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
      auto* peer = ci ? static_cast<Peer*>(ci->socket_context) : nullptr;
      if (!peer) return MHD_NO;
      if (!peer->checked) checkPeer(c, *peer);
      // An untrusted client (no certificate, another CA, expired) gets nothing: the connection
      // closes, as when a TLS handshake fails.
      if (!peer->trusted) return MHD_NO;
      r.identity = peer->identity;
    }
    if (req->tooLarge)
      return send(c, {413,
                      "text/plain; charset=utf-8",
                      fmt::format("request body over {} bytes\n", kMaxBody),
                      {}});
    r.method = method;
    r.path = url;
    r.body = std::move(req->body);
    return send(c, server->route(r));
  }

  static void onCompleted(void*, MHD_Connection*, void** state, MHD_RequestTerminationCode) {
    delete static_cast<Request*>(*state);
    *state = nullptr;
  }

  static void onConnection(void*, MHD_Connection*, void** socketState,
                           MHD_ConnectionNotificationCode code) {
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      *socketState = new Peer;
    } else {
      delete static_cast<Peer*>(*socketState);
      *socketState = nullptr;
    }
  }
};

HttpServer::HttpServer(std::optional<HttpTls> tls, unsigned threads)
    : tls_(std::move(tls)), threads_(std::max(1u, threads)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::get(const std::string& path, Handler h) { gets_[path] = std::move(h); }

void HttpServer::post(const std::string& prefix, RequestHandler h) {
  posts_.emplace_back(prefix, std::move(h));
}

HttpResponse HttpServer::route(HttpRequest& req) const {
  bool pathKnown = false;
  if (auto it = gets_.find(req.path); it != gets_.end()) {
    if (req.method == "GET" || req.method == "HEAD") return it->second();
    pathKnown = true;
  }
  for (const auto& [prefix, h] : posts_) {
    if (!req.path.starts_with(prefix) || req.path.size() == prefix.size() ||
        req.path.find('/', prefix.size()) != std::string::npos)
      continue;
    if (req.method != "POST") {
      pathKnown = true;
      continue;
    }
    req.name = req.path.substr(prefix.size());
    return h(req);
  }
  if (pathKnown)
    return {
        405, "text/plain; charset=utf-8", fmt::format("{} is not allowed here\n", req.method), {}};
  return {404, "text/plain; charset=utf-8", fmt::format("no such endpoint {}\n", req.path), {}};
}

Result<void> HttpServer::start(const std::string& address) {
  if (tls_) {
    EW_TRY(cert, readPem(tls_->cert, "http: certificate file"));
    EW_TRY(key, readPem(tls_->key, "http: key file"));
    certPem_ = std::move(*cert);
    keyPem_ = std::move(*key);
    if (!tls_->clientCa.empty()) {
      EW_TRY(ca, readPem(tls_->clientCa, "http: client CA file"));
      caPem_ = std::move(*ca);
    }
  }
  EW_TRY(fd, listenOn(address));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd->get(), reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);

  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO;
  if (tls_) flags |= MHD_USE_TLS;
  std::vector<MHD_OptionItem> opts = {
      {MHD_OPTION_LISTEN_SOCKET, fd->get(), nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&Callbacks::onCompleted), nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds, nullptr},
  };
  if (threads_ > 1) opts.push_back({MHD_OPTION_THREAD_POOL_SIZE, threads_, nullptr});
  if (tls_) {
    opts.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, certPem_.data()});
    opts.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, keyPem_.data()});
    if (!caPem_.empty()) {
      opts.push_back({MHD_OPTION_HTTPS_MEM_TRUST, 0, caPem_.data()});
      // Per-connection state only where there is something to keep: the checked identity.
      opts.push_back({MHD_OPTION_NOTIFY_CONNECTION,
                      reinterpret_cast<intptr_t>(&Callbacks::onConnection), nullptr});
    }
  }
  opts.push_back({MHD_OPTION_END, 0, nullptr});
  daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &Callbacks::onRequest, this,
                             MHD_OPTION_ARRAY, opts.data(), MHD_OPTION_END);
  if (!daemon_) {
    if (tls_)
      return fail(
          ErrorCode::InvalidArgument,
          fmt::format("http: cannot serve TLS on {} with certificate {} / key {}{}", address,
                      tls_->cert, tls_->key, caPem_.empty() ? "" : " / CA " + tls_->clientCa));
    return fail(ErrorCode::Internal, fmt::format("http: cannot serve on {}", address));
  }
  fd->release();  // the daemon owns the socket now and closes it at stop
  return {};
}

void HttpServer::stop() {
  if (daemon_) MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

}  // namespace edgeward::api
