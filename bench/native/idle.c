/* bench-idle: an idle service or child.
 *
 * With no argument it sleeps until a signal kills it (default dispositions, so
 * SIGTERM ends it at once).  With SECS it exits 0 after that many seconds: a
 * child whose natural end tells a lost SIGTERM apart from a forwarded one.
 * Anything else as argv[1] (s6 passes the service name) is ignored.
 */
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char *end = NULL;
    double secs = argc > 1 ? strtod(argv[1], &end) : 0.0;
    /* s6-supervise passes the service name as argv[1]: only a number is a time. */
    if (argc > 1 && end != argv[1] && *end == 0) {
        struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
        while (nanosleep(&ts, &ts) != 0) {
        }
        return 0;
    }
    for (;;) pause();
}
