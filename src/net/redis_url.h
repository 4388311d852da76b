/*
 * redis_url.h — parses the Redis tier's URL. No I/O. Messages name the setting, never
 * echo the URL (it may hold a password).
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   unix:///path/to/socket[?db=N&password=P&user=U]
 *   rediss://…  refused: TLS needs hiredis >= 1.0 built with SSL (Debian 12 has 0.14)
 */
#ifndef IAM_NET_REDIS_URL_H
#define IAM_NET_REDIS_URL_H

#include "internal.h"

#define REDIS_URL_MAX_PART 512
#define REDIS_MAX_DB 1000000
/* The longest unix socket path: sun_path holds 108 bytes, but hiredis 0.14 copies at most 107
 * into a socket address it never zeroes, so a 107-byte path reaches connect() without its
 * terminating NUL (a garbage byte after it: ENOENT, or another file). */
#define REDIS_MAX_UNIX_PATH 106

typedef struct redis_url {
    bool unix_socket;
    char host[256];              /* tcp: host name or address (IPv6 without brackets) */
    int port;                    /* tcp: 1..65535, default 6379 */
    char path[REDIS_MAX_UNIX_PATH + 1]; /* unix: socket path */
    char user[REDIS_URL_MAX_PART];     /* "" when none */
    char password[REDIS_URL_MAX_PART]; /* "" when none */
    bool has_password;
    long db;                     /* 0 when none */
} redis_url;

/** IAM_E_CONFIG with a precise message for anything malformed or unsupported. */
iam_status redis_url_parse(const char *url, redis_url *out, iam_error *err);

#endif
