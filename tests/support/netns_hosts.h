/*
 * netns_hosts.h — test-only: name resolution and IPv6 loopback faults for one process.
 *
 * nh_private_hosts() gives the calling process (call it in a forked child: it changes the
 * process's mount namespace) a private /etc/hosts with extra lines appended: it unshares the
 * mount namespace, makes every mount private (nothing propagates back to the host) and
 * bind-mounts a copy over /etc/hosts. Needs root (CAP_SYS_ADMIN): returns 1 when not
 * permitted (the caller skips), 0 on success, -1 on another failure.
 *
 * nh_v6_blackhole(port) listens on [::1]:port without ever accepting and fills the accept
 * queue, so that further SYNs to it are dropped (a connect there hangs). Returns the
 * listening descriptor, or -1 when IPv6 loopback is unavailable.
 */
#ifndef IAM_TEST_NETNS_HOSTS_H
#define IAM_TEST_NETNS_HOSTS_H

int nh_private_hosts(const char *extra_lines);
int nh_v6_blackhole(int port);

#endif
