/* bench-sigwin: is a SIGTERM sent DELAY after an init's exec acted on?
 *
 * Usage: bench-sigwin DELAY_US TIMEOUT_MS -- INIT ARGS...
 * Starts INIT as PID 1 of a new PID (and mount, with its own /proc) namespace,
 * learns the instant of its execve from a close-on-exec pipe reaching EOF,
 * sends SIGTERM exactly DELAY_US later (spinning for the last stretch), and
 * waits up to TIMEOUT_MS for the init to end.  A signal with no handler is
 * discarded by a namespace's PID 1, so a TERM that arrives before the init
 * installed its handler (or blocked the signal) is lost: the init then lives
 * on until its child ends by itself.  Prints one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: bench-sigwin DELAY_US TIMEOUT_MS -- INIT ARGS...\n");
        return 2;
    }
    int64_t delay = (int64_t)(strtod(argv[1], NULL) * 1000.0);
    int64_t timeout = (int64_t)(strtod(argv[2], NULL) * 1e6);
    if (unshare(CLONE_NEWPID) != 0) {
        perror("bench-sigwin: unshare(CLONE_NEWPID)");
        return 111;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return 111;
    pid_t child = fork();
    if (child < 0) return 111;
    if (child == 0) {
        close(p[0]);
        int err = 0;
        if (unshare(CLONE_NEWNS) != 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            err = errno;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (!err) {
            execvp(argv[4], &argv[4]);
            err = errno;
        }
        if (write(p[1], &err, sizeof err) < 0) _exit(126);
        _exit(127);
    }
    close(p[1]);
    int err = 0;
    ssize_t got;
    do {
        got = read(p[0], &err, sizeof err);
    } while (got < 0 && errno == EINTR);
    int64_t t_exec = now_ns();
    if (got > 0) {
        fprintf(stderr, "bench-sigwin: cannot start %s: %s\n", argv[4], strerror(err));
        waitpid(child, NULL, 0);
        return 111;
    }
    int64_t target = t_exec + delay;
    if (delay > 300000) {
        int64_t rest = delay - 200000;
        struct timespec ts = {rest / 1000000000, rest % 1000000000};
        nanosleep(&ts, NULL);
    }
    while (now_ns() < target) {
    }
    kill(child, SIGTERM);
    int64_t t_sent = now_ns();

    int pfd = (int)syscall(SYS_pidfd_open, child, 0);
    int status = 0;
    const char *outcome = "timeout";
    for (;;) {
        int64_t left = t_sent + timeout - now_ns();
        if (left <= 0) break;
        struct pollfd pd = {pfd, POLLIN, 0};
        int r = poll(&pd, 1, (int)(left / 1000000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r > 0) {
            waitpid(child, &status, 0);
            outcome = WIFEXITED(status) ? "exit" : "signal";
            break;
        }
    }
    int64_t t_end = now_ns();
    if (strcmp(outcome, "timeout") == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? WTERMSIG(status) : -1;
    printf("{\"delay_us\": %.1f, \"sent_us\": %.1f, \"outcome\": \"%s\", \"code\": %d, "
           "\"after_ms\": %.3f}\n",
           (double)delay / 1000.0, (double)(t_sent - t_exec) / 1000.0, outcome, code,
           (double)(t_end - t_sent) / 1e6);
    return 0;
}
