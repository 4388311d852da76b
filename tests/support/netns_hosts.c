/* netns_hosts.c — see netns_hosts.h. */
#define _GNU_SOURCE /* unshare, CLONE_NEWNS */
#include "netns_hosts.h"

#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

int nh_private_hosts(const char *extra_lines)
{
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return 1;
    char path[] = "/tmp/iam-test-hosts-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    FILE *in = fopen("/etc/hosts", "r");
    char line[512];
    bool ok = true;
    while (ok && in && fgets(line, sizeof line, in))
        ok = write(fd, line, strlen(line)) == (ssize_t)strlen(line);
    if (in)
        fclose(in);
    ok = ok && write(fd, extra_lines, strlen(extra_lines)) == (ssize_t)strlen(extra_lines);
    close(fd);
    int r = ok ? mount(path, "/etc/hosts", NULL, MS_BIND, NULL) : -1;
    int why = errno;
    unlink(path); /* the bind mount keeps the file */
    if (!ok)
        return -1;
    return r == 0 ? 0 : (why == EPERM || why == EACCES) ? 1 : -1;
}

int nh_v6_blackhole(int port)
{
    int l = socket(AF_INET6, SOCK_STREAM, 0);
    if (l < 0)
        return -1;
    int one = 1;
    setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 0) != 0) {
        close(l);
        return -1;
    }
    /* a backlog of 0 still queues one or two: fill it (these are never accepted, and stay
     * open for the process's life) */
    for (int i = 0; i < 4; i++) {
        int c = socket(AF_INET6, SOCK_STREAM, 0);
        if (c < 0)
            break;
        struct timeval tv = {0, 200 * 1000};
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        (void)!connect(c, (struct sockaddr *)&a, sizeof a); /* times out once the queue is full */
    }
    return l;
}
