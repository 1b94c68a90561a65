// PEM files for TLS (certificates, keys, CA bundles), shared by the gRPC server and client and
// the HTTP listener.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace edgeward::api {

// The whole file. Errors name `what` ("CA file", ...) and the path: not set, unreadable, empty
// (an empty CA would turn client verification off), or holding no PEM block.
Result<std::string> readPem(const std::string& path, std::string_view what);

}  // namespace edgeward::api
