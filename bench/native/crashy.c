/* bench-crashy: a service that starts, records when, and exits 1 at once.
 *
 * Usage: bench-crashy [/PATH/TO/LOGFILE]   (default: ./crash.log, so that runit's and
 * s6's `run` can be a plain symlink to this binary and no shell is timed).
 * One line per life, "START_NS EXIT_NS\n" in CLOCK_MONOTONIC nanoseconds,
 * appended with a single write(2); EXIT_NS is taken right before _exit, so the
 * supervisor's crash-to-restart latency is next START_NS minus this EXIT_NS.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    uint64_t start = now_ns();
    /* s6-supervise passes the service name as argv[1]: only a path is a log file. */
    const char *path = argc > 1 && strchr(argv[1], '/') ? argv[1] : "crash.log";
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) _exit(2);
    char buf[64];
    uint64_t end = now_ns();
    int len = snprintf(buf, sizeof buf, "%llu %llu\n", (unsigned long long)start,
                       (unsigned long long)end);
    if (write(fd, buf, (size_t)len) != len) _exit(3);
    _exit(1);
}
