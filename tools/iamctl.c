/*
 * iamctl — command-line tool over libiamclient.
 *
 * Exit codes (fixed; scripts depend on them):
 *   0  accepted / success
 *   1  the token is rejected ("error: <reason-code>: <message>" on stderr)
 *   2  usage or configuration error (missing key, unreadable file, bad option)
 */
#include "iamclient.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo.h"

#define EXIT_REJECTED 1
#define EXIT_USAGE 2

static const char USAGE[] =
    "usage: iamctl <command> [options]\n"
    "\n"
    "commands:\n"
    "  verify [--secret S | --secret-file F] [--jwks FILE] [--pem FILE]\n"
    "         [--audience A] [--issuer I] [--leeway SECONDS] [--now EPOCH]\n"
    "         [--repeat N] [--stats] [--redis URL [--cache-secret-file F]]\n"
    "         [--auth-url URL [--mode local-first|central]] [--jwks-url URL]\n"
    "         [--auth-timeout MS] TOKEN | -\n"
    "      Verify an access token; print the user context as JSON (exit 0) or\n"
    "      'error: <reason>: <message>' on stderr (exit 1). Keys may be combined.\n"
    "      With no key option, the secret comes from $IAM_JWT_SECRET.\n"
    "      --repeat N resolves the token N times through one client (its cache);\n"
    "      --stats prints the client's per-tier counters as JSON on stderr at exit.\n"
    "      --redis URL resolves through the Redis tier (shared cache, revocation);\n"
    "      the cache secret is derived from the HMAC secret unless given in a file.\n"
    "      --auth-url URL adds the central auth service: keys from its JWKS, and\n"
    "      POST /auth/validate for a token no key here can verify; --mode central\n"
    "      lets the service decide every token (no key needed). --jwks-url URL fetches\n"
    "      keys from there. 'error: unavailable: …' (exit 2) when no answer came.\n"
    "  revoke --redis URL [--secret S | --secret-file F] [--cache-secret-file F] TOKEN | -\n"
    "      (the token's claims are read, not verified: a revocation only refuses more;\n"
    "      the secret defaults to $IAM_JWT_SECRET)\n"
    "      Revoke a token platform-wide: write blacklist:jti:<jti> until its exp and\n"
    "      publish the invalidation; with the secret (or --cache-secret-file) also\n"
    "      delete its shared record. Prints {\"revoked\":true} (exit 0); exit 1 when\n"
    "      Redis did not confirm.\n"
    "  watch --redis URL [--count N]\n"
    "      Print invalidation messages on policy:invalidate as JSON lines (tokens are\n"
    "      shown by fingerprint only) until interrupted or N messages were heard.\n"
    "  jws-verify (--jwk FILE | --jwks FILE | --secret S) JWS | -\n"
    "      Verify a bare JWS (no claim checks); print its payload (exit 0) or fail (exit 1).\n"
    "  demo\n"
    "      Mint tokens for a few users with a generated secret and verify them.\n"
    "  version\n"
    "  help\n";

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "iamctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(run 'iamctl help' for usage)\n");
    va_end(ap);
    return EXIT_USAGE;
}

static char *read_stream(FILE *f, size_t limit, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0 || n > limit)
            break; /* n > limit tells the caller the input was cut */
        if (n == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) {
                free(buf);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (!buf)
        return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Reads a whole file of at most `limit` bytes; NULL with a message otherwise. Messages
 * name the option (`what`), never the value given: a mistyped argument may be a secret. */
static char *read_file(const char *path, const char *what, size_t limit, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "iamctl: cannot read the %s file: %s\n", what, strerror(errno));
        return NULL;
    }
    char *buf = read_stream(f, limit, len);
    fclose(f);
    if (!buf)
        fprintf(stderr, "iamctl: out of memory reading the %s file\n", what);
    else if (*len > limit) {
        fprintf(stderr, "iamctl: the %s file is larger than %zu bytes\n", what, limit);
        free(buf);
        buf = NULL;
    }
    return buf;
}

