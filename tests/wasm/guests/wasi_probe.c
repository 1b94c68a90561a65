/* A WASI command that exercises one preview1 function per sub-command, for wasi_test.cc.
 * Usage (argv set by the manifest): wasi_probe COMMAND [ARG...]. Failures print "errno=N". */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

extern char** environ;

static int report(int ok) {
  if (ok) {
    printf("ok\n");
    return 0;
  }
  printf("errno=%d\n", errno);
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: wasi_probe COMMAND\n");
    return 2;
  }
  const char* cmd = argv[1];
  const char* a = argc > 2 ? argv[2] : "";
  const char* b = argc > 3 ? argv[3] : "";
  if (!strcmp(cmd, "args")) {
    printf("argc=%d", argc);
    for (int i = 0; i < argc; i++) printf(" [%s]", argv[i]);
    printf("\n");
  } else if (!strcmp(cmd, "env")) {
    int n = 0;
    for (char** e = environ; *e; e++) n++;
    const char* g = getenv("GREETING");
    const char* c = getenv("EW_CALLER");
    printf("n=%d GREETING=%s EW_CALLER=%s\n", n, g ? g : "(unset)", c ? c : "(unset)");
  } else if (!strcmp(cmd, "clock")) {
    struct timespec r, m1, m2;
    clock_gettime(CLOCK_REALTIME, &r);
    clock_gettime(CLOCK_MONOTONIC, &m1);
    for (volatile int i = 0; i < 100000; i++) {
    }
    clock_gettime(CLOCK_MONOTONIC, &m2);
    struct timespec res;
    clock_getres(CLOCK_MONOTONIC, &res);
    long long dm = (m2.tv_sec - m1.tv_sec) * 1000000000LL + (m2.tv_nsec - m1.tv_nsec);
    printf("realtime=%lld monotonic_advanced=%d res_ns=%ld\n", (long long)r.tv_sec, dm > 0, res.tv_nsec);
  } else if (!strcmp(cmd, "random")) {
    unsigned char x[32], y[32];
    if (getentropy(x, sizeof x) || getentropy(y, sizeof y)) return report(0);
    int zeros = 0;
    for (int i = 0; i < 32; i++) zeros += x[i] == 0;
    printf("differ=%d zeros=%d\n", memcmp(x, y, sizeof x) != 0, zeros);
  } else if (!strcmp(cmd, "cat")) {
    char buf[4096];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
      fwrite(buf, 1, n, stdout);
      total += n;
    }
    fprintf(stderr, "copied %zu bytes\n", total);
  } else if (!strcmp(cmd, "exit")) {
    printf("exiting\n");
    fflush(stdout);
    exit(atoi(a));
  } else if (!strcmp(cmd, "read")) {
    FILE* f = fopen(a, "r");
    if (!f) return report(0);
    char buf[256] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    printf("read %zu: %s\n", n, buf);
  } else if (!strcmp(cmd, "write")) {
    FILE* f = fopen(a, "w");
    if (!f) return report(0);
    fputs(b, f);
    return report(fclose(f) == 0);
  } else if (!strcmp(cmd, "append")) {
    int fd = open(a, O_WRONLY | O_APPEND);
    if (fd < 0) return report(0);
    return report(write(fd, b, strlen(b)) == (ssize_t)strlen(b) && close(fd) == 0);
  } else if (!strcmp(cmd, "seek")) {
    int fd = open(a, O_RDONLY);
    if (fd < 0) return report(0);
    off_t end = lseek(fd, 0, SEEK_END);
    lseek(fd, 2, SEEK_SET);
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    printf("size=%lld tail=%s n=%zd\n", (long long)end, buf, n);
    close(fd);
  } else if (!strcmp(cmd, "stat")) {
    struct stat st;
    if (stat(a, &st) != 0) return report(0);
    printf("size=%lld dir=%d\n", (long long)st.st_size, S_ISDIR(st.st_mode));
  } else if (!strcmp(cmd, "mkdir")) {
    return report(mkdir(a, 0755) == 0);
  } else if (!strcmp(cmd, "unlink")) {
    return report(unlink(a) == 0);
  } else if (!strcmp(cmd, "rmdir")) {
    return report(rmdir(a) == 0);
  } else if (!strcmp(cmd, "socket")) {
    /* No sockets: the host answers ENOTCAPABLE. */
    __wasi_errno_t e = __wasi_sock_shutdown(3, __WASI_SDFLAGS_WR);
    printf("errno=%d\n", e);
  } else if (!strcmp(cmd, "nosys")) {
    /* An unimplemented preview1 function answers ENOSYS. */
    __wasi_filesize_t out;
    __wasi_errno_t e = __wasi_fd_tell(99, &out);
    __wasi_errno_t e2 = __wasi_fd_sync(0);
    printf("badf=%d nosys=%d\n", e, e2);
  } else if (!strcmp(cmd, "state")) {
    /* Every call must start from a fresh instance: static data, heap and stack included. */
    static int calls;
    static char* kept;
    calls++;
    char* fresh = malloc(64);
    int heap_reused = kept != NULL;
    if (!kept) kept = fresh;
    printf("calls=%d heap_kept=%d\n", calls, heap_reused);
    if (argc > 2) exit(atoi(a)); /* leaves the stack pointer where exit() was called */
  } else if (!strcmp(cmd, "grow")) {
    /* Grows the memory: the pool cannot reset it and instantiates again. */
    void* p = malloc(4 << 20);
    printf("grew=%d\n", p != NULL);
  } else if (!strcmp(cmd, "flood")) {
    static char line[1024];
    memset(line, 'x', sizeof line - 1);
    for (;;) puts(line);
  } else if (!strcmp(cmd, "spin")) {
    for (volatile unsigned i = 0;; i++) {
    }
  } else {
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
  }
  return 0;
}
