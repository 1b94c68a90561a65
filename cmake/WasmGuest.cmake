# wasm_guest(NAME SOURCES src.c... [OUTPUT_DIR dir] [REACTOR] [FLAGS flags...])
# Builds a C guest with clang-19 --target=wasm32-wasi against Debian's wasi-libc into
# OUTPUT_DIR/NAME.wasm (default: the current binary dir), as part of `all`. REACTOR builds a
# library-style module (plugins: exports called many times) instead of a command (_start).
find_program(WASM_CLANG NAMES clang-19 REQUIRED)
set(WASM_SYSROOT /usr CACHE PATH "sysroot holding include/wasm32-wasi and lib/wasm32-wasi")

function(wasm_guest name)
  cmake_parse_arguments(ARG "REACTOR" "OUTPUT_DIR" "SOURCES;FLAGS" ${ARGN})
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  set(out ${ARG_OUTPUT_DIR}/${name}.wasm)
  set(srcs)
  foreach(s ${ARG_SOURCES})
    list(APPEND srcs ${CMAKE_CURRENT_SOURCE_DIR}/${s})
  endforeach()
  set(model)
  if(ARG_REACTOR)
    set(model -mexec-model=reactor)
  endif()
  file(GLOB sdk ${PROJECT_SOURCE_DIR}/plugins/sdk/*.h)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${ARG_OUTPUT_DIR}
    COMMAND ${WASM_CLANG} --target=wasm32-wasi --sysroot=${WASM_SYSROOT} -O2 -Wall -Wextra -Werror
            ${model} -I${PROJECT_SOURCE_DIR}/plugins/sdk ${ARG_FLAGS} -o ${out} ${srcs}
    DEPENDS ${srcs} ${sdk}
    COMMENT "wasm guest ${name}.wasm"
    VERBATIM)
  add_custom_target(${name}_wasm ALL DEPENDS ${out})
endfunction()

# wat_module(NAME SOURCE file.wat [OUTPUT_DIR dir]): a hand-written module through wabt's wat2wasm.
find_program(WAT2WASM NAMES wat2wasm REQUIRED)
function(wat_module name)
  cmake_parse_arguments(ARG "" "SOURCE;OUTPUT_DIR" "" ${ARGN})
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  set(out ${ARG_OUTPUT_DIR}/${name}.wasm)
  add_custom_command(OUTPUT ${out}
    COMMAND ${WAT2WASM} ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_SOURCE} -o ${out}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_SOURCE}
    COMMENT "wat2wasm ${name}.wasm"
    VERBATIM)
  add_custom_target(${name}_wasm ALL DEPENDS ${out})
endfunction()
