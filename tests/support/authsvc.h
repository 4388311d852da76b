/*
 * authsvc.h — test-only: runs tests/authsvc/authsvc.py (the test auth service) with
 * Debian's /usr/bin/python3 on a free loopback port (it prints "PORT <n>"), and drives its
 * test-control endpoints (/_test/mint, mode, rotate, stats…) with blocking libcurl calls.
 *
 * Lifetime: as_start() forks and execs the service (PR_SET_PDEATHSIG(SIGKILL): a crashed
 * test leaves no server behind; an atexit handler kills live ones too) and waits for its
 * PORT line; as_free() sends SIGTERM (SIGKILL after 5 s) and frees. Call as_start from
 * the thread that outlives the server (the death signal follows the forking thread).
 * Nothing here uses cmocka: failures are reported on stderr and as NULL/-1 returns.
 */
#ifndef IAM_TEST_AUTHSVC_H
#define IAM_TEST_AUTHSVC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct as_server as_server;

/** Starts the service; extra_args (NULL-terminated, may be NULL) are added to its command
 *  line (e.g. "--jwks-max-age", "1", "--redis-url", URL). NULL on failure. */
as_server *as_start(const char *const *extra_args);
void as_free(as_server *s);

/** "http://127.0.0.1:<port>" */
const char *as_url(const as_server *s);
int as_port(const as_server *s);
/** The HMAC secret the service signs HS256 tokens with. */
const char *as_secret(void);

/** One request; returns the body (malloc'd, NUL-terminated) and *status, or NULL. */
char *as_request(as_server *s, const char *method, const char *path, const char *body, long *status);
/** POST /_test/mint with a JSON spec ("{}" for the default user): the token, malloc'd. */
char *as_mint(as_server *s, const char *spec_json);
/** POST /_test/mode with a JSON spec, e.g. {"mode":"error500"}. 0 on success. */
int as_mode(as_server *s, const char *spec_json);
/** POST /_test/rotate; 0 on success. */
int as_rotate(as_server *s, bool drop_old);
/** A counter of GET /_test/stats ("validate", "jwks", "jwks_304", "connections"…); -1 on error. */
long long as_stat(as_server *s, const char *name);
/** POST /_test/stats/reset. 0 on success. */
int as_reset_stats(as_server *s);

#endif
