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

typedef struct redis_url {
    bool unix_socket;
    char host[256];              /* tcp: host name or address (IPv6 without brackets) */
    int port;                    /* tcp: 1..65535, default 6379 */
    char path[108];              /* unix: socket path (sun_path bound) */
    char user[REDIS_URL_MAX_PART];     /* "" when none */
    char password[REDIS_URL_MAX_PART]; /* "" when none */
    bool has_password;
    long db;                     /* 0 when none */
} redis_url;

/** IAM_E_CONFIG with a precise message for anything malformed or unsupported. */
iam_status redis_url_parse(const char *url, redis_url *out, iam_error *err);

#endif
