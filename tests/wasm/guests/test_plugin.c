/* A plugin whose behaviour the test picks per event through ew_event.value, for
 * plugin_manager_test.cc and limits_test.cc. PLUGIN_VERSION 2 drops what version 1 passes. */
#include <stdio.h>

#include "edgeward_plugin.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION 1
#endif

enum action {
  A_PASS = 0, A_DROP = 1, A_REPLACE = 2, A_SPIN = 3, A_BOMB = 4, A_RECURSE = 5, A_COUNT = 6,
  A_ASYNC = 7, A_BAD_POINTER = 8, A_BAD_VERDICT = 9, A_REPLACE_MISSING = 10, A_GLOBAL = 11,
  A_PRINT = 12,
};

static int32_t calls_this_instance;
static char* volatile bomb_sink;

static uint32_t kv_counter(const char* key) {
  uint32_t n = 0;
  int32_t len = ew_kv_get(key, (uint32_t)strlen(key), &n, sizeof n);
  if (len != (int32_t)sizeof n) n = 0;
  n++;
  ew_kv_set(key, (uint32_t)strlen(key), &n, sizeof n);
  return n;
}

/* Recursion on the engine's call stack only (no locals in linear memory): an indirect call
 * keeps the compiler from turning it into a loop. */
static uint32_t recurse(uint32_t n);
static uint32_t (*volatile recurse_ptr)(uint32_t) = recurse;
static uint32_t recurse(uint32_t n) { return n == 0 ? 0 : 1 + recurse_ptr(n - 1); }

EW_EXPORT("ew_on_event") int32_t on_event(uint32_t ptr, uint32_t len) {
  const struct ew_event* ev = ew_event_of(ptr, len);
  if (!ev) return EW_PASS; /* not an event record: hand it on */
  calls_this_instance++;
  switch (ev->value) {
    case A_PASS:
      return PLUGIN_VERSION == 1 ? EW_PASS : EW_DROP;
    case A_DROP:
      return EW_DROP;
    case A_REPLACE: {
      struct ew_event copy = *ev;
      copy.rule = 42;
      ew_replace(&copy, sizeof copy);
      return EW_REPLACE;
    }
    case A_SPIN:
      for (volatile uint32_t i = 0;; i++) {
      }
    case A_BOMB:
      for (;;) {
        char* p = malloc(1 << 20);
        if (!p) __builtin_trap();
        memset(p, 1, 1 << 20);
        bomb_sink = p; /* escapes: the allocation cannot be optimised away */
      }
    case A_RECURSE:
      return (int32_t)recurse(0xffffffffu) & 0;
    case A_COUNT: {
      uint32_t n = kv_counter("count");
      char msg[64];
      int m = snprintf(msg, sizeof msg, "count=%u", n);
      ew_emit("counted", 7, msg, (uint32_t)m);
      return EW_PASS;
    }
    case A_ASYNC: {
      int32_t t[3];
      t[0] = ew_timer(60);
      t[1] = ew_timer(20);
      t[2] = ew_publish_str("out/topic", "hello", 5);
      char msg[64];
      int m = snprintf(msg, sizeof msg, "issued %d %d %d", t[0], t[1], t[2]);
      ew_emit("issued", 6, msg, (uint32_t)m);
      return EW_PASS;
    }
    case A_BAD_POINTER:
      ew_log(EW_LOG_INFO, (const char*)0x7fffffff, 100);
      return EW_PASS;
    case A_BAD_VERDICT:
      return 7;
    case A_REPLACE_MISSING:
      return EW_REPLACE;
    case A_GLOBAL: {
      char msg[32];
      int m = snprintf(msg, sizeof msg, "calls=%d", calls_this_instance);
      ew_emit("global", 6, msg, (uint32_t)m);
      return EW_PASS;
    }
    case A_PRINT:
      printf("hello from stdout\n");
      fflush(stdout);
      ew_log_str(EW_LOG_WARN, "hello from ew_log");
      return EW_PASS;
  }
  return EW_PASS;
}

EW_EXPORT("ew_on_complete") void on_complete(int32_t token, int32_t status, uint32_t ptr, uint32_t len) {
  (void)ptr;
  (void)len;
  char msg[64];
  int m = snprintf(msg, sizeof msg, "done %d %d", token, status);
  ew_emit("done", 4, msg, (uint32_t)m);
}
