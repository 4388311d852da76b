/*
 * tcp_proxy.h — test-only: a loopback TCP relay in front of a real server (a redis-server),
 * for faults a real server does not produce on demand: every relayed connection reset
 * (RST, as a crashed peer or a middlebox sends) instead of closed.
 *
 * tp_start() listens on a free 127.0.0.1 port and relays each accepted connection to
 * 127.0.0.1:<upstream_port> on its own thread (poll loop). tp_reset_all() aborts every
 * relayed connection: the client side with SO_LINGER {1, 0} (an RST), the upstream side
 * closed; the listener stays, so clients may connect again. tp_refuse() makes it reset each
 * new connection at once; tp_answer() makes it answer anything with fixed bytes. Thread-safe. Nothing here uses
 * cmocka: failures are NULL/-1 and a message on stderr.
 */
#ifndef IAM_TEST_TCP_PROXY_H
#define IAM_TEST_TCP_PROXY_H

typedef struct tcp_proxy tcp_proxy;

/** Starts a relay to 127.0.0.1:upstream_port. NULL on failure. */
tcp_proxy *tp_start(int upstream_port);
/** The port the relay listens on. */
int tp_port(const tcp_proxy *p);
/** Connections accepted so far. */
int tp_accepted(tcp_proxy *p);
/** With bytes set (NULL: relay again), new connections are not relayed: whatever a client
 *  sends is answered with bytes (a server that is not Redis, or a hostile one). */
void tp_answer(tcp_proxy *p, const char *bytes);
/** In answer mode, each answer is followed delay_ms later by extra (NULL: nothing): a server
 *  that replies once too often, late, after the client has read what it asked for. */
void tp_answer_late(tcp_proxy *p, const char *extra, int delay_ms);
/** With on, every new connection is reset as soon as it is accepted (a server that refuses). */
void tp_refuse(tcp_proxy *p, int on);
/** Resets every relayed connection (RST to the client); returns how many, after it is done. */
int tp_reset_all(tcp_proxy *p);
/** Stops the relay, closes everything, frees. NULL is a no-op. */
void tp_free(tcp_proxy *p);

#endif