static void trim_trailing_space(char *s, size_t *len)
{
    while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r' || s[*len - 1] == ' ' ||
                        s[*len - 1] == '\t'))
        s[--*len] = '\0';
}

/* The token argument, or stdin for "-". Caller frees. */
static char *token_arg(const char *arg, size_t *len)
{
    if (strcmp(arg, "-") == 0) {
        /* Read a little past the limit so an oversized input is reported as too_large:
         * whatever lies past the limit is never looked at, and never trimmed away. */
        char *t = read_stream(stdin, IAM_MAX_TOKEN_BYTES + 16, len);
        if (t && *len <= IAM_MAX_TOKEN_BYTES + 16)
            trim_trailing_space(t, len);
        return t;
    }
    *len = strlen(arg);
    return strdup(arg);
}

static bool parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    if (!((s[0] >= '0' && s[0] <= '9') || s[0] == '-')) /* strtoll would skip spaces, take '+' */
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int key_error(const char *what, const iam_error *e)
{
    fprintf(stderr, "iamctl: %s: %s\n", what, e->message);
    return EXIT_USAGE;
}

static int add_key_file(iam_keyset *ks, const char *kind, const char *path)
{
    size_t len;
    char *text = read_file(path, kind, IAM_MAX_JWKS_BYTES, &len);
    if (!text)
        return EXIT_USAGE;
    iam_error e = {0};
    iam_status st;
    if (strcmp(kind, "jwks") == 0) {
        size_t added = 0, skipped = 0;
        st = iam_keyset_add_jwks(ks, text, len, &added, &skipped, &e);
        if (st == IAM_OK && added == 0) {
            free(text);
            fprintf(stderr, "iamctl: the jwks file holds no usable key (%zu skipped)\n", skipped);
            return EXIT_USAGE;
        }
    } else if (strcmp(kind, "jwk") == 0) {
        st = iam_keyset_add_jwk(ks, text, len, &e);
    } else {
        st = iam_keyset_add_pem(ks, text, len, NULL, &e);
    }
    free(text);
    return st == IAM_OK ? 0 : key_error(kind, &e);
}

static int add_secret(iam_keyset *ks, const char *secret, size_t len)
{
    iam_error e = {0};
    return iam_keyset_add_hmac(ks, secret, len, NULL, &e) == IAM_OK ? 0 : key_error("secret", &e);
}

/* A secret file's text without its final line break (NUL-terminated); NULL when unreadable. */
static char *read_secret_file(const char *path, const char *what, size_t *len)
{
    char *text = read_file(path, what, IAM_MAX_HMAC_KEY_BYTES + 2, len);
    if (!text)
        return NULL;
    if (*len > 0 && text[*len - 1] == '\n')
        (*len)--;
    if (*len > 0 && text[*len - 1] == '\r')
        (*len)--;
    text[*len] = '\0';
    return text;
}

static int report_rejection(iam_status st, const iam_error *e)
{
    fprintf(stderr, "error: %s: %s\n", iam_status_name(st), e->message[0] ? e->message : iam_strerror(st));
    return iam_status_is_rejection(st) ? EXIT_REJECTED : EXIT_USAGE;
}

static int64_t fixed_clock_ms(void *ctx)
{
    return *(const int64_t *)ctx * 1000;
}

/* verify --repeat/--stats: the same checks through a client, so the cache shows. A
 * usage-level failure to create the client is reported like a key error (exit 2). */
typedef struct net_opts {
    const char *redis_url;
    const char *auth_url, *jwks_url;
    bool central;
    int64_t auth_timeout_ms;
    const char *secret;       /* the HMAC secret given (the cache secret derives from it) */
    char *cache_secret;       /* from --cache-secret-file */
} net_opts;

