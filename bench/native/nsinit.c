/* nsinit: a minimal PID 1 that holds a benchmark's PID namespace.
 *
 * Usage: nsinit [-f FD] -- CMD ARGS...   (status lines go to FD, default 3)
 *
 * It runs CMD as PID 2, reaps every process of the namespace, and reports on
 * fd 3, with CLOCK_MONOTONIC timestamps in nanoseconds:
 *   start <t>            right before CMD is forked
 *   exit <t> <wstatus>   when CMD has been reaped
 *   empty <t>            when no process is left in the namespace
 * Every process of the namespace descends from PID 1, so "wait() says ECHILD"
 * is exactly "the namespace is empty": that is how a supervisor's stop time
 * includes the services it left behind.  RLIMIT_NOFILE is raised so that
 * every supervisor can hold a thousand services' pipes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int status_fd = 3;

static void report(const char *line) {
    size_t len = strlen(line);
    while (len > 0) {
        ssize_t n = write(status_fd, line, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        line += n;
        len -= (size_t)n;
    }
}

int main(int argc, char **argv) {
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "-f") == 0) {
        status_fd = atoi(argv[2]);
        first = 3;
    }
    if (first < argc && strcmp(argv[first], "--") == 0) first++;
    if (first >= argc) {
        fprintf(stderr, "usage: nsinit [-f FD] -- CMD ARGS...\n");
        return 2;
    }
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);

    char buf[128];
    snprintf(buf, sizeof buf, "start %llu\n", (unsigned long long)now_ns());
    report(buf);
    pid_t main_pid = fork();
    if (main_pid < 0) {
        perror("nsinit: fork");
        return 111;
    }
    if (main_pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[first], &argv[first]);
        fprintf(stderr, "nsinit: exec %s: %s\n", argv[first], strerror(errno));
        _exit(127);
    }
    int main_status = 0;
    for (;;) {
        int st;
        pid_t pid = wait(&st);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pid == main_pid) {
            main_status = st;
            snprintf(buf, sizeof buf, "exit %llu %d\n", (unsigned long long)now_ns(), st);
            report(buf);
        }
    }
    snprintf(buf, sizeof buf, "empty %llu\n", (unsigned long long)now_ns());
    report(buf);
    if (WIFEXITED(main_status)) return WEXITSTATUS(main_status);
    return 128 + WTERMSIG(main_status);
}
