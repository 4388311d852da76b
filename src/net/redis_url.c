/* redis_url.c — see redis_url.h. */
#include "net/redis_url.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (cap bytes with the NUL); false when malformed, too
 * long or decoding to a NUL byte. */
static bool pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0)
                return false;
            ch = (char)(h * 16 + l);
            if (ch == '\0')
                return false;
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return true;
}

static bool parse_long(const char *s, size_t n, long min, long max, long *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* user:password (either part may be empty; "password" alone means no user). */
static iam_status parse_userinfo(const char *s, size_t n, redis_url *u, iam_error *err)
{
    const char *colon = memchr(s, ':', n);
    if (!colon) { /* redis://secret@host: the whole userinfo is the password (redis-cli's rule) */
        if (!pct_decode(s, n, u->password, sizeof u->password))
            return iam_fail(err, IAM_E_CONFIG, "redis_url: malformed or too long password");
        u->has_password = n > 0;
        return IAM_OK;
    }
    if (!pct_decode(s, (size_t)(colon - s), u->user, sizeof u->user))
        return iam_fail(err, IAM_E_CONFIG, "redis_url: malformed or too long user name");
    size_t pl = n - (size_t)(colon - s) - 1;
    if (!pct_decode(colon + 1, pl, u->password, sizeof u->password))
        return iam_fail(err, IAM_E_CONFIG, "redis_url: malformed or too long password");
    u->has_password = pl > 0;
    if (u->user[0] && !u->has_password)
        return iam_fail(err, IAM_E_CONFIG, "redis_url: a user name needs a password");
    return IAM_OK;
}

/* unix query: db=N, password=P, user=U separated by '&'. */
static iam_status parse_query(const char *q, redis_url *u, iam_error *err)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        if (!eq)
            return iam_fail(err, IAM_E_CONFIG, "redis_url: query parameters are name=value");
        size_t kn = (size_t)(eq - q), vn = n - kn - 1;
        if (kn == 2 && memcmp(q, "db", 2) == 0) {
            if (!parse_long(eq + 1, vn, 0, REDIS_MAX_DB, &u->db))
                return iam_fail(err, IAM_E_CONFIG, "redis_url: db must be a number from 0 to %d", REDIS_MAX_DB);
        } else if (kn == 8 && memcmp(q, "password", 8) == 0) {
            if (!pct_decode(eq + 1, vn, u->password, sizeof u->password))
                return iam_fail(err, IAM_E_CONFIG, "redis_url: malformed or too long password");
            u->has_password = vn > 0;
        } else if (kn == 4 && memcmp(q, "user", 4) == 0) {
            if (!pct_decode(eq + 1, vn, u->user, sizeof u->user))
                return iam_fail(err, IAM_E_CONFIG, "redis_url: malformed or too long user name");
        } else {
            return iam_fail(err, IAM_E_CONFIG, "redis_url: unknown query parameter (db, password, user)");
        }
        q += n + (amp ? 1 : 0);
    }
    if (u->user[0] && !u->has_password)
        return iam_fail(err, IAM_E_CONFIG, "redis_url: a user name needs a password");
    return IAM_OK;
}

iam_status redis_url_parse(const char *url, redis_url *u, iam_error *err)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (strncmp(url, "rediss://", 9) == 0)
        return iam_fail(err, IAM_E_CONFIG,
                        /* within IAM_ERROR_MESSAGE_BYTES: the advice is the message's end */
                        "redis_url: rediss:// (TLS) needs hiredis >= 1.0 with SSL, this build has %d.%d; "
                        "use unix://, redis:// on a trusted network, or a TLS tunnel (stunnel)",
                        HIREDIS_MAJOR, HIREDIS_MINOR);
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/')
            return iam_fail(err, IAM_E_CONFIG, "redis_url: unix:// needs an absolute socket path");
        if (!pct_decode(p, n, u->path, sizeof u->path))
            return iam_fail(err, IAM_E_CONFIG, "redis_url: the socket path is malformed or longer than %zu bytes",
                            sizeof u->path - 1);
        u->unix_socket = true;
        return q ? parse_query(q + 1, u, err) : IAM_OK;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return iam_fail(err, IAM_E_CONFIG, "redis_url must start with redis://, rediss:// or unix://");
    const char *p = url + 8;
    const char *end = p + strlen(p);
    const char *slash = strchr(p, '/');
    const char *auth_end = slash ? slash : end;
    if (memchr(p, '?', (size_t)(end - p)) || memchr(p, '#', (size_t)(end - p)))
        return iam_fail(err, IAM_E_CONFIG, "redis_url: query and fragment are not supported with redis://");
    /* the last '@' before the path ends the userinfo (a password may hold '@' percent-encoded) */
    const char *at = NULL;
    for (const char *s = p; s < auth_end; s++)
        if (*s == '@')
            at = s;
    iam_status st;
    if (at && (st = parse_userinfo(p, (size_t)(at - p), u, err)) != IAM_OK)
        return st;
    const char *h = at ? at + 1 : p;
    const char *hend = auth_end, *port = NULL;
    if (*h == '[') { /* [IPv6]:port */
        const char *rb = memchr(h, ']', (size_t)(hend - h));
        if (!rb)
            return iam_fail(err, IAM_E_CONFIG, "redis_url: unterminated [IPv6] host");
        if (rb + 1 < hend && rb[1] != ':')
            return iam_fail(err, IAM_E_CONFIG, "redis_url: junk after the [IPv6] host");
        port = rb + 1 < hend ? rb + 2 : NULL;
        if ((size_t)(rb - h - 1) >= sizeof u->host || rb == h + 1)
            return iam_fail(err, IAM_E_CONFIG, "redis_url: bad host");
        memcpy(u->host, h + 1, (size_t)(rb - h - 1));
    } else {
        const char *colon = memchr(h, ':', (size_t)(hend - h));
        size_t hn = (size_t)((colon ? colon : hend) - h);
        if (hn == 0 || hn >= sizeof u->host)
            return iam_fail(err, IAM_E_CONFIG, "redis_url has no host (or one longer than %zu bytes)",
                            sizeof u->host - 1);
        memcpy(u->host, h, hn);
        port = colon ? colon + 1 : NULL;
        for (size_t i = 0; i < hn; i++)
            if (h[i] == '%' || h[i] == '@' || h[i] == '[' || h[i] == ']')
                return iam_fail(err, IAM_E_CONFIG, "redis_url: bad character in the host");
    }
    if (port) {
        long v;
        if (!parse_long(port, (size_t)(hend - port), 1, 65535, &v))
            return iam_fail(err, IAM_E_CONFIG, "redis_url: the port must be a number from 1 to 65535");
        u->port = (int)v;
    }
    if (slash && slash + 1 < end) {
        if (!parse_long(slash + 1, (size_t)(end - slash - 1), 0, REDIS_MAX_DB, &u->db))
            return iam_fail(err, IAM_E_CONFIG, "redis_url: the path must be a database number from 0 to %d",
                            REDIS_MAX_DB);
    }
    return IAM_OK;
}