static iam_status verify_through_client(iam_keyset *ks, const iam_verify_options *vo,
                                        int64_t *fixed_now, const char *token, size_t len,
                                        int64_t repeat, bool stats, const net_opts *net,
                                        iam_user **user, iam_error *e)
{
    iam_client_options o;
    iam_client_options_init(&o);
    bool network = net->redis_url || net->auth_url || net->jwks_url;
    o.mode = net->central ? IAM_MODE_CENTRAL : network ? IAM_MODE_LOCAL_FIRST : IAM_MODE_LOCAL_ONLY;
    o.redis_url = net->redis_url;
    o.auth_url = net->auth_url;
    o.jwks_url = net->jwks_url;
    o.auth_timeout_ms = net->auth_timeout_ms;
    o.cache_secret = net->cache_secret;
    o.jwt_secret = net->redis_url ? net->secret : NULL;
    o.keys = ks;
    o.audience = vo->audience;
    o.issuer = vo->issuer;
    o.leeway_s = vo->leeway_s;
    if (fixed_now) {
        o.clock_ms = fixed_clock_ms;
        o.clock_ctx = fixed_now;
    }
    iam_client *c = NULL;
    iam_status st = iam_client_new(&o, &c, e);
    if (st != IAM_OK)
        return st;
    for (int64_t i = 0; i < repeat; i++) {
        iam_user_release(*user);
        *user = NULL;
        st = iam_client_resolve(c, token, len, NULL, user, e);
    }
    if (stats) {
        char *json = iam_client_stats_json(c);
        if (json)
            fprintf(stderr, "%s\n", json);
        iam_free(json);
    }
    iam_client_free(c);
    return st;
}

