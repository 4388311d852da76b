/*
 * redis_server.h — test-only: a real redis-server (the binary on PATH) on a free loopback
 * port in a fresh temporary directory, with no persistence (--save "" --appendonly no),
 * optionally also on a unix socket and with --requirepass; plus a blocking hiredis
 * connection for assertions and a raw pub/sub subscriber.
 *
 * Lifetime: rs_start() forks and execs the server and waits until it answers PING;
 * rs_stop() ends it (SIGCONT, SIGTERM, waitpid; SIGKILL after 5 s) and keeps the port and
 * directory for rs_restart(); rs_pause()/rs_resume() send SIGSTOP/SIGCONT (a hung server);
 * rs_free() stops it and removes its directory. Every live server is also killed by an
 * atexit handler, and the child has PR_SET_PDEATHSIG(SIGKILL), so a crashed test leaves no
 * server behind. Call rs_start/rs_restart from the thread that will outlive the server
 * (the test's main thread): the death signal follows the forking thread.
 *
 * Nothing here uses cmocka: failures are reported on stderr and as NULL/-1 returns, so the
 * caller asserts. Not thread-safe per server (use one server from one thread at a time),
 * except rs_pid()/rs_port()/rs_url() which are immutable while the server exists.
 */
#ifndef IAM_TEST_REDIS_SERVER_H
#define IAM_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

typedef struct rs_server rs_server;

typedef struct rs_options {
    bool unix_socket;        /* also listen on <dir>/redis.sock */
    const char *password;    /* --requirepass (NULL: none) */
} rs_options;

/** Starts a server (opts may be NULL). NULL (and a message on stderr) on failure. */
rs_server *rs_start(const rs_options *opts);
/** Stops the server if running, removes its directory, frees. NULL is a no-op. */
void rs_free(rs_server *s);

/** Stops it (SIGCONT + SIGTERM + waitpid). 0 on success. The port stays reserved by nobody. */
int rs_stop(rs_server *s);
/** Starts it again on the same port (and socket), waiting until it answers. 0 on success. */
int rs_restart(rs_server *s);
/** SIGSTOP: the server keeps its sockets open but answers nothing. 0 on success. */
int rs_pause(rs_server *s);
/** SIGCONT. 0 on success. */
int rs_resume(rs_server *s);
bool rs_running(const rs_server *s);

int rs_port(const rs_server *s);
int rs_pid(const rs_server *s);
/** "redis://127.0.0.1:<port>" (no password). */
const char *rs_url(const rs_server *s);
/** Path of the unix socket, or NULL when not enabled. */
const char *rs_socket_path(const rs_server *s);
/** The server's temporary directory. */
const char *rs_dir(const rs_server *s);

/**
 * Runs one command on the helper connection (blocking, 2 s timeout; connects, AUTHs and
 * SELECTs the current db on first use or after a failure). printf-style like redisCommand
 * (%s strings, %b binary with a size_t length). Returns the reply (freeReplyObject it) or
 * NULL on a connection failure. Must not be called while the server is paused.
 */
redisReply *rs_command(rs_server *s, const char *fmt, ...);
/** argv form (binary-safe). */
redisReply *rs_command_argv(rs_server *s, int argc, const char **argv, const size_t *lens);
/** SELECTs db on the helper connection for later commands (0 initially). 0 on success. */
int rs_select(rs_server *s, int db);

/* Convenience wrappers on the helper connection. -2 (or NULL) on a transport failure. */
long long rs_exists(rs_server *s, const char *key);
long long rs_pttl(rs_server *s, const char *key);        /* -2 missing, -1 no TTL */
/** GET: malloc'd value (NUL-terminated; *len gets its length) or NULL when absent/error. */
char *rs_get(rs_server *s, const char *key, size_t *len);
/** SET key value (binary-safe), keeping the key's TTL when keep_ttl. 0 on OK. */
int rs_set(rs_server *s, const char *key, const char *val, size_t len, bool keep_ttl);
int rs_del(rs_server *s, const char *key);
/** PUBLISH; returns the number of receivers, or -1. */
long long rs_publish(rs_server *s, const char *channel, const char *msg, size_t len);
/** FLUSHALL (every database). 0 on success. */
int rs_flushall(rs_server *s);
/**
 * KEYS pattern in the current db: a malloc'd array of malloc'd strings (*n entries), NULL
 * with *n = 0 when there are none; -1 in *n on failure. Free with rs_free_keys.
 */
char **rs_keys(rs_server *s, const char *pattern, long *n);
void rs_free_keys(char **keys, long n);

/* A raw subscriber: its own connection, SUBSCRIBEd to one channel. */
typedef struct rs_subscriber rs_subscriber;
rs_subscriber *rs_subscribe(rs_server *s, const char *channel);
/**
 * Waits up to timeout_ms for the next message on the channel. Returns its payload
 * (malloc'd, NUL-terminated, *len its length) or NULL on timeout/error.
 */
char *rs_next_message(rs_subscriber *sub, int timeout_ms, size_t *len);
void rs_subscriber_free(rs_subscriber *sub);

/** Milliseconds of CLOCK_MONOTONIC. */
long long rs_mono_ms(void);
/** Sleeps ms milliseconds. */
void rs_sleep_ms(long ms);

#endif
