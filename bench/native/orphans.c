/* bench-orphans: hand a storm of orphans to PID 1 and time their reaping.
 *
 * Usage: bench-orphans burst|stream N [TIMEOUT_SECS]
 * Runs as the main child of the init under test, inside its PID namespace
 * (so /proc/1 is that init).
 *   burst:  a middle process forks N children that _exit(0) at once and then
 *           exits itself, so N zombies are re-parented to PID 1 in one instant;
 *           this measures the init's raw reaping throughput.
 *   stream: N double forks, each leaving one orphan that exits at once; the
 *           orphans reach PID 1 as fast as this process can fork.
 * "Unreaped" is the number of PID 1's children (from /proc/1/task/STAR/children)
 * other than this process and its parent: zombies plus orphans not yet exited.
 * Prints one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char big[1 << 20];

/* Children of PID 1 across all its threads, minus ourselves and our parent. */
static long unreaped(pid_t self, pid_t parent) {
    DIR *d = opendir("/proc/1/task");
    if (!d) return -1;
    long count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/1/task/%s/children", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        size_t used = 0;
        ssize_t n;
        while (used < sizeof big - 1 && (n = read(fd, big + used, sizeof big - 1 - used)) > 0)
            used += (size_t)n;
        close(fd);
        big[used] = 0;
        char *p = big;
        while (*p) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p) break;
            if (pid != self && pid != parent) count++;
            p = end;
            while (*p == ' ') p++;
        }
    }
    closedir(d);
    return count;
}

static pid_t fork_retry(void) {
    for (;;) {
        pid_t pid = fork();
        if (pid >= 0 || errno != EAGAIN) return pid;
        usleep(100);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench-orphans burst|stream N [TIMEOUT]\n");
        return 2;
    }
    int burst = strcmp(argv[1], "burst") == 0;
    long n = strtol(argv[2], NULL, 10);
    double timeout = argc > 3 ? strtod(argv[3], NULL) : 60.0;
    pid_t self = getpid(), parent = getppid();
    long peak = 0, cur;
    double t0 = now_s(), t_handover;

    if (burst) {
        pid_t mid = fork_retry();
        if (mid == 0) {
            for (long i = 0; i < n; i++) {
                pid_t c = fork_retry();
                if (c == 0) _exit(0);
                if (c < 0) _exit(1);
            }
            _exit(0);
        }
        int st;
        waitpid(mid, &st, 0);
        t_handover = now_s();
    } else {
        for (long i = 0; i < n; i++) {
            pid_t c = fork_retry();
            if (c == 0) {
                if (fork_retry() == 0) _exit(0);
                _exit(0);
            }
            int st;
            waitpid(c, &st, 0);
            if ((i & 63) == 0) {
                cur = unreaped(self, parent);
                if (cur > peak) peak = cur;
            }
        }
        t_handover = now_s();
    }
    int complete = 0;
    double t_done = t_handover;
    long samples = 0;
    for (;;) {
        cur = unreaped(self, parent);
        samples++;
        if (cur > peak) peak = cur;
        t_done = now_s();
        if (cur == 0) {
            complete = 1;
            break;
        }
        if (t_done - t_handover > timeout) break;
    }
    printf("{\"mode\": \"%s\", \"n\": %ld, \"generate_s\": %.6f, \"drain_s\": %.6f, "
           "\"total_s\": %.6f, \"peak_unreaped\": %ld, \"complete\": %s, \"left\": %ld, "
           "\"samples\": %ld}\n",
           argv[1], n, t_handover - t0, t_done - t_handover, t_done - t0, peak,
           complete ? "true" : "false", cur, samples);
    fflush(stdout);
    return 0;
}