static int cmd_verify(int argc, char **argv)
{
    iam_keyset *ks = iam_keyset_new();
    if (!ks)
        return usage_error("%s", "out of memory");
    iam_verify_options opts = {0};
    int64_t now = (int64_t)time(NULL), repeat = 0;
    const char *token_src = NULL;
    bool have_key = false, fixed_now = false, stats = false;
    int rc = 0;
    net_opts net = {0};
    char *secret_owned = NULL;
    const char *secret = NULL;
    size_t secret_len = 0;
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = a[0] == '-' && a[1] == '-' && strcmp(a, "--stats") != 0;
        if (takes_value && !v) {
            rc = usage_error("option %s needs a value", a);
            break;
        }
        if (strcmp(a, "--secret") == 0 || strcmp(a, "--secret-file") == 0) {
            if (secret)
                rc = usage_error("%s", "give one secret (--secret or --secret-file)");
            else if (a[8] == '\0')
                secret = v, secret_len = strlen(v);
            else if (!(secret = secret_owned = read_secret_file(v, "secret", &secret_len)))
                rc = EXIT_USAGE;
            have_key = true, i++;
        } else if (strcmp(a, "--redis") == 0) {
            net.redis_url = v, i++;
        } else if (strcmp(a, "--auth-url") == 0) {
            net.auth_url = v, i++;
        } else if (strcmp(a, "--jwks-url") == 0) {
            net.jwks_url = v, i++;
        } else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "central") == 0)
                net.central = true;
            else if (strcmp(v, "local-first") != 0)
                rc = usage_error("%s", "--mode is local-first or central");
            i++;
        } else if (strcmp(a, "--auth-timeout") == 0) {
            if (!parse_int64(v, 1, IAM_MAX_AUTH_TIMEOUT_MS, &net.auth_timeout_ms))
                rc = usage_error("--auth-timeout needs milliseconds from 1 to %d", IAM_MAX_AUTH_TIMEOUT_MS);
            i++;
        } else if (strcmp(a, "--cache-secret-file") == 0) {
            size_t n;
            free(net.cache_secret);
            if (!(net.cache_secret = read_secret_file(v, "cache secret", &n)))
                rc = EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--jwks") == 0) {
            rc = add_key_file(ks, "jwks", v);
            have_key = true, i++;
        } else if (strcmp(a, "--pem") == 0) {
            rc = add_key_file(ks, "pem", v);
            have_key = true, i++;
        } else if (strcmp(a, "--audience") == 0) {
            opts.audience = v, i++;
        } else if (strcmp(a, "--issuer") == 0) {
            opts.issuer = v, i++;
        } else if (strcmp(a, "--leeway") == 0) {
            if (!parse_int64(v, 0, 86400, &opts.leeway_s))
                rc = usage_error("%s", "--leeway needs whole seconds from 0 to 86400");
            i++;
        } else if (strcmp(a, "--now") == 0) {
            if (!parse_int64(v, 0, (int64_t)IAM_MAX_NUMERIC_DATE, &now))
                rc = usage_error("%s", "--now needs whole seconds since the epoch");
            fixed_now = true;
            i++;
        } else if (strcmp(a, "--repeat") == 0) {
            if (!parse_int64(v, 1, 1000000000, &repeat))
                rc = usage_error("%s", "--repeat needs a count from 1 to 1000000000");
            i++;
        } else if (strcmp(a, "--stats") == 0) {
            stats = true; /* a flag: takes no value */
        } else if (takes_value) {
            rc = usage_error("unknown option %s", a);
        } else if (token_src) {
            rc = usage_error("%s", "give exactly one token (or - for stdin)");
        } else {
            token_src = a;
        }
    }
    if (rc == 0 && net.central && !net.auth_url)
        rc = usage_error("%s", "--mode central needs --auth-url (the service decides)");
    if (rc == 0 && !have_key) {
        const char *env = getenv("IAM_JWT_SECRET");
        if (env && *env)
            secret = env, secret_len = strlen(env);
        else if (!net.auth_url && !net.jwks_url)
            rc = usage_error("%s", "no key: give --secret, --secret-file, --jwks or --pem (or set IAM_JWT_SECRET),"
                                   " or --auth-url/--jwks-url");
    }
    /* With Redis the client takes the secret itself (its cache secret derives from it). */
    if (rc == 0 && secret && !net.redis_url)
        rc = add_secret(ks, secret, secret_len);
    else if (rc == 0 && secret && strlen(secret) != secret_len)
        rc = usage_error("%s", "with --redis the secret cannot contain NUL bytes");
    net.secret = secret;
    if (rc == 0 && !token_src)
        rc = usage_error("%s", "no token given (pass it as an argument or - for stdin)");
    if (rc) {
        iam_keyset_release(ks);
        free(secret_owned);
        free(net.cache_secret);
        return rc;
    }
    size_t len;
    char *token = token_arg(token_src, &len);
    if (!token) {
        iam_keyset_release(ks);
        free(secret_owned);
        free(net.cache_secret);
        return usage_error("%s", "cannot read the token");
    }
    iam_user *user = NULL;
    iam_error e = {0};
    iam_status st;
    if (repeat || stats || net.redis_url || net.auth_url || net.jwks_url)
        st = verify_through_client(ks, &opts, fixed_now ? &now : NULL, token, len,
                                   repeat ? repeat : 1, stats, &net, &user, &e);
    else
        st = iam_token_verify(token, len, ks, &opts, now, &user, &e);
    free(token);
    iam_keyset_release(ks);
    free(secret_owned);
    free(net.cache_secret);
    if (st != IAM_OK)
        return report_rejection(st, &e);
    char *json = iam_user_to_json(user);
    iam_user_release(user);
    if (!json)
        return usage_error("%s", "out of memory");
    printf("%s\n", json);
    iam_free(json);
    return 0;
}

