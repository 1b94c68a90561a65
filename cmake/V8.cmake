# V8 from Debian's libnode108 (see PLATFORM.md): the project-local unpack in .deps/libnode that
# scripts/setup-deps.sh makes where libnode-dev cannot be installed, else the system libnode-dev.
# Yields the imported target edgeward::v8 (headers as SYSTEM, RPATH to the library's folder).
set(_ew_v8_local ${PROJECT_SOURCE_DIR}/.deps/libnode/usr)
find_path(V8_INCLUDE_DIR v8-version.h PATHS ${_ew_v8_local}/include/node NO_DEFAULT_PATH)
find_library(V8_LIBRARY NAMES node PATHS ${_ew_v8_local}/lib/x86_64-linux-gnu NO_DEFAULT_PATH)
if(NOT V8_INCLUDE_DIR OR NOT V8_LIBRARY)
  find_path(V8_INCLUDE_DIR v8-version.h PATHS /usr/include/node NO_DEFAULT_PATH)
  find_library(V8_LIBRARY NAMES node)
endif()
if(NOT V8_INCLUDE_DIR OR NOT V8_LIBRARY)
  message(FATAL_ERROR "V8 (libnode-dev) not found: run scripts/setup-deps.sh as root")
endif()
file(STRINGS ${V8_INCLUDE_DIR}/v8-version.h _ew_v8_major REGEX "#define V8_MAJOR_VERSION")
string(REGEX MATCH "[0-9]+$" _ew_v8_major "${_ew_v8_major}")
if(NOT _ew_v8_major STREQUAL "10")
  # /usr/include/node of another nodejs has other V8 headers than libnode108's library.
  message(FATAL_ERROR "${V8_INCLUDE_DIR} has V8 ${_ew_v8_major} headers, libnode108 needs 10: run scripts/setup-deps.sh as root")
endif()
message(STATUS "V8: ${V8_LIBRARY} (headers ${V8_INCLUDE_DIR})")
add_library(edgeward_v8 INTERFACE)
add_library(edgeward::v8 ALIAS edgeward_v8)
target_include_directories(edgeward_v8 SYSTEM INTERFACE ${V8_INCLUDE_DIR})
target_link_libraries(edgeward_v8 INTERFACE ${V8_LIBRARY})
