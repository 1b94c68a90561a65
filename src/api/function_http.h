// Functions over HTTP: POST /v1/functions/NAME. The request body is the function's stdin, its
// stdout is the response; the agent and the benchmarks mount the same route.
//
//   api::HttpServer http(tls, threads);
//   api::serveFunctions(http, [&](const std::string& name, std::string body,
//                                 const std::string& caller) { return invoke(...); });
#pragma once

#include <functional>
#include <string>

#include "api/control.h"
#include "api/http_server.h"

namespace edgeward::api {

// (function name, request body, caller identity from the client certificate or "").
using FunctionInvoker =
    std::function<Result<FunctionOutput>(const std::string&, std::string, const std::string&)>;

// Exit code 0 -> 200 with stdout; another exit code -> 500 with stdout then stderr; the exit code
// is in X-Edgeward-Exit-Code. Errors: 404 no such function, 503 busy or over its call rate, 500
// any other failure (a limit that ended the call, a trap), the error text as the body.
HttpResponse functionResponse(const Result<FunctionOutput>& r);

void serveFunctions(HttpServer& http, FunctionInvoker invoke);

}  // namespace edgeward::api