static int cmd_jws_verify(int argc, char **argv)
{
    iam_keyset *ks = iam_keyset_new();
    if (!ks)
        return usage_error("%s", "out of memory");
    const char *src = NULL;
    bool have_key = false;
    int rc = 0;
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool opt = a[0] == '-' && a[1] == '-';
        if (opt && !v)
            rc = usage_error("option %s needs a value", a);
        else if (strcmp(a, "--jwk") == 0)
            rc = add_key_file(ks, "jwk", v), have_key = true, i++;
        else if (strcmp(a, "--jwks") == 0)
            rc = add_key_file(ks, "jwks", v), have_key = true, i++;
        else if (strcmp(a, "--secret") == 0)
            rc = add_secret(ks, v, strlen(v)), have_key = true, i++;
        else if (opt)
            rc = usage_error("unknown option %s", a);
        else if (src)
            rc = usage_error("%s", "give exactly one JWS (or - for stdin)");
        else
            src = a;
    }
    if (rc == 0 && !have_key)
        rc = usage_error("%s", "no key: give --jwk, --jwks or --secret");
    if (rc == 0 && !src)
        rc = usage_error("%s", "no JWS given");
    if (rc) {
        iam_keyset_release(ks);
        return rc;
    }
    size_t len;
    char *jws = token_arg(src, &len);
    char *payload = NULL;
    size_t plen = 0;
    iam_error e = {0};
    iam_status st = jws ? iam_jws_verify(jws, len, ks, &payload, &plen, &e) : IAM_E_NOMEM;
    free(jws);
    iam_keyset_release(ks);
    if (st != IAM_OK)
        return report_rejection(st, &e);
    fwrite(payload, 1, plen, stdout);
    if (plen == 0 || payload[plen - 1] != '\n')
        putchar('\n');
    iam_free(payload);
    return 0;
}

/* Options shared by revoke and watch: --redis URL, a secret or cache secret (optional:
 * without one, a random throwaway key serves a client that only writes and listens). */
typedef struct redis_cmd_opts {
    const char *redis_url;
    char *secret, *cache_secret;
    int64_t count;
    const char *token_src;
} redis_cmd_opts;

static int parse_redis_cmd(int argc, char **argv, bool want_token, redis_cmd_opts *r)
{
    memset(r, 0, sizeof *r);
    int rc = 0;
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool opt = a[0] == '-' && a[1] == '-';
        size_t n;
        if (opt && !v) {
            rc = usage_error("option %s needs a value", a);
        } else if (strcmp(a, "--redis") == 0) {
            r->redis_url = v, i++;
        } else if (want_token && strcmp(a, "--secret") == 0 && !r->secret) {
            r->secret = strdup(v), i++;
        } else if (want_token && strcmp(a, "--secret-file") == 0 && !r->secret) {
            if (!(r->secret = read_secret_file(v, "secret", &n)))
                rc = EXIT_USAGE;
            i++;
        } else if (want_token && strcmp(a, "--cache-secret-file") == 0 && !r->cache_secret) {
            if (!(r->cache_secret = read_secret_file(v, "cache secret", &n)))
                rc = EXIT_USAGE;
            i++;
        } else if (!want_token && strcmp(a, "--count") == 0) {
            if (!parse_int64(v, 1, 1000000000, &r->count))
                rc = usage_error("%s", "--count needs a number from 1 to 1000000000");
            i++;
        } else if (opt) {
            rc = usage_error("unknown or repeated option %s", a);
        } else if (!want_token || r->token_src) {
            rc = usage_error("%s", want_token ? "give exactly one token (or - for stdin)" : "watch takes no arguments");
        } else {
            r->token_src = a;
        }
    }
    if (rc == 0 && want_token && !r->secret && getenv("IAM_JWT_SECRET") && *getenv("IAM_JWT_SECRET"))
        r->secret = strdup(getenv("IAM_JWT_SECRET")); /* as verify does: the record is found */
    if (rc == 0 && !r->redis_url)
        rc = usage_error("%s", "--redis URL is required");
    if (rc == 0 && want_token && !r->token_src)
        rc = usage_error("%s", "no token given (pass it as an argument or - for stdin)");
    return rc;
}

static void redis_cmd_free(redis_cmd_opts *r)
{
    free(r->secret);
    free(r->cache_secret);
}

