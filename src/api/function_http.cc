#include "api/function_http.h"

namespace edgeward::api {

HttpResponse functionResponse(const Result<FunctionOutput>& r) {
  if (!r) {
    int status = r.error().code() == ErrorCode::NotFound      ? 404
                 : r.error().code() == ErrorCode::Unavailable ? 503
                                                              : 500;
    return HttpResponse{status, "text/plain; charset=utf-8", r.error().str() + "\n", {}};
  }
  HttpResponse res{r->exitCode == 0 ? 200 : 500, "application/octet-stream", r->out, {}};
  res.headers["X-Edgeward-Exit-Code"] = std::to_string(r->exitCode);
  if (r->exitCode != 0) res.body += r->err;
  return res;
}

void serveFunctions(HttpServer& http, FunctionInvoker invoke) {
  http.post("/v1/functions/", [invoke = std::move(invoke)](const HttpRequest& req) {
    return functionResponse(invoke(req.name, req.body, req.identity));
  });
}

}  // namespace edgeward::api
