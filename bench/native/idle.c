/* bench-idle: an idle service or child.
 *
 * With no argument it sleeps until a signal kills it (default dispositions, so
 * SIGTERM ends it at once).  With SECS it exits 0 after that many seconds: a
 * child whose natural end tells a lost SIGTERM apart from a forwarded one.
 */
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (argc > 1) {
        double secs = strtod(argv[1], NULL);
        struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
        while (nanosleep(&ts, &ts) != 0) {
        }
        return 0;
    }
    for (;;) pause();
}