/* A client for revoke/watch. Without a secret it holds a random one: it verifies nothing,
 * it only writes the platform's keys and listens. */
static iam_status redis_cmd_client(const redis_cmd_opts *r, void (*on_inv)(void *, const iam_invalidation *),
                                   void *arg, iam_client **c, iam_error *e)
{
    char random_secret[65];
    unsigned char raw[32];
    FILE *f = fopen("/dev/urandom", "rb");
    bool got = f && fread(raw, 1, sizeof raw, f) == sizeof raw;
    if (f)
        fclose(f);
    if (!got)
        return IAM_E_INTERNAL;
    for (int i = 0; i < 32; i++)
        snprintf(random_secret + 2 * i, 3, "%02x", raw[i]);
    iam_client_options o;
    iam_client_options_init(&o);
    o.redis_url = r->redis_url;
    o.jwt_secret = r->secret ? r->secret : random_secret;
    o.cache_secret = r->cache_secret;
    o.on_invalidation = on_inv;
    o.invalidation_arg = arg;
    return iam_client_new(&o, c, e);
}

static int cmd_revoke(int argc, char **argv)
{
    redis_cmd_opts r;
    int rc = parse_redis_cmd(argc, argv, true, &r);
    size_t len = 0;
    char *token = rc == 0 ? token_arg(r.token_src, &len) : NULL;
    if (rc == 0 && !token)
        rc = usage_error("%s", "cannot read the token");
    iam_client *c = NULL;
    iam_error e = {0};
    iam_status st = rc == 0 ? redis_cmd_client(&r, NULL, NULL, &c, &e) : IAM_OK;
    if (rc == 0 && st != IAM_OK)
        rc = report_rejection(st, &e);
    if (rc == 0) {
        st = iam_client_revoke_token(c, token, len, &e);
        if (st == IAM_OK) {
            printf("{\"revoked\":true}\n");
        } else {
            fprintf(stderr, "error: %s: %s\n", iam_status_name(st), e.message);
            rc = st == IAM_E_UNAVAILABLE ? EXIT_REJECTED : EXIT_USAGE;
        }
    }
    iam_client_free(c);
    free(token);
    redis_cmd_free(&r);
    return rc;
}

typedef struct watch_state {
    pthread_mutex_t lock;
    int64_t heard;
    bool broken;     /* stdout could not be written (e.g. `iamctl watch | head -n 1`: a closed pipe) */
    int write_errno; /* why (errno is per thread: this is the I/O thread's) */
} watch_state;

static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* On the client's I/O thread: one JSON line per event. That thread blocks SIGPIPE (the
 * library never lets it kill a host), so a closed pipe shows as a write error here: it is
 * reported to the main thread, which ends the way a filter ends on a closed pipe. */
static void on_watch_event(void *arg, const iam_invalidation *m)
{
    watch_state *w = arg;
    pthread_mutex_lock(&w->lock);
    bool broken = w->broken;
    pthread_mutex_unlock(&w->lock);
    if (broken)
        return;
    if (m->kind == IAM_INVALIDATION_SUBSCRIBED) {
        printf("{\"event\":\"subscribed\",\"channel\":\"%s\"}\n", IAM_REDIS_CHANNEL);
    } else if (m->kind == IAM_INVALIDATION_LOST) {
        printf("{\"event\":\"lost\"}\n");
    } else {
        printf("{\"event\":\"%s\"", m->malformed ? "malformed" : "message");
        if (m->user_id) {
            printf(",\"user_id\":");
            print_json_string(m->user_id);
        }
        if (m->jti) {
            printf(",\"jti\":");
            print_json_string(m->jti);
        }
        if (m->token_fingerprint[0])
            printf(",\"token_sha256_16\":\"%s\"", m->token_fingerprint);
        if (m->all)
            printf(",\"all\":true");
        printf("}\n");
        pthread_mutex_lock(&w->lock);
        w->heard++;
        pthread_mutex_unlock(&w->lock);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int why = errno;
        pthread_mutex_lock(&w->lock);
        w->broken = true;
        w->write_errno = why;
        pthread_mutex_unlock(&w->lock);
    }
}

