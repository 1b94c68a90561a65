// Conversions between the edgeward.v1 messages and the AgentControl types, and between
// ErrorCode and gRPC status codes. Private to src/api: shared by the server and the client.
#pragma once

#include <grpcpp/support/status.h>

#include "api/control.h"
#include "edgeward/v1/agent.pb.h"

namespace edgeward::api::convert {

void toProto(const VersionInfo& in, v1::VersionInfo* out);
VersionInfo fromProto(const v1::VersionInfo& in);

void toProto(const policy::PolicyDiff& in, v1::PolicyDiff* out);
// Fails only when a prefix in the message does not parse.
Result<policy::PolicyDiff> fromProto(const v1::PolicyDiff& in);

void toProto(const ApplyResult& in, v1::ApplyPolicyResponse* out);
Result<ApplyResult> fromProto(const v1::ApplyPolicyResponse& in);

void toProto(const Status& in, v1::Status* out);
Status fromProto(const v1::Status& in);

void toProto(const WatchEvent& in, v1::WatchEvent* out);
void toProto(const NamedEvent& in, v1::Event* out);
void toProto(const ModuleInfo& in, v1::ModuleInfo* out);
ModuleInfo fromProto(const v1::ModuleInfo& in);
WatchEvent fromProto(const v1::WatchEvent& in);

// InvalidArgument -> INVALID_ARGUMENT, NotFound -> NOT_FOUND, Conflict -> ABORTED,
// PermissionDenied -> PERMISSION_DENIED, Unavailable -> UNAVAILABLE, others -> INTERNAL.
grpc::StatusCode toGrpcCode(ErrorCode c);
grpc::Status toGrpcStatus(const Error& e);
// The inverse, for the client; UNAUTHENTICATED also maps to PermissionDenied and
// DEADLINE_EXCEEDED to Unavailable.
ErrorCode fromGrpcCode(grpc::StatusCode c);

}  // namespace edgeward::api::convert
