#include "api/pem.h"

#include <fstream>
#include <iterator>

#include <fmt/format.h>

namespace edgeward::api {

Result<std::string> readPem(const std::string& path, std::string_view what) {
  if (path.empty()) return fail(ErrorCode::InvalidArgument, fmt::format("{} not set", what));
  std::ifstream in(path, std::ios::binary);
  if (!in) return failErrno(fmt::format("{} {}", what, path));
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (text.empty())
    return fail(ErrorCode::InvalidArgument, fmt::format("{} {} is empty", what, path));
  if (text.find("-----BEGIN ") == std::string::npos)
    return fail(ErrorCode::InvalidArgument, fmt::format("{} {}: not PEM", what, path));
  return text;
}

}  // namespace edgeward::api
