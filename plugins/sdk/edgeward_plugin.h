/* edgeward plugin SDK: the ABI between the agent (host) and a plugin (guest, wasm32-wasi).
 *
 * A plugin is a WebAssembly reactor module (clang-19 --target=wasm32-wasi -mexec-model=reactor)
 * that exports:
 *   int32_t ew_on_event(uint32_t ptr, uint32_t len)   required: one event (struct ew_event, or
 *                                                      bytes a previous plugin emitted); returns
 *                                                      EW_PASS, EW_DROP or EW_REPLACE
 *   void    ew_on_complete(int32_t token, int32_t status, uint32_t ptr, uint32_t len)
 *                                                      optional: an ew_publish/ew_timer finished
 *   uint32_t ew_alloc(uint32_t size)                   required: memory for host->guest buffers
 *                                                      (this header defines one with malloc)
 * and may import the functions below (module "edgeward"). Buffers passed to the guest are valid
 * during the call only. Everything is little-endian; pointers and lengths are 32-bit.
 * docs/plugins.md is the reference with a tutorial. */
#ifndef EDGEWARD_PLUGIN_H
#define EDGEWARD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgeward_event.h"

#define EW_ABI_VERSION 1

/* ew_on_event results */
#define EW_PASS 0    /* hand the event on unchanged */
#define EW_DROP 1    /* stop the event here */
#define EW_REPLACE 2 /* hand on the bytes given to ew_replace() during this call instead */

/* Negative results of host functions */
#define EW_ERR_INVALID -1   /* a pointer or length outside guest memory, or a bad argument */
#define EW_ERR_NOT_FOUND -2 /* ew_kv_get: no such key */
#define EW_ERR_TOO_BIG -3   /* over a size limit (topic 255 bytes, data 64 KiB, kv 1 MiB) */
#define EW_ERR_LIMIT -4     /* too many pending async operations (1024 per plugin) */

/* ew_on_complete status */
#define EW_OK                                                                                \
  0                    /* timer fired; publish: the destination has the message (written and \
                          synced to the agent's publish file; later, acknowledged by MQTT) */
#define EW_FAILED 1    /* publish: the destination refused or lost it, or none is configured */
#define EW_CANCELLED 2 /* the plugin was unloaded or replaced before completion */

enum ew_log_level { EW_LOG_DEBUG = 0, EW_LOG_INFO = 1, EW_LOG_WARN = 2, EW_LOG_ERROR = 3 };

#define EW_IMPORT(name) __attribute__((import_module("edgeward"), import_name(name)))
#define EW_EXPORT(name) __attribute__((export_name(name)))

/* Emits a new event on `topic` into the agent's pipeline (after this call returns). 0 or < 0. */
EW_IMPORT("ew_emit")
int32_t ew_emit(const char* topic, uint32_t topic_len, const void* data, uint32_t len);
/* Writes a line to the agent's log, tagged with the plugin's name. */
EW_IMPORT("ew_log") void ew_log(int32_t level, const char* msg, uint32_t len);
/* Copies the value of `key` into buf (at most cap bytes); returns its full length, which may be
 * more than cap (call again with a bigger buffer), or EW_ERR_NOT_FOUND. */
EW_IMPORT("ew_kv_get")
int32_t ew_kv_get(const char* key, uint32_t key_len, void* buf, uint32_t cap);
/* Stores a value for `key`; the plugin's store survives instance recycling and replacement. */
EW_IMPORT("ew_kv_set")
int32_t ew_kv_set(const char* key, uint32_t key_len, const void* val, uint32_t len);
/* CLOCK_REALTIME in nanoseconds. */
EW_IMPORT("ew_now") int64_t ew_now(void);
/* Publishes data on `topic` through the agent's sinks (MQTT, ...). Returns a token (> 0) that
 * ew_on_complete(token, status, ...) reports later, or < 0. */
EW_IMPORT("ew_publish")
int32_t ew_publish(const char* topic, uint32_t topic_len, const void* data, uint32_t len);
/* Returns a token (> 0); ew_on_complete(token, EW_OK, 0, 0) is called after `ms` milliseconds. */
EW_IMPORT("ew_timer") int32_t ew_timer(uint32_t ms);
/* The replacement for the current event when ew_on_event returns EW_REPLACE. 0 or < 0. */
EW_IMPORT("ew_replace") int32_t ew_replace(const void* data, uint32_t len);

/* Convenience wrappers for C strings. */
static inline void ew_log_str(int32_t level, const char* msg) {
  ew_log(level, msg, (uint32_t)strlen(msg));
}
static inline int32_t ew_emit_str(const char* topic, const void* data, uint32_t len) {
  return ew_emit(topic, (uint32_t)strlen(topic), data, len);
}
static inline int32_t ew_publish_str(const char* topic, const void* data, uint32_t len) {
  return ew_publish(topic, (uint32_t)strlen(topic), data, len);
}
/* Reads the event when ptr/len hold a struct ew_event (NULL for other payloads). */
static inline const struct ew_event* ew_event_of(uint32_t ptr, uint32_t len) {
  if (len < sizeof(struct ew_event)) return NULL;
  const struct ew_event* ev = (const struct ew_event*)(uintptr_t)ptr;
  return ev->version == EW_EVENT_VERSION && ev->size >= sizeof(struct ew_event) ? ev : NULL;
}

/* The default host->guest allocator. Weak, so a plugin may define its own ew_alloc. */
EW_EXPORT("ew_alloc") __attribute__((weak)) uint32_t ew_alloc(uint32_t size) {
  return (uint32_t)(uintptr_t)malloc(size ? size : 1);
}

#endif
