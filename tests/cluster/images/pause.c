/* The Pod sandbox of the real node (containerd's sandbox_image): holds the Pod's
 * namespaces, reaps orphans, exits on SIGTERM or SIGINT. Built static by
 * tests/cluster/src/node/images.rs, so its image holds nothing else. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