/* How long watch waits for its subscription before saying it has none. */
#define WATCH_WARN_S 3

static int cmd_watch(int argc, char **argv)
{
    redis_cmd_opts r;
    int rc = parse_redis_cmd(argc, argv, false, &r);
    if (rc)
        return rc;
    /* SIGINT/SIGTERM are taken by sigtimedwait below (blocked before the I/O thread starts,
     * so it inherits the mask and never runs a handler). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    watch_state w = {.heard = 0};
    pthread_mutex_init(&w.lock, NULL);
    iam_client *c = NULL;
    iam_error e = {0};
    iam_status st = redis_cmd_client(&r, on_watch_event, &w, &c, &e);
    if (st != IAM_OK) {
        rc = report_rejection(st, &e);
    } else {
        /* A mistyped URL must not look like a quiet channel: once, after a few seconds
         * without a subscription, say so on stderr (without the URL: it may hold a
         * password), and go on trying. */
        struct timespec started;
        clock_gettime(CLOCK_MONOTONIC, &started);
        bool warned = false;
        for (;;) {
            struct timespec tick = {0, 100 * 1000000};
            if (sigtimedwait(&set, NULL, &tick) > 0)
                break;
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (!warned && now.tv_sec - started.tv_sec >= WATCH_WARN_S) {
                iam_client_stats s;
                iam_client_stats_get(c, &s);
                if (!s.redis_subscribed) {
                    fprintf(stderr, "iamctl watch: not subscribed after %d s: %s; still trying\n",
                            WATCH_WARN_S,
                            s.redis_connected ? "the server does not confirm SUBSCRIBE (not Redis, or a "
                                                "password missing from the URL?)"
                                              : "Redis cannot be reached at the URL's address");
                    fflush(stderr);
                }
                warned = true;
            }
            /* a reader gone on a quiet channel: the pipe's write end reports an error
             * before anything is written (a terminal or a file never does) */
            struct pollfd out = {.fd = STDOUT_FILENO, .events = 0};
            bool gone = poll(&out, 1, 0) == 1 && (out.revents & POLLERR);
            pthread_mutex_lock(&w.lock);
            if (gone && !w.broken) {
                w.broken = true;
                w.write_errno = EPIPE;
            }
            bool enough = (r.count && w.heard >= r.count) || w.broken;
            pthread_mutex_unlock(&w.lock);
            if (enough)
                break;
        }
    }
    iam_client_free(c);
    pthread_mutex_destroy(&w.lock);
    redis_cmd_free(&r);
    if (w.broken) {
        /* the reader went away: end as any filter does on a closed pipe, by SIGPIPE (the
         * shell's 141); another write error is reported */
        if (w.write_errno == EPIPE) {
            signal(SIGPIPE, SIG_DFL);
            sigset_t pipe_set;
            sigemptyset(&pipe_set);
            sigaddset(&pipe_set, SIGPIPE);
            pthread_sigmask(SIG_UNBLOCK, &pipe_set, NULL);
            raise(SIGPIPE);
        }
        fprintf(stderr, "error: writing to standard output failed: %s\n", strerror(w.write_errno));
        return 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 2, argv + 2);
    if (strcmp(cmd, "jws-verify") == 0)
        return cmd_jws_verify(argc - 2, argv + 2);
    if (strcmp(cmd, "revoke") == 0)
        return cmd_revoke(argc - 2, argv + 2);
    if (strcmp(cmd, "watch") == 0)
        return cmd_watch(argc - 2, argv + 2);
    if (strcmp(cmd, "demo") == 0)
        return iamctl_demo(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("iamctl %s\n", IAM_VERSION_STRING);
        return 0;
    }
    return usage_error("unknown command '%s'", cmd);
}
