/*
 * test_redis.c — the Redis tier against a real redis-server (tests/support/redis_server.c):
 *
 *   shared cache   a record written by a client that can verify a token answers a client
 *                  that cannot (same cache_secret); PTTL <= exp and <= cache_ttl_s; keys and
 *                  values never hold token bytes; identifiers are strings; a record that is
 *                  tampered with (flipped byte, swapped, replayed, another context, garbage)
 *                  is a miss, counted and deleted — never an accepted identity;
 *   revocation     blacklist:jti:<jti> refuses before trust, also when it appears while
 *                  resolutions are in flight; iam_client_revoke_token's key, TTL, record
 *                  deletion and message bytes; the invalidate/revoke calls publish;
 *   invalidation   messages on policy:invalidate (the platform's exact format, integer
 *                  user_id, jti, token, all; malformed ones ignored and counted) evict; the
 *                  on_invalidation callback's kinds (SUBSCRIBED, MESSAGE, LOST);
 *   failure        Redis stopped, hung (SIGSTOP), restarted, never started: calls return
 *                  within a generous bound, fail-closed UNAVAILABLE / fail-open accepts,
 *                  nothing wrong is accepted, service resumes by itself, cached answers stop
 *                  after redis_stale_s once the subscription is lost;
 *   configuration  rediss:// refused, malformed URLs, cache_secret rules, option ranges,
 *                  password (also percent-encoded, also wrong), db number, unix socket;
 *   edges          a jti or user id longer than 256 bytes, a record key holding a list.
 *
 * The real clock is used (Redis TTLs are real), tokens expire relative to time(NULL). No
 * timing is asserted beyond generous upper bounds (BOUND_MS); waits are bounded polls.
 * Tokens are minted by tests/support/mint.c (independent of the library). One shared server
 * (flushed before each test) serves most tests; those that stop, hang or restart Redis, or
 * need a password or a socket, start their own. A SIGPIPE handler counts instead of dying:
 * test_no_sigpipe checks that the library never raised one. IAM_TEST_FILTER=<glob> runs
 * only the matching tests.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "iamclient.h"
#include "mint.h"
#include "redis_server.h"
#include "netns_hosts.h"
#include "tcp_proxy.h"

/* No call may block longer than this (redis_timeout_ms is at most 2 s here):
 * a generous bound that only catches a call hanging, never measures speed. */
#define BOUND_MS 5000
/* How long a poll waits for something asynchronous (a message, a reconnection). */
#define WAIT_MS 8000
/* redis_timeout_ms: generous where Redis is meant to work (a loaded machine, sanitizer
 * builds run in parallel, must not turn a slow answer into UNAVAILABLE), short where the
 * test makes it fail. */
#define REDIS_TIMEOUT_MS 2000
#define FAIL_TIMEOUT_MS 500

static const char SECRET[] = "redis-test-secret-0123456789abcdefghijklmnopqrstuvwxyz";
static const char CACHE_SECRET[] = "redis-test-cache-secret-0123456789abcdefghijklmnop";
static const char OTHER_CACHE_SECRET[] = "another-cache-secret-0123456789abcdefghijklmnopqr";
static const char RECORD_PREFIX[] = IAM_REDIS_KEY_PREFIX "cache:";

static mint_key *g_key;        /* signs every token (HS256, SECRET) */
static mint_key *g_other_key;  /* a wrong signer */
static iam_keyset *g_rsa_keys; /* an unrelated RSA public key: a client holding only it
                                  cannot verify our HS256 tokens (IAM_E_UNKNOWN_KEY) */
static rs_server *g_rs;        /* the shared server (flushed before every test) */
static pthread_t g_main_thread;
static atomic_int g_sigpipes;

/* ------------------------------------------------------------ per-test resources */

#define MAX_TRACKED 16
static iam_client *g_clients[MAX_TRACKED];
static rs_server *g_servers[MAX_TRACKED];

static void on_sigpipe(int sig)
{
    (void)sig;
    atomic_fetch_add(&g_sigpipes, 1);
}

static rs_server *server_private(const rs_options *o)
{
    rs_server *s = rs_start(o);
    if (!s)
        fail_msg("could not start redis-server");
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!g_servers[i]) {
            g_servers[i] = s;
            return s;
        }
    fail_msg("too many servers");
    return NULL;
}

static iam_client *track(iam_client *c)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!g_clients[i]) {
            g_clients[i] = c;
            return c;
        }
    fail_msg("too many clients");
    return NULL;
}

static void client_free(iam_client *c)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (g_clients[i] == c)
            g_clients[i] = NULL;
    iam_client_free(c);
}

/* ------------------------------------------------------------ invalidation recorder */

typedef struct ev {
    iam_invalidation_kind kind;
    bool has_user, has_jti, all, malformed, on_main;
    char user_id[128], jti[128], fp[17];
} ev;

#define MAX_EVENTS 512
typedef struct recorder {
    pthread_mutex_t mu;
    int n;
    ev evs[MAX_EVENTS];
} recorder;

static recorder g_rec;

static void rec_reset(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    r->n = 0;
    memset(r->evs, 0, sizeof r->evs);
    pthread_mutex_unlock(&r->mu);
}

static void on_invalidation(void *arg, const iam_invalidation *m)
{
    recorder *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EVENTS) {
        ev *e = &r->evs[r->n];
        e->kind = m->kind;
        e->has_user = m->user_id != NULL;
        if (m->user_id)
            snprintf(e->user_id, sizeof e->user_id, "%s", m->user_id);
        e->has_jti = m->jti != NULL;
        if (m->jti)
            snprintf(e->jti, sizeof e->jti, "%s", m->jti);
        e->all = m->all;
        e->malformed = m->malformed;
        memcpy(e->fp, m->token_fingerprint, sizeof e->fp);
        e->fp[16] = '\0';
        e->on_main = pthread_equal(pthread_self(), g_main_thread) != 0;
    }
    r->n++;
    pthread_mutex_unlock(&r->mu);
}

static int rec_count(recorder *r, iam_invalidation_kind kind)
{
    int c = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n && i < MAX_EVENTS; i++)
        c += r->evs[i].kind == kind;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* Copies the first MESSAGE event naming user_id to *out; false when there is none. */
static bool rec_find_user(recorder *r, const char *user_id, ev *out)
{
    bool found = false;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n && i < MAX_EVENTS && !found; i++)
        if (r->evs[i].kind == IAM_INVALIDATION_MESSAGE && r->evs[i].has_user &&
            strcmp(r->evs[i].user_id, user_id) == 0) {
            *out = r->evs[i];
            found = true;
        }
    pthread_mutex_unlock(&r->mu);
    return found;
}

static bool wait_user_message(recorder *r, const char *user_id, ev *out)
{
    long long deadline = rs_mono_ms() + WAIT_MS;
    ev tmp;
    while (rs_mono_ms() < deadline) {
        if (rec_find_user(r, user_id, out ? out : &tmp))
            return true;
        rs_sleep_ms(5);
    }
    return false;
}

static bool wait_count(recorder *r, iam_invalidation_kind kind, int at_least, long ms)
{
    long long deadline = rs_mono_ms() + ms;
    while (rs_mono_ms() < deadline) {
        if (rec_count(r, kind) >= at_least)
            return true;
        rs_sleep_ms(5);
    }
    return false;
}

/* ------------------------------------------------------------ tokens */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (!s)
        abort();
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A fresh uuid-shaped jti, unique in this run. */
static void new_jti(char out[37])
{
    static atomic_uint counter;
    unsigned n = atomic_fetch_add(&counter, 1) + 1;
    snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)getpid(), n & 0xffff,
             (unsigned)(time(NULL) & 0xfff), n & 0xfff, (unsigned long long)n * 7919u);
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static long long real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The platform's claim set: sub (NULL: none), jti (NULL: none), exp, aud (raw JSON, NULL:
 * "omnibioai-platform"), extra raw members (NULL: org_id 7, team_id/idp_org_id null).
 */
static char *claims(const char *sub, const char *jti, int64_t exp, const char *aud_json,
                    const char *extra)
{
    char *subm = sub ? xprintf("\"sub\":\"%s\",", sub) : xstrdup("");
    char *jtim = jti ? xprintf("\"jti\":\"%s\",", jti) : xstrdup("");
    char *c = xprintf("{%s\"email\":\"user@example.org\",\"roles\":[\"user\",\"scientist\"],"
                      "\"permissions\":[\"dataset.read\",\"workflow.execute\"],"
                      "\"auth_method\":\"password\",\"token_version\":2,\"mfa_verified\":true,"
                      "\"exp\":%lld,\"type\":\"access\",%s\"iss\":\"omnibioai-auth\",\"aud\":%s,%s}",
                      subm, (long long)exp, jtim, aud_json ? aud_json : "\"omnibioai-platform\"",
                      extra ? extra : "\"org_id\":7,\"team_id\":null,\"idp_org_id\":null");
    free(subm);
    free(jtim);
    return c;
}

static char *sign(const char *claims_json, const mint_key *k)
{
    return mint_token("HS256", NULL, claims_json, k);
}

/* A valid token for sub with a fresh jti (copied to jti_out when not NULL), exp now+600. */
static char *token(const char *sub, char *jti_out)
{
    char jti[37];
    new_jti(jti);
    if (jti_out)
        memcpy(jti_out, jti, 37);
    char *c = claims(sub, jti, now_s() + 600, NULL, NULL);
    char *t = sign(c, g_key);
    free(c);
    return t;
}

static char *token_exp(const char *sub, char *jti_out, int64_t exp)
{
    char jti[37];
    new_jti(jti);
    if (jti_out)
        memcpy(jti_out, jti, 37);
    char *c = claims(sub, jti, exp, NULL, NULL);
    char *t = sign(c, g_key);
    free(c);
    return t;
}

/* ------------------------------------------------------------ clients */

static void redis_opts(iam_client_options *o, const char *url)
{
    iam_client_options_init(o);
    o->mode = IAM_MODE_LOCAL_FIRST;
    o->jwt_secret = SECRET;
    o->cache_secret = CACHE_SECRET;
    o->redis_url = url;
    o->redis_timeout_ms = REDIS_TIMEOUT_MS;
    /* IAM_TEST_REDIS_DIRECT=-1 (the test_redis_io_thread run): every blocking call goes
     * through the I/O thread, so both lanes run every test */
    const char *d = getenv("IAM_TEST_REDIS_DIRECT");
    if (d && *d)
        o->redis_direct_max = atoi(d);
}

/* A client that holds no key for our tokens (only an unrelated RSA key): it can answer them
 * only from a shared record. Refusals are not remembered, so every call asks Redis. */
static void keyless_opts(iam_client_options *o, const char *url)
{
    redis_opts(o, url);
    o->jwt_secret = NULL;
    o->keys = g_rsa_keys;
    o->negative_ttl_s = -1;
}

static iam_client *client_new(const iam_client_options *o)
{
    iam_client *c = NULL;
    iam_error e = {0};
    long long t0 = rs_mono_ms();
    iam_status st = iam_client_new(o, &c, &e);
    long long took = rs_mono_ms() - t0;
    if (st != IAM_OK)
        fail_msg("iam_client_new: %s (%s)", iam_status_name(st), e.message);
    assert_non_null(c);
    if (took > BOUND_MS)
        fail_msg("iam_client_new took %lld ms", took);
    return track(c);
}

static iam_client_stats stats(iam_client *c)
{
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    return s;
}

/* Waits until the client is connected and subscribed. */
static void wait_ready(iam_client *c)
{
    long long deadline = rs_mono_ms() + WAIT_MS;
    while (rs_mono_ms() < deadline) {
        iam_client_stats s = stats(c);
        if (s.redis_connected && s.redis_subscribed)
            return;
        rs_sleep_ms(5);
    }
    iam_client_stats s = stats(c);
    fail_msg("client not ready after %d ms: connected %d subscribed %d errors %llu", WAIT_MS,
             s.redis_connected, s.redis_subscribed, (unsigned long long)s.redis_errors);
}

static iam_client *ready_client(const iam_client_options *o)
{
    iam_client *c = client_new(o);
    wait_ready(c);
    return c;
}

/* Resolves (main thread), bounded in time; on OK checks the user id when expect_sub. */
static iam_status resolve_ro(iam_client *c, const char *tok, const iam_resolve_options *ro,
                             const char *expect_sub)
{
    iam_user *u = (iam_user *)0x1;
    iam_error e = {0};
    long long t0 = rs_mono_ms();
    iam_status st = iam_client_resolve(c, tok, strlen(tok), ro, &u, &e);
    long long took = rs_mono_ms() - t0;
    if (took > BOUND_MS)
        fail_msg("iam_client_resolve took %lld ms (bound %d)", took, BOUND_MS);
    if (st == IAM_OK) {
        assert_non_null(u);
        if (expect_sub && strcmp(iam_user_id(u), expect_sub) != 0)
            fail_msg("accepted as user '%s', expected '%s'", iam_user_id(u), expect_sub);
        iam_user_release(u);
    } else {
        assert_null(u);
        assert_int_equal(e.code, st);
        assert_null(strstr(e.message, tok));
    }
    return st;
}

static iam_status resolve(iam_client *c, const char *tok, const char *expect_sub)
{
    return resolve_ro(c, tok, NULL, expect_sub);
}

/* Thread-safe, no cmocka: status only. */
static iam_status resolve_quiet(iam_client *c, const char *tok, long long *took_ms)
{
    iam_user *u = NULL;
    long long t0 = rs_mono_ms();
    iam_status st = iam_client_resolve(c, tok, strlen(tok), NULL, &u, NULL);
    if (took_ms)
        *took_ms = rs_mono_ms() - t0;
    if (u)
        iam_user_release(u);
    return st;
}

static iam_status cached(iam_client *c, const char *tok, const char *expect_sub)
{
    iam_user *u = NULL;
    iam_error e = {0};
    long long t0 = rs_mono_ms();
    iam_status st = iam_client_cached(c, tok, strlen(tok), NULL, &u, &e);
    long long took = rs_mono_ms() - t0;
    if (took > BOUND_MS)
        fail_msg("iam_client_cached took %lld ms", took);
    if (st == IAM_OK) {
        assert_non_null(u);
        if (expect_sub && strcmp(iam_user_id(u), expect_sub) != 0)
            fail_msg("cached answer is user '%s', expected '%s'", iam_user_id(u), expect_sub);
        iam_user_release(u);
    } else {
        assert_null(u);
    }
    return st;
}

static iam_status revoke_token(iam_client *c, const char *tok)
{
    iam_error e = {0};
    long long t0 = rs_mono_ms();
    iam_status st = iam_client_revoke_token(c, tok, strlen(tok), &e);
    long long took = rs_mono_ms() - t0;
    if (took > BOUND_MS)
        fail_msg("iam_client_revoke_token took %lld ms", took);
    if (st != IAM_OK) {
        assert_int_equal(e.code, st);
        assert_null(strstr(e.message, tok));
    }
    return st;
}

#define assert_status(got, want)                                                              \
    do {                                                                                      \
        iam_status got_ = (got), want_ = (want);                                              \
        if (got_ != want_)                                                                    \
            fail_msg("%s: got %s, expected %s", #got, iam_status_name(got_),                  \
                     iam_status_name(want_));                                                 \
    } while (0)

#define assert_not_ok(got)                                                                    \
    do {                                                                                      \
        iam_status got_ = (got);                                                              \
        if (got_ == IAM_OK)                                                                   \
            fail_msg("%s: accepted (IAM_OK), must not be", #got);                            \
    } while (0)

/* Polls `cond` every 5 ms for up to ms milliseconds. */
#define WAIT_UNTIL(cond, ms)                                                                  \
    ({                                                                                        \
        long long dl_ = rs_mono_ms() + (ms);                                                  \
        bool ok_ = false;                                                                     \
        while (!(ok_ = (cond)) && rs_mono_ms() < dl_)                                         \
            rs_sleep_ms(5);                                                                   \
        ok_;                                                                                  \
    })

/* ------------------------------------------------------------ records */

static char **record_keys(rs_server *s, long *n)
{
    char **k = rs_keys(s, IAM_REDIS_KEY_PREFIX "cache:*", n);
    if (*n < 0)
        fail_msg("KEYS failed");
    return k;
}

static long record_count(rs_server *s)
{
    long n;
    char **k = record_keys(s, &n);
    rs_free_keys(k, n);
    return n;
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

/* Resolves tok through c (which must accept it) and returns the one record key that
 * appeared for it (waiting for the write). Caller frees. */
static char *resolve_and_record(rs_server *s, iam_client *c, const char *tok, const char *sub)
{
    long n0;
    char **before = record_keys(s, &n0);
    assert_status(resolve(c, tok, sub), IAM_OK);
    char *found = NULL;
    long long deadline = rs_mono_ms() + WAIT_MS;
    while (!found && rs_mono_ms() < deadline) {
        long n;
        char **after = record_keys(s, &n);
        for (long i = 0; i < n && !found; i++) {
            bool old = false;
            for (long j = 0; j < n0; j++)
                old |= strcmp(after[i], before[j]) == 0;
            if (!old)
                found = xstrdup(after[i]);
        }
        rs_free_keys(after, n);
        if (!found)
            rs_sleep_ms(5);
    }
    rs_free_keys(before, n0);
    if (!found)
        fail_msg("no shared-cache record appeared for the token of '%s'", sub);
    return found;
}

static char *get_value(rs_server *s, const char *key, size_t *len)
{
    char *v = rs_get(s, key, len);
    if (!v)
        fail_msg("GET %s: no value", key);
    return v;
}

/* The JSON body of a record "v1.<mac>.<json>" (a pointer into v), NULL if not that shape. */
static const char *record_body(const char *v)
{
    if (strncmp(v, "v1.", 3) != 0)
        return NULL;
    const char *dot = strchr(v + 3, '.');
    return dot ? dot + 1 : NULL;
}

static const cJSON *find_member(const cJSON *j, const char *name)
{
    if (!j)
        return NULL;
    for (const cJSON *c = j->child; c; c = c->next) {
        if (c->string && strcmp(c->string, name) == 0)
            return c;
        const cJSON *d = find_member(c, name);
        if (d)
            return d;
    }
    return NULL;
}

static bool json_has_string_value(const cJSON *j, const char *value)
{
    if (!j)
        return false;
    if (cJSON_IsString(j) && strcmp(j->valuestring, value) == 0)
        return true;
    for (const cJSON *c = j->child; c; c = c->next)
        if (json_has_string_value(c, value))
            return true;
    return false;
}

static bool wait_gone(rs_server *s, const char *key)
{
    return WAIT_UNTIL(rs_exists(s, key) == 0, 3000);
}

static void sha256_fp(const char *s, char out[17])
{
    unsigned char d[32];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static bool contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0 || nlen > hlen)
        return false;
    for (size_t i = 0; i + nlen <= hlen; i++)
        if (memcmp(hay + i, needle, nlen) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------ fixtures */

static int group_setup(void **state)
{
    (void)state;
    g_main_thread = pthread_self();
    pthread_mutex_init(&g_rec.mu, NULL);
    /* A library writing to a closed socket must not kill its host with SIGPIPE: count
     * instead of dying, and check the count (test_no_sigpipe). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);

    g_key = mint_key_hmac(SECRET, strlen(SECRET));
    g_other_key = mint_key_hmac("a-wrong-signing-secret-0123456789abcdefghij", 43);
    mint_key *rsa = mint_key_generate("rsa2048");
    char *pem = mint_key_public_pem(rsa);
    g_rsa_keys = iam_keyset_new();
    iam_status st = iam_keyset_add_pem(g_rsa_keys, pem, strlen(pem), "unrelated-rsa", NULL);
    free(pem);
    mint_key_free(rsa);
    if (st != IAM_OK)
        return -1;
    g_rs = rs_start(NULL);
    return g_rs ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rs_free(g_rs);
    iam_keyset_release(g_rsa_keys);
    mint_key_free(g_key);
    mint_key_free(g_other_key);
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    rec_reset(&g_rec);
    if (!rs_running(g_rs) && rs_restart(g_rs) != 0)
        return -1;
    if (rs_select(g_rs, 0) != 0 || rs_flushall(g_rs) != 0) {
        /* the shared server died (a previous test's fault): start it again */
        if (rs_restart(g_rs) != 0 || rs_select(g_rs, 0) != 0 || rs_flushall(g_rs) != 0)
            return -1;
    }
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    /* Private servers first (a paused one is continued and stopped), so that freeing a
     * client never waits on a hung server; then clients; then the servers' directories. */
    for (int i = 0; i < MAX_TRACKED; i++)
        if (g_servers[i])
            rs_stop(g_servers[i]);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (g_clients[i]) {
            iam_client_free(g_clients[i]);
            g_clients[i] = NULL;
        }
    for (int i = 0; i < MAX_TRACKED; i++)
        if (g_servers[i]) {
            rs_free(g_servers[i]);
            g_servers[i] = NULL;
        }
    if (rs_running(g_rs))
        rs_select(g_rs, 0);
    return 0;
}

/* ================================================================ configuration */

static void expect_config(const iam_client_options *o, const char *must_mention,
                          const char *must_not_echo)
{
    iam_client *c = (iam_client *)0x1;
    iam_error e = {0};
    long long t0 = rs_mono_ms();
    iam_status st = iam_client_new(o, &c, &e);
    if (rs_mono_ms() - t0 > BOUND_MS)
        fail_msg("iam_client_new took too long");
    if (st == IAM_OK)
        track(c);
    if (st != IAM_E_CONFIG)
        fail_msg("redis_url '%s': got %s, expected config", o->redis_url ? o->redis_url : "(null)",
                 iam_status_name(st));
    assert_null(c);
    assert_true(strlen(e.message) > 10);
    if (must_mention && !strstr(e.message, must_mention))
        fail_msg("message '%s' does not mention '%s'", e.message, must_mention);
    if (must_not_echo)
        assert_null(strstr(e.message, must_not_echo));
    assert_null(strstr(e.message, SECRET));
    assert_null(strstr(e.message, CACHE_SECRET));
}

/* rediss:// is refused at creation (Debian's hiredis 0.14 has no TLS), saying why. */
static void test_rediss_refused(void **state)
{
    (void)state;
    char *urls[] = {xprintf("rediss://127.0.0.1:%d", rs_port(g_rs)),
                    xstrdup("rediss://:Zq9SecretPw@redis.example.org:6380/2")};
    for (size_t i = 0; i < 2; i++) {
        iam_client_options o;
        redis_opts(&o, urls[i]);
        iam_client *c = (iam_client *)0x1;
        iam_error e = {0};
        iam_status st = iam_client_new(&o, &c, &e);
        if (st == IAM_OK)
            track(c);
        assert_status(st, IAM_E_CONFIG);
        assert_null(c);
        if (!strstr(e.message, "TLS") && !strstr(e.message, "tls") && !strstr(e.message, "hiredis"))
            fail_msg("message does not mention TLS/hiredis: %s", e.message);
        assert_null(strstr(e.message, "Zq9SecretPw"));
        free(urls[i]);
    }
}

static void test_redis_url_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "redis://",
        "redis://127.0.0.1:65536",
        "redis://127.0.0.1:12ab",
        "redis://127.0.0.1:6379/abc",
        "redis://127.0.0.1:6379/-1",
        "redis://a b:6379",
        "redis:/127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "unix://",
        "unix:///tmp/x.sock?db=abc",
        "redis://:Zq9Secret%zzPw@127.0.0.1:6379", /* bad percent-encoding */
        "redis://:Zq9SecretPw@127.0.0.1:99999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iam_client_options o;
        redis_opts(&o, bad[i]);
        expect_config(&o, "redis_url", "Zq9Secret");
    }
}

/* redis_url needs a cache secret: cache_secret (>= 32 bytes) or one derived from jwt_secret. */
static void test_cache_secret_rules(void **state)
{
    (void)state;
    iam_client_options o;
    keyless_opts(&o, rs_url(g_rs));
    o.cache_secret = NULL;
    expect_config(&o, NULL, NULL);
    o.cache_secret = "short-cache-secret";
    expect_config(&o, NULL, "short-cache-secret");
    o.cache_secret = CACHE_SECRET;
    client_free(client_new(&o));
    redis_opts(&o, rs_url(g_rs));
    o.cache_secret = NULL; /* derived from jwt_secret */
    client_free(client_new(&o));
}

static void test_redis_option_ranges(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.redis_timeout_ms = -1;
    expect_config(&o, NULL, NULL);
    o.redis_timeout_ms = IAM_MAX_REDIS_TIMEOUT_MS + 1;
    expect_config(&o, NULL, NULL);
    redis_opts(&o, rs_url(g_rs));
    o.redis_stale_s = -1;
    expect_config(&o, NULL, NULL);
    o.redis_stale_s = IAM_MAX_REDIS_STALE_S + 1;
    expect_config(&o, NULL, NULL);
    o.redis_stale_s = IAM_MAX_REDIS_STALE_S;
    o.redis_timeout_ms = IAM_MAX_REDIS_TIMEOUT_MS;
    client_free(client_new(&o));
    redis_opts(&o, rs_url(g_rs));
    o.redis_direct_max = -2;
    expect_config(&o, NULL, NULL);
    o.redis_direct_max = IAM_MAX_REDIS_DIRECT + 1;
    expect_config(&o, NULL, NULL);
    o.redis_direct_max = IAM_MAX_REDIS_DIRECT;
    client_free(client_new(&o));
    /* from the environment: -1 (off) or 1..max; 0 would read as "none", so it is refused */
    static const char *const bad[] = {"0", "65", "-2", "abc", "4x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iam_client_options_init(&o);
        setenv("IAM_REDIS_DIRECT_MAX", bad[i], 1);
        iam_error e = {0};
        iam_status st = iam_client_options_from_env(&o, &e);
        if (bad[i][0] ? st != IAM_E_CONFIG || !strstr(e.message, "IAM_REDIS_DIRECT_MAX") : st != IAM_OK)
            fail_msg("IAM_REDIS_DIRECT_MAX=\"%s\": %s (%s)", bad[i], iam_status_name(st), e.message);
    }
    static const struct { const char *v; int64_t want; } good[] = {{"-1", -1}, {"1", 1}, {"64", 64}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        iam_client_options_init(&o);
        setenv("IAM_REDIS_DIRECT_MAX", good[i].v, 1);
        assert_int_equal(iam_client_options_from_env(&o, NULL), IAM_OK);
        assert_int_equal(o.redis_direct_max, good[i].want);
    }
    unsetenv("IAM_REDIS_DIRECT_MAX");
}

/* ================================================================ shared cache */

/* A writes a record (TTL <= exp, prefix, hex key, v1.<hex mac>.<json>); B, holding no key
 * for the token, is answered from it. */
static void test_record_round_trip(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);

    int64_t exp = now_s() + 120; /* shorter than cache_ttl_s (300): exp binds */
    char jti[37];
    char *tok = token_exp("rt-user", jti, exp);
    char *key = resolve_and_record(g_rs, a, tok, "rt-user");
    assert_int_equal(record_count(g_rs), 1);
    assert_int_equal(strncmp(key, RECORD_PREFIX, strlen(RECORD_PREFIX)), 0);
    const char *h = key + strlen(RECORD_PREFIX);
    assert_true(strlen(h) >= 32);
    assert_true(is_hex(h, strlen(h)));

    long long pttl = rs_pttl(g_rs, key);
    long long left = exp * 1000 - real_ms();
    if (!(pttl > 0 && pttl <= left + 20))
        fail_msg("PTTL %lld ms, token expires in %lld ms", pttl, left);
    assert_true(pttl <= 300 * 1000);

    size_t len;
    char *v = get_value(g_rs, key, &len);
    const char *body = record_body(v);
    if (!body)
        fail_msg("record value is not v1.<mac>.<json>: %.60s", v);
    size_t maclen = (size_t)(body - 1 - (v + 3));
    assert_true(maclen >= 32);
    assert_true(is_hex(v + 3, maclen));
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    assert_true(cJSON_IsObject(j));
    assert_true(json_has_string_value(j, "rt-user"));
    cJSON_Delete(j);

    /* B cannot verify the token; the record answers it */
    iam_client_stats s0 = stats(b);
    iam_user *u = NULL;
    assert_status(iam_client_resolve(b, tok, strlen(tok), NULL, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "rt-user");
    assert_string_equal(iam_user_org_id(u), "7");
    assert_string_equal(iam_user_email(u), "user@example.org");
    assert_true(iam_user_has_role(u, "scientist"));
    assert_true(iam_user_has_permission(u, "workflow.execute"));
    assert_false(iam_user_has_permission(u, "admin"));
    assert_int_equal(iam_user_expires_at(u), exp);
    assert_string_equal(iam_user_jti(u), jti);
    iam_user_release(u);
    iam_client_stats s1 = stats(b);
    assert_int_equal(s1.redis_hits - s0.redis_hits, 1);
    /* then from B's own cache */
    assert_status(resolve(b, tok, "rt-user"), IAM_OK);
    assert_int_equal(stats(b).redis_hits, s1.redis_hits);
    assert_int_equal(stats(a).redis_writes, 1);
    free(v);
    free(key);
    free(tok);
}

static void test_record_ttl_bounded_by_cache_ttl(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.cache_ttl_s = 2;
    iam_client *a = ready_client(&o);
    char *tok = token_exp("ttl-user", NULL, now_s() + 3600);
    char *key = resolve_and_record(g_rs, a, tok, "ttl-user");
    long long pttl = rs_pttl(g_rs, key);
    if (!(pttl > 0 && pttl <= 2000 + 20))
        fail_msg("PTTL %lld ms with cache_ttl_s 2", pttl);
    free(key);
    free(tok);
}

/* Without a record, B cannot answer; a client with another cache_secret never reads A's. */
static void test_no_record_unknown_key(void **state)
{
    (void)state;
    iam_client_options o;
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char *t1 = token("nr-user", NULL);
    assert_status(resolve(b, t1, NULL), IAM_E_UNKNOWN_KEY);
    iam_client_stats s = stats(b);
    assert_true(s.redis_misses >= 1);
    assert_int_equal(s.redis_hits, 0);
    assert_int_equal(record_count(g_rs), 0);

    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    char *key = resolve_and_record(g_rs, a, t1, "nr-user");
    keyless_opts(&o, rs_url(g_rs));
    o.cache_secret = OTHER_CACHE_SECRET;
    iam_client *other = ready_client(&o);
    assert_status(resolve(other, t1, NULL), IAM_E_UNKNOWN_KEY);
    s = stats(other);
    assert_int_equal(s.redis_hits, 0);
    assert_int_equal(s.redis_bad_records, 0); /* another key, not a bad record */
    assert_int_equal(rs_exists(g_rs, key), 1);
    /* and the right secret does read it */
    assert_status(resolve(b, t1, "nr-user"), IAM_OK);
    free(key);
    free(t1);
}

/* Scans every key and value of every db for the tokens' bytes. */
static void scan_for_tokens(rs_server *s, char **toks, int ntok)
{
    for (int db = 0; db < 16; db++) {
        assert_int_equal(rs_select(s, db), 0);
        long n;
        char **keys = rs_keys(s, "*", &n);
        assert_true(n >= 0);
        for (long i = 0; i < n; i++) {
            /* every string the key holds, whatever its type */
            redisReply *t = rs_command(s, "TYPE %s", keys[i]);
            assert_non_null(t);
            char type[16];
            snprintf(type, sizeof type, "%s", t->str ? t->str : "");
            freeReplyObject(t);
            redisReply *r = NULL;
            if (strcmp(type, "string") == 0)
                r = rs_command(s, "GET %s", keys[i]);
            else if (strcmp(type, "hash") == 0)
                r = rs_command(s, "HGETALL %s", keys[i]);
            else if (strcmp(type, "set") == 0)
                r = rs_command(s, "SMEMBERS %s", keys[i]);
            else if (strcmp(type, "list") == 0)
                r = rs_command(s, "LRANGE %s 0 -1", keys[i]);
            else if (strcmp(type, "zset") == 0)
                r = rs_command(s, "ZRANGE %s 0 -1", keys[i]);
            else if (strcmp(type, "none") != 0)
                fail_msg("key %s has type %s", keys[i], type);
            const char *vals[4096];
            size_t lens[4096];
            size_t nv = 0;
            if (r && r->type == REDIS_REPLY_STRING) {
                vals[nv] = r->str;
                lens[nv++] = r->len;
            } else if (r && r->type == REDIS_REPLY_ARRAY) {
                for (size_t k = 0; k < r->elements && nv < 4095; k++)
                    if (r->element[k]->type == REDIS_REPLY_STRING) {
                        vals[nv] = r->element[k]->str;
                        lens[nv++] = r->element[k]->len;
                    }
            }
            vals[nv] = keys[i];
            lens[nv++] = strlen(keys[i]);
            for (int t2 = 0; t2 < ntok; t2++) {
                const char *tk = toks[t2];
                const char *d1 = strchr(tk, '.'), *d2 = strrchr(tk, '.');
                const char *needles[3] = {tk, d1 + 1, d2 + 1};
                size_t nlens[3] = {strlen(tk), (size_t)(d2 - d1 - 1), strlen(d2 + 1)};
                for (size_t k = 0; k < nv; k++)
                    for (int q = 0; q < 3; q++)
                        if (contains(vals[k], lens[k], needles[q], nlens[q]))
                            fail_msg("db %d key %s holds token bytes (%s)", db, keys[i],
                                     q == 0 ? "whole token" : q == 1 ? "payload" : "signature");
            }
            if (r)
                freeReplyObject(r);
        }
        rs_free_keys(keys, n);
    }
    assert_int_equal(rs_select(s, 0), 0);
}

static void check_message_clean(const char *m, size_t len, char **toks, int ntok)
{
    for (int t = 0; t < ntok; t++) {
        const char *tk = toks[t];
        const char *d1 = strchr(tk, '.'), *d2 = strrchr(tk, '.');
        assert_false(contains(m, len, tk, strlen(tk)));
        assert_false(contains(m, len, d1 + 1, (size_t)(d2 - d1 - 1)));
        assert_false(contains(m, len, d2 + 1, strlen(d2 + 1)));
    }
}

/* No key, value or published message holds a token, its payload or its signature. */
static void test_no_token_bytes_in_redis(void **state)
{
    (void)state;
    rs_subscriber *sub = rs_subscribe(g_rs, IAM_REDIS_CHANNEL);
    assert_non_null(sub);
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char jti0[37], jti1[37];
    char *toks[3];
    toks[0] = token("nt-user-0", jti0);
    toks[1] = token("nt-user-1", jti1);
    char *c2 = claims("nt-user-2", NULL, now_s() + 600, NULL,
                      "\"org_id\":\"7\",\"team_id\":42,\"idp_org_id\":5");
    toks[2] = sign(c2, g_key);
    free(c2);
    for (int i = 0; i < 3; i++) {
        char sub_name[16];
        snprintf(sub_name, sizeof sub_name, "nt-user-%d", i);
        free(resolve_and_record(g_rs, a, toks[i], sub_name));
        assert_status(resolve(b, toks[i], sub_name), IAM_OK); /* read back too */
    }
    assert_true(record_count(g_rs) >= 3);
    scan_for_tokens(g_rs, toks, 3);
    /* invalidate_token publishes by jti, never the token */
    iam_client_invalidate_token(a, toks[0], strlen(toks[0]));
    size_t len;
    char *m = rs_next_message(sub, WAIT_MS, &len);
    if (!m)
        fail_msg("invalidate_token published nothing");
    check_message_clean(m, len, toks, 3);
    if (!strstr(m, jti0))
        fail_msg("invalidate_token's message does not name the jti: %s", m);
    free(m);
    assert_status(revoke_token(a, toks[1]), IAM_OK);
    m = rs_next_message(sub, WAIT_MS, &len);
    assert_non_null(m);
    check_message_clean(m, len, toks, 3);
    free(m);
    iam_client_invalidate_user(a, "nt-user-2");
    m = rs_next_message(sub, WAIT_MS, &len);
    assert_non_null(m);
    check_message_clean(m, len, toks, 3);
    free(m);
    scan_for_tokens(g_rs, toks, 3); /* and after the invalidations (blacklist key, …) */
    for (int i = 0; i < 3; i++)
        free(toks[i]);
    rs_subscriber_free(sub);
}

/* org_id, team_id, idp_org_id are strings in the record (integers in the token). */
static void test_identifiers_are_strings_in_record(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    char jti[37];
    new_jti(jti);
    char *c = claims("id-user", jti, now_s() + 600, NULL,
                     "\"org_id\":7,\"team_id\":42,\"idp_org_id\":1234567");
    char *tok = sign(c, g_key);
    free(c);
    char *key = resolve_and_record(g_rs, a, tok, "id-user");
    size_t len;
    char *v = get_value(g_rs, key, &len);
    const char *body = record_body(v);
    assert_non_null(body);
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    static const char *const names[] = {"org_id", "team_id", "idp_org_id"};
    static const char *const want[] = {"7", "42", "1234567"};
    for (int i = 0; i < 3; i++) {
        const cJSON *m = find_member(j, names[i]);
        if (!m)
            fail_msg("record has no %s: %s", names[i], body);
        if (!cJSON_IsString(m))
            fail_msg("record's %s is not a string: %s", names[i], body);
        assert_string_equal(m->valuestring, want[i]);
    }
    cJSON_Delete(j);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    iam_user *u = NULL;
    assert_status(iam_client_resolve(b, tok, strlen(tok), NULL, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_org_id(u), "7");
    assert_string_equal(iam_user_team_id(u), "42");
    assert_string_equal(iam_user_idp_org_id(u), "1234567");
    iam_user_release(u);
    free(v);
    free(key);
    free(tok);
}

/* Puts value under key (a tampered record), has b resolve tok: a miss (UNKNOWN_KEY), counted
 * once, the key deleted. */
static void expect_bad_record(iam_client *b, const char *key, const char *val, size_t len,
                              const char *tok, const char *what)
{
    redisReply *r = rs_command(g_rs, "SET %s %b PX 60000", key, val, len);
    bool set_ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    if (!set_ok)
        fail_msg("SET failed");
    uint64_t bad0 = stats(b).redis_bad_records;
    iam_status st = resolve(b, tok, NULL);
    if (st != IAM_E_UNKNOWN_KEY)
        fail_msg("%s: got %s, expected unknown_key (a miss)", what, iam_status_name(st));
    uint64_t bad = stats(b).redis_bad_records - bad0;
    if (bad != 1)
        fail_msg("%s: redis_bad_records grew by %llu, expected 1", what, (unsigned long long)bad);
    if (!wait_gone(g_rs, key))
        fail_msg("%s: the bad record was not deleted", what);
}

static void test_tamper_flipped_bytes(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char *tok = token("alice-ft", NULL);
    char *key = resolve_and_record(g_rs, a, tok, "alice-ft");
    size_t len;
    char *v = get_value(g_rs, key, &len);
    const char *body = record_body(v);
    assert_non_null(body);
    size_t boff = (size_t)(body - v);
    char *m = malloc(len + 2);
    assert_non_null(m);

    /* a hex digit of the MAC */
    memcpy(m, v, len + 1);
    m[4] = m[4] == '0' ? '1' : '0';
    expect_bad_record(b, key, m, len, tok, "flipped MAC digit");
    /* the last MAC digit */
    memcpy(m, v, len + 1);
    m[boff - 2] = m[boff - 2] == 'a' ? 'b' : 'a';
    expect_bad_record(b, key, m, len, tok, "flipped last MAC digit");
    /* the user id in the body: another identity, still valid JSON */
    memcpy(m, v, len + 1);
    char *p = strstr(m + boff, "alice-ft");
    if (!p)
        fail_msg("the record body does not hold the user id");
    p[7] = 'u'; /* alice-fu */
    expect_bad_record(b, key, m, len, tok, "user id changed in the body");
    /* a byte in the middle of the body */
    memcpy(m, v, len + 1);
    m[boff + (len - boff) / 2] ^= 0x01;
    expect_bad_record(b, key, m, len, tok, "flipped body byte");
    /* the version */
    memcpy(m, v, len + 1);
    m[1] = '2';
    expect_bad_record(b, key, m, len, tok, "version v2");
    /* truncated, extended, MAC one digit short */
    expect_bad_record(b, key, v, len - 10, tok, "truncated");
    memcpy(m, v, len);
    m[len] = ' ';
    expect_bad_record(b, key, m, len + 1, tok, "trailing byte");
    memcpy(m, v, 3);
    memcpy(m + 3, v + 4, len - 4);
    expect_bad_record(b, key, m, len - 1, tok, "MAC one digit short");
    /* control: the untouched value is a hit */
    assert_int_equal(rs_set(g_rs, key, v, len, false), 0);
    assert_status(resolve(b, tok, "alice-ft"), IAM_OK);
    assert_int_equal(stats(b).redis_hits, 1);
    free(m);
    free(v);
    free(key);
    free(tok);
}

/* Two users' records swapped: neither is accepted (least of all as the other user). */
static void test_tamper_swapped_records(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char *t1 = token("alice-sw", NULL), *t2 = token("bob-sw", NULL);
    char *k1 = resolve_and_record(g_rs, a, t1, "alice-sw");
    char *k2 = resolve_and_record(g_rs, a, t2, "bob-sw");
    size_t l1, l2;
    char *v1 = get_value(g_rs, k1, &l1), *v2 = get_value(g_rs, k2, &l2);
    assert_int_equal(rs_set(g_rs, k1, v2, l2, true), 0);
    assert_int_equal(rs_set(g_rs, k2, v1, l1, true), 0);
    assert_status(resolve(b, t1, "alice-sw"), IAM_E_UNKNOWN_KEY);
    assert_status(resolve(b, t2, "bob-sw"), IAM_E_UNKNOWN_KEY);
    assert_int_equal(stats(b).redis_bad_records, 2);
    assert_int_equal(stats(b).redis_hits, 0);
    assert_true(wait_gone(g_rs, k1));
    assert_true(wait_gone(g_rs, k2));
    free(v1);
    free(v2);
    free(k1);
    free(k2);
    free(t1);
    free(t2);
}

/* One user's record replayed under another token's key. */
static void test_tamper_replayed_record(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char *t1 = token("alice-rp", NULL), *t2 = token("mallory-rp", NULL);
    char *k1 = resolve_and_record(g_rs, a, t1, "alice-rp");
    char *k2 = resolve_and_record(g_rs, a, t2, "mallory-rp");
    size_t l1;
    char *v1 = get_value(g_rs, k1, &l1);
    assert_int_equal(rs_set(g_rs, k2, v1, l1, true), 0);
    assert_status(resolve(b, t2, "mallory-rp"), IAM_E_UNKNOWN_KEY);
    assert_int_equal(stats(b).redis_bad_records, 1);
    assert_true(wait_gone(g_rs, k2));
    /* the original is intact and still answers its own token */
    assert_status(resolve(b, t1, "alice-rp"), IAM_OK);
    assert_int_equal(stats(b).redis_hits, 1);
    free(v1);
    free(k1);
    free(k2);
    free(t1);
    free(t2);
}

/* Records are per validation context: another audience or tenant is never answered from a
 * record of the default context, and such a record moved under its key is bad. */
static void test_record_other_context(void **state)
{
    (void)state;
    char *c = claims("ctx-user", NULL, now_s() + 600, "[\"omnibioai-platform\",\"lab-aud\"]", NULL);
    char *tok = sign(c, g_key);
    free(c);
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    redis_opts(&o, rs_url(g_rs));
    o.audience = "lab-aud";
    iam_client *alab = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    o.audience = "lab-aud";
    iam_client *blab = ready_client(&o);

    char *ka = resolve_and_record(g_rs, a, tok, "ctx-user");
    /* the other audience's client has no record of its own yet: not answered from A's */
    assert_status(resolve(blab, tok, NULL), IAM_E_UNKNOWN_KEY);
    iam_resolve_options lab = {.audience = "lab-aud"};
    assert_status(resolve_ro(b, tok, &lab, NULL), IAM_E_UNKNOWN_KEY);
    /* a tenant B does not belong to */
    iam_resolve_options org8 = {.required_org = "8"};
    assert_not_ok(resolve_ro(b, tok, &org8, NULL));
    assert_int_equal(stats(blab).redis_hits, 0);

    char *kb = resolve_and_record(g_rs, alab, tok, "ctx-user");
    assert_string_not_equal(ka, kb);
    /* A's record moved under the lab context's key */
    size_t la;
    char *va = get_value(g_rs, ka, &la);
    expect_bad_record(blab, kb, va, la, tok, "record of another context");
    /* control: the default context still reads its own */
    assert_status(resolve(b, tok, "ctx-user"), IAM_OK);
    free(va);
    free(ka);
    free(kb);
    free(tok);
}

static void test_garbage_records(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char *tok = token("garbage-user", NULL);
    char *key = resolve_and_record(g_rs, a, tok, "garbage-user");
    char zeros[65];
    memset(zeros, '0', 64);
    zeros[64] = '\0';
    char *g1 = xprintf("v1.%s.{}", zeros);
    char *g2 = xprintf("v1.%s.{\"sub\":\"garbage-user\"", zeros);
    char *g3 = xprintf("v1.%s.[]", zeros);
    const char *garbage[] = {"", "garbage", "v1.", "v1..", "v1.zz.{}", g1, g2, g3, "\xff\xfe\x00\x01"};
    size_t glen[] = {0, 7, 3, 4, 8, strlen(g1), strlen(g2), strlen(g3), 4};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "garbage #%zu", i);
        expect_bad_record(b, key, garbage[i], glen[i], tok, what);
    }
    /* larger than IAM_MAX_RECORD_BYTES */
    size_t big = IAM_MAX_RECORD_BYTES + 4096;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, 'x', big);
    memcpy(huge, "v1.", 3);
    expect_bad_record(b, key, huge, big, tok, "oversized record");
    free(huge);
    free(g1);
    free(g2);
    free(g3);
    free(key);
    free(tok);
}

/* A value of another type under a record key (a list): garbage like any other — a miss,
 * counted, deleted — not a lasting failure of every lookup of that token. */
static void test_wrong_type_record(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char *tok = token("wrongtype-user", NULL);
    char *key = resolve_and_record(g_rs, a, tok, "wrongtype-user");
    assert_int_equal(rs_del(g_rs, key), 0);
    redisReply *r = rs_command(g_rs, "RPUSH %s x", key);
    assert_non_null(r);
    freeReplyObject(r);
    iam_status st1 = resolve(b, tok, NULL);
    iam_status st2 = resolve(b, tok, NULL);
    iam_client_stats s = stats(b);
    bool gone = wait_gone(g_rs, key);
    free(key);
    free(tok);
    assert_int_equal(s.redis_hits, 0);
    assert_not_ok(st1);
    assert_not_ok(st2);
    if (st1 != IAM_E_UNKNOWN_KEY || s.redis_bad_records < 1 || !gone)
        fail_msg("a list under a record key: answered %s then %s, redis_bad_records %llu, "
                 "redis_errors %llu, key %s",
                 iam_status_name(st1), iam_status_name(st2),
                 (unsigned long long)s.redis_bad_records, (unsigned long long)s.redis_errors,
                 gone ? "deleted" : "left in place");
}

static void test_local_only_with_redis_refused(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.mode = IAM_MODE_LOCAL_ONLY;
    expect_config(&o, NULL, NULL);
}

/* A record outliving its token (TTL removed) is not served after exp. */
static void test_record_of_expired_token(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    int64_t exp = now_s() + 2;
    char *tok = token_exp("exp-user", NULL, exp);
    char *key = resolve_and_record(g_rs, a, tok, "exp-user");
    redisReply *r = rs_command(g_rs, "PERSIST %s", key);
    assert_non_null(r);
    freeReplyObject(r);
    assert_true(WAIT_UNTIL(now_s() >= exp + 1, 5000));
    assert_int_equal(rs_exists(g_rs, key), 1);
    assert_not_ok(resolve(b, tok, NULL));
    assert_not_ok(cached(b, tok, NULL));
    assert_status(resolve(a, tok, NULL), IAM_E_EXPIRED);
    free(key);
    free(tok);
}

/* A record is not trusted for a token whose jti is blacklisted. */
static void test_record_not_trusted_when_revoked(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    char jti[37];
    char *tok = token("rr-user", jti);
    char *key = resolve_and_record(g_rs, a, tok, "rr-user");
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    assert_int_equal(rs_set(g_rs, bl, "1", 1, false), 0);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    assert_not_ok(cached(b, tok, NULL));
    assert_status(resolve(b, tok, NULL), IAM_E_REVOKED);
    assert_true(stats(b).redis_revoked >= 1);
    assert_int_equal(stats(b).redis_hits, 0);
    free(bl);
    free(key);
    free(tok);
}

/* The invalidation calls delete the shared records concerned (documented): a user's (all of
 * them, through the user's index), a token's; another user's stay. */
static void test_invalidation_deletes_shared_records(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char *u1 = token("del-u", NULL), *u2 = token("del-u", NULL), *v1 = token("del-v", NULL);
    char *k1 = resolve_and_record(g_rs, a, u1, "del-u");
    char *k2 = resolve_and_record(g_rs, a, u2, "del-u");
    char *kv = resolve_and_record(g_rs, a, v1, "del-v");
    iam_client_invalidate_user(a, "del-u");
    if (!wait_gone(g_rs, k1) || !wait_gone(g_rs, k2))
        fail_msg("invalidate_user left the user's shared records");
    assert_int_equal(rs_exists(g_rs, kv), 1);
    assert_status(resolve(b, u1, NULL), IAM_E_UNKNOWN_KEY);
    assert_status(resolve(b, u2, NULL), IAM_E_UNKNOWN_KEY);
    iam_client_invalidate_token(a, v1, strlen(v1));
    if (!wait_gone(g_rs, kv))
        fail_msg("invalidate_token left the token's shared record");
    assert_status(resolve(b, v1, NULL), IAM_E_UNKNOWN_KEY);
    free(k1);
    free(k2);
    free(kv);
    free(u1);
    free(u2);
    free(v1);
}

/* iam_client_cached reads the shared record (never verifying); NOT_CACHED without one. */
static void test_cached_reads_shared_record(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    redis_opts(&o, rs_url(g_rs));
    iam_client *a2 = ready_client(&o);
    char *t1 = token("cr-user", NULL), *t2 = token("cr-other", NULL);
    free(resolve_and_record(g_rs, a, t1, "cr-user"));
    assert_status(cached(b, t1, "cr-user"), IAM_OK);
    assert_status(cached(b, t2, NULL), IAM_E_NOT_CACHED);
    /* a client holding the key does not verify either */
    assert_status(cached(a2, t1, "cr-user"), IAM_OK);
    assert_status(cached(a2, t2, NULL), IAM_E_NOT_CACHED);
    assert_int_equal(stats(a2).verifications, 0);
    free(t1);
    free(t2);
}

/* iam_client_cached honours this process's own revocation marks: a jti revoked here while
 * Redis could not take the blacklist key is not answered from the shared record.
 * (Adversarial review: it answered the record.) */
static void test_cached_honours_local_revocation(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char jti[37];
    char *t = token("crv-user", jti);
    free(resolve_and_record(g_rs, a, t, "crv-user"));
    assert_status(cached(b, t, "crv-user"), IAM_OK);
    iam_client_revoke_jti(b, jti);
    char key[64];
    snprintf(key, sizeof key, "blacklist:jti:%s", jti);
    for (int i = 0; i < 100 && rs_exists(g_rs, key) != 1; i++) /* its own write lands… */
        rs_sleep_ms(20);
    rs_del(g_rs, key); /* …and is lost, as in an outage */
    assert_status(cached(b, t, NULL), IAM_E_REVOKED);
    free(t);
}

/* Refusals are never written to the shared cache. */
static void test_refusals_not_written(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    char *c = claims("bad-user", NULL, now_s() + 600, NULL, NULL);
    char *forged = sign(c, g_other_key);
    free(c);
    char *expired = token_exp("bad-user", NULL, now_s() - 10);
    c = claims("bad-user", NULL, now_s() + 600, "\"elsewhere\"", NULL);
    char *wrong_aud = sign(c, g_key);
    free(c);
    assert_status(resolve(a, forged, NULL), IAM_E_BAD_SIGNATURE);
    assert_status(resolve(a, expired, NULL), IAM_E_EXPIRED);
    assert_status(resolve(a, wrong_aud, NULL), IAM_E_WRONG_AUDIENCE);
    rs_sleep_ms(100);
    assert_int_equal(record_count(g_rs), 0);
    assert_int_equal(stats(a).redis_writes, 0);
    free(forged);
    free(expired);
    free(wrong_aud);
}

/* ================================================================ revocation */

static void test_revoked_before_resolution(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.negative_ttl_s = -1; /* "stays refused" must not be the refusal memory */
    iam_client *a = ready_client(&o);
    char jti[37];
    char *tok = token("rb-user", jti);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    assert_int_equal(rs_set(g_rs, bl, "1", 1, false), 0);
    assert_status(resolve(a, tok, NULL), IAM_E_REVOKED);
    assert_int_equal(stats(a).redis_revoked, 1);
    rs_sleep_ms(50);
    assert_int_equal(record_count(g_rs), 0);
    /* after a revocation the token stays refused, even once the key is gone (nothing but
     * the resolution above has told this client) */
    assert_int_equal(rs_del(g_rs, bl), 0);
    assert_status(resolve(a, tok, NULL), IAM_E_REVOKED);
    assert_not_ok(cached(a, tok, NULL));
    /* another token of the same user, not revoked, is fine */
    char *other = token("rb-user", NULL);
    assert_status(resolve(a, other, "rb-user"), IAM_OK);
    free(other);
    free(bl);
    free(tok);
}

/* Many threads resolve distinct fresh tokens carrying one jti while the main thread writes
 * its blacklist key: every resolution started after the write returned is refused. */
#define INFLIGHT_N 3000
#define INFLIGHT_THREADS 6
/* Resolutions past this many wait for the write: on a fast machine the workers could
 * otherwise finish every token before the main thread (one of eight threads on two cores)
 * got to write the key, and the test exercised one side of the race only. */
#define INFLIGHT_GATE 200
typedef struct inflight {
    iam_client *c;
    char **toks;
    atomic_int next, done, written, stop, done_after;
    iam_status st[INFLIGHT_N];
    bool after[INFLIGHT_N], resolved[INFLIGHT_N];
    long long max_ms;
    pthread_mutex_t mu;
} inflight;

static void *inflight_thread(void *arg)
{
    inflight *f = arg;
    while (!atomic_load(&f->stop)) {
        int i = atomic_fetch_add(&f->next, 1);
        if (i >= INFLIGHT_N)
            break;
        while (i >= INFLIGHT_GATE && !atomic_load(&f->written) && !atomic_load(&f->stop)) {
            struct timespec pause = {0, 100 * 1000};
            nanosleep(&pause, NULL);
        }
        bool after = atomic_load(&f->written) != 0;
        long long took;
        f->st[i] = resolve_quiet(f->c, f->toks[i], &took);
        f->after[i] = after;
        f->resolved[i] = true;
        pthread_mutex_lock(&f->mu);
        if (took > f->max_ms)
            f->max_ms = took;
        pthread_mutex_unlock(&f->mu);
        atomic_fetch_add(&f->done, 1);
        if (after)
            atomic_fetch_add(&f->done_after, 1);
    }
    return NULL;
}

static void test_revocation_appears_in_flight(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    static inflight f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.mu, NULL);
    f.c = a;
    char jti[37];
    new_jti(jti);
    f.toks = calloc(INFLIGHT_N, sizeof *f.toks);
    assert_non_null(f.toks);
    int64_t exp = now_s() + 600;
    for (int i = 0; i < INFLIGHT_N; i++) {
        char extra[96];
        snprintf(extra, sizeof extra, "\"org_id\":7,\"n\":%d", i);
        char *c = claims("inflight-user", jti, exp, NULL, extra);
        f.toks[i] = sign(c, g_key);
        free(c);
    }
    pthread_t th[INFLIGHT_THREADS];
    for (int i = 0; i < INFLIGHT_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, inflight_thread, &f), 0);
    long long deadline = rs_mono_ms() + 20000;
    while (atomic_load(&f.done) < 100 && rs_mono_ms() < deadline)
        rs_sleep_ms(1);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    int set_ok = rs_set(g_rs, bl, "1", 1, false);
    atomic_store(&f.written, 1);
    /* then as many again started after the write (the pool is far larger) */
    (void)WAIT_UNTIL(atomic_load(&f.done_after) >= 200 || atomic_load(&f.next) >= INFLIGHT_N, 20000);
    atomic_store(&f.stop, 1);
    for (int i = 0; i < INFLIGHT_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(set_ok, 0);

    int ok_before = 0, after = 0, violations = 0, others = 0, first_violation = -1;
    iam_status other_st = IAM_OK;
    for (int i = 0; i < INFLIGHT_N; i++) {
        if (!f.resolved[i])
            continue;
        if (f.st[i] != IAM_OK && f.st[i] != IAM_E_REVOKED) {
            others++;
            other_st = f.st[i];
        }
        if (f.after[i]) {
            after++;
            if (f.st[i] == IAM_OK && violations++ == 0)
                first_violation = i;
        } else if (f.st[i] == IAM_OK) {
            ok_before++;
        }
    }
    if (violations)
        fail_msg("%d of %d resolutions started after the blacklist write were accepted (first #%d)",
                 violations, after, first_violation);
    if (others)
        fail_msg("%d resolutions answered neither ok nor revoked (e.g. %s)", others,
                 iam_status_name(other_st));
    assert_true(ok_before >= 1); /* the race was exercised on both sides */
    assert_true(after >= 1);
    if (f.max_ms > BOUND_MS)
        fail_msg("a resolution took %lld ms", f.max_ms);
    /* afterwards: every token refused that was refused, and a fresh one too. (This caught a
     * race once blocking calls made their own round trips: a resolution whose EXISTS came
     * back 0 just before the key was written stored a positive cache entry, then answered
     * revoked because another resolution of the same jti had marked it meanwhile; the next
     * call hit the entry. Marks now veto the store and evict the jti's entries.) */
    for (int i = 0; i < INFLIGHT_N; i++)
        if (f.resolved[i] && f.st[i] == IAM_E_REVOKED)
            assert_status(resolve(a, f.toks[i], NULL), IAM_E_REVOKED);
    char *c = claims("inflight-user", jti, exp, NULL, "\"org_id\":7,\"n\":-1");
    char *fresh = sign(c, g_key);
    free(c);
    assert_status(resolve(a, fresh, NULL), IAM_E_REVOKED);
    free(fresh);
    free(bl);
    for (int i = 0; i < INFLIGHT_N; i++)
        free(f.toks[i]);
    free(f.toks);
    pthread_mutex_destroy(&f.mu);
}

/* The platform's logout while resolutions are in flight: every session's blacklist key is
 * written, then {"user_id": …, "token": <refresh>} published. Once the client has heard it
 * and the resolutions in progress have finished, none of the user's tokens is accepted. */
#define LOGOUT_N 200
#define LOGOUT_THREADS 4
typedef struct logout_run {
    iam_client *c;
    char **toks;
    atomic_int stop, park, parked, resolved, after_ok, after_calls;
    atomic_int phase_after; /* set once heard + quiesced */
} logout_run;

static void *logout_thread(void *arg)
{
    logout_run *r = arg;
    unsigned i = (unsigned)(uintptr_t)pthread_self() % LOGOUT_N;
    while (!atomic_load(&r->stop)) {
        if (atomic_load(&r->park)) {
            atomic_fetch_add(&r->parked, 1);
            while (atomic_load(&r->park) && !atomic_load(&r->stop))
                rs_sleep_ms(1);
            atomic_fetch_sub(&r->parked, 1);
            continue;
        }
        bool after = atomic_load(&r->phase_after) != 0;
        iam_status st = resolve_quiet(r->c, r->toks[i % LOGOUT_N], NULL);
        atomic_fetch_add(&r->resolved, 1);
        if (after) {
            atomic_fetch_add(&r->after_calls, 1);
            if (st == IAM_OK)
                atomic_fetch_add(&r->after_ok, 1);
        }
        i += 7;
    }
    return NULL;
}

static void test_platform_logout_in_flight(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a = ready_client(&o);
    static logout_run r;
    memset(&r, 0, sizeof r);
    r.c = a;
    r.toks = calloc(LOGOUT_N, sizeof *r.toks);
    char (*jtis)[37] = calloc(LOGOUT_N, 37);
    assert_non_null(r.toks);
    assert_non_null(jtis);
    for (int i = 0; i < LOGOUT_N; i++)
        r.toks[i] = token("logout-user", jtis[i]);
    pthread_t th[LOGOUT_THREADS];
    for (int i = 0; i < LOGOUT_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, logout_thread, &r), 0);
    assert_true(WAIT_UNTIL(atomic_load(&r.resolved) >= LOGOUT_N / 4, 20000));
    for (int i = 0; i < LOGOUT_N; i++) {
        char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jtis[i]);
        rs_set(g_rs, bl, "1", 1, false);
        free(bl);
    }
    char *refresh_c = xprintf("{\"sub\":\"logout-user\",\"type\":\"refresh\",\"exp\":%lld}",
                              (long long)now_s() + 86400);
    char *refresh = sign(refresh_c, g_key);
    char *msg = xprintf("{\"user_id\": \"logout-user\", \"token\": \"%s\"}", refresh);
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, msg, strlen(msg)) >= 1);
    bool heard = wait_user_message(&g_rec, "logout-user", NULL);
    /* quiesce: let every call in progress finish, then resume */
    atomic_store(&r.park, 1);
    bool parked = WAIT_UNTIL(atomic_load(&r.parked) == LOGOUT_THREADS, 10000);
    atomic_store(&r.phase_after, 1);
    atomic_store(&r.park, 0);
    long long until = rs_mono_ms() + 300;
    while (rs_mono_ms() < until && atomic_load(&r.after_calls) < 2 * LOGOUT_N)
        rs_sleep_ms(1);
    atomic_store(&r.stop, 1);
    for (int i = 0; i < LOGOUT_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_true(heard);
    assert_true(parked);
    assert_true(atomic_load(&r.after_calls) > 0);
    if (atomic_load(&r.after_ok))
        fail_msg("%d of %d resolutions after the logout was heard were accepted",
                 atomic_load(&r.after_ok), atomic_load(&r.after_calls));
    for (int i = 0; i < LOGOUT_N; i++)
        assert_status(resolve(a, r.toks[i], NULL), IAM_E_REVOKED);
    for (int i = 0; i < LOGOUT_N; i++)
        free(r.toks[i]);
    free(r.toks);
    free(jtis);
    free(msg);
    free(refresh);
    free(refresh_c);
}

/* A jti longer than IAM_MAX_KID_BYTES (256) is still a jti: checked like any other. A revoked
 * one is refused (also with revocation_fail_open), an unrevoked one accepted, and resolving
 * it does not disturb other resolutions. */
static char *long_jti_token(const char *sub, char out_jti[301])
{
    char base[37];
    new_jti(base);
    memset(out_jti, 'j', 300);
    memcpy(out_jti, base, 36);
    out_jti[300] = '\0';
    char *c = claims(sub, out_jti, now_s() + 600, NULL, NULL);
    char *t = sign(c, g_key);
    free(c);
    return t;
}

/* The verdicts, observed in a child process: a crash of the library there fails this test
 * instead of ending the whole suite. */
typedef struct long_jti_verdicts {
    int closed_revoked, open_revoked, closed_fine, ordinary;
    long long took;
} long_jti_verdicts;

static bool client_ready_quiet(iam_client *c)
{
    long long deadline = rs_mono_ms() + WAIT_MS;
    while (rs_mono_ms() < deadline) {
        iam_client_stats s = stats(c);
        if (s.redis_connected && s.redis_subscribed)
            return true;
        rs_sleep_ms(5);
    }
    return false;
}

static void test_long_jti_checked(void **state)
{
    (void)state;
    char j1[301], j2[301];
    char *t1 = long_jti_token("long-jti-user", j1), *t2 = long_jti_token("long-jti-user", j2);
    char *t3 = token("long-jti-user", NULL);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", j2);
    assert_int_equal(rs_set(g_rs, bl, "1", 1, false), 0);
    free(bl);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* child: no cmocka, always _exit */
        static const int crash[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++)
            signal(crash[i], SIG_DFL); /* a crash shows as the signal, not cmocka's exit */
        close(fds[0]);
        long_jti_verdicts v = {-99, -99, -99, -99, 0};
        iam_client_options o;
        redis_opts(&o, rs_url(g_rs));
        o.redis_timeout_ms = FAIL_TIMEOUT_MS;
        iam_client *a = NULL, *open = NULL;
        if (iam_client_new(&o, &a, NULL) != IAM_OK || !client_ready_quiet(a))
            _exit(3);
        o.revocation_fail_open = true;
        if (iam_client_new(&o, &open, NULL) != IAM_OK || !client_ready_quiet(open))
            _exit(3);
        long long t0 = rs_mono_ms();
        v.closed_revoked = resolve_quiet(a, t2, NULL); /* want revoked */
        v.took = rs_mono_ms() - t0;
        v.open_revoked = resolve_quiet(open, t2, NULL); /* want revoked */
        v.closed_fine = resolve_quiet(a, t1, NULL);     /* want ok */
        v.ordinary = resolve_quiet(a, t3, NULL);        /* want ok */
        if (write(fds[1], &v, sizeof v) != (ssize_t)sizeof v)
            _exit(4);
        iam_client_free(a);
        iam_client_free(open);
        _exit(0);
    }
    close(fds[1]);
    long_jti_verdicts v;
    ssize_t got = read(fds[0], &v, sizeof v); /* EOF at once if the child dies */
    close(fds[0]);
    int status = 0;
    long long deadline = rs_mono_ms() + 30000;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && rs_mono_ms() < deadline)
        rs_sleep_ms(10);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    free(t1);
    free(t2);
    free(t3);
    if (got != (ssize_t)sizeof v) {
        if (WIFSIGNALED(status))
            fail_msg("the library crashed (signal %d) resolving a validly signed token whose jti "
                     "is 300 bytes long", WTERMSIG(status));
        fail_msg("the child resolving a token with a 300-byte jti died before answering (%s %d; "
                 "under a sanitizer, its report above says why)",
                 WIFEXITED(status) ? "exit" : "status", WIFEXITED(status) ? WEXITSTATUS(status) : status);
    }
    if (v.closed_revoked != IAM_E_REVOKED || v.open_revoked != IAM_E_REVOKED ||
        v.closed_fine != IAM_OK || v.ordinary != IAM_OK)
        fail_msg("300-byte jti: revoked+fail-closed %s (%lld ms), revoked+fail-open %s, "
                 "not revoked %s; then an ordinary token %s",
                 iam_status_name(v.closed_revoked), v.took, iam_status_name(v.open_revoked),
                 iam_status_name(v.closed_fine), iam_status_name(v.ordinary));
}

/* Redis restarts quickly: the client re-subscribes, but a logout that happened meanwhile
 * (its blacklist key written, its message unheard) must still take effect: an answer cached
 * before the loss is not served beyond redis_stale_s after it, re-subscribed or not. */
static void test_missed_invalidation_during_outage(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_stale_s = 1;
    iam_client *a = ready_client(&o);
    char jti[37];
    char *t = token("gap-user", jti);
    assert_status(resolve(a, t, "gap-user"), IAM_OK);
    long long t0 = rs_mono_ms();
    assert_int_equal(rs_stop(p), 0);
    assert_int_equal(rs_restart(p), 0);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    assert_int_equal(rs_set(p, bl, "1", 1, false), 0);
    wait_ready(a); /* subscribed again: the logout's message was never heard */
    iam_status st = IAM_OK;
    while (rs_mono_ms() - t0 < 6000 && (st = resolve(a, t, NULL)) != IAM_E_REVOKED)
        rs_sleep_ms(50);
    if (st != IAM_E_REVOKED)
        fail_msg("a token revoked during a short outage was still answered %s %lld ms after the "
                 "loss (redis_stale_s 1)", iam_status_name(st), rs_mono_ms() - t0);
    free(bl);
    free(t);
}

/* A resolution verified on the caller's thread (no jti: no Redis round trip) while a message
 * invalidating its user is heard on the I/O thread: the answer is returned but not cached,
 * so the next request verifies again. Slow verification (64 P-521 keys, the right one last)
 * keeps the resolution in flight for tens of milliseconds; iterations where the message did
 * not land inside the flight are inconclusive and repeated. */
static _Atomic long long g_heard_at;
static char g_heard_user[64];

static void on_timed_invalidation(void *arg, const iam_invalidation *m)
{
    (void)arg;
    if (m->kind == IAM_INVALIDATION_MESSAGE && m->user_id && strcmp(m->user_id, g_heard_user) == 0)
        atomic_store(&g_heard_at, rs_mono_ms());
}

typedef struct slow_call {
    iam_client *c;
    const char *tok;
    long long start, end;
    iam_status st;
} slow_call;

static void *slow_thread(void *arg)
{
    slow_call *s = arg;
    s->start = rs_mono_ms();
    s->st = resolve_quiet(s->c, s->tok, NULL);
    s->end = rs_mono_ms();
    return NULL;
}

static void test_invalidation_heard_during_local_verification(void **state)
{
    (void)state;
    mint_key *signer = mint_key_generate("p521");
    mint_key *wrong = mint_key_generate("p521");
    char *wrong_pem = mint_key_public_pem(wrong), *right_pem = mint_key_public_pem(signer);
    iam_keyset *ks = iam_keyset_new();
    for (int i = 0; i < IAM_MAX_KEYS - 1; i++)
        assert_int_equal(iam_keyset_add_pem(ks, wrong_pem, strlen(wrong_pem), NULL, NULL), IAM_OK);
    assert_int_equal(iam_keyset_add_pem(ks, right_pem, strlen(right_pem), NULL, NULL), IAM_OK);
    free(wrong_pem);
    free(right_pem);
    mint_key_free(wrong);
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.jwt_secret = NULL;
    o.keys = ks;
    o.on_invalidation = on_timed_invalidation;
    iam_client *a = ready_client(&o);
    int conclusive = 0, violations = 0;
    for (int it = 0; it < 20 && conclusive < 3; it++) {
        snprintf(g_heard_user, sizeof g_heard_user, "veto-user-%d", it);
        atomic_store(&g_heard_at, 0);
        char *c = claims(g_heard_user, NULL, now_s() + 600, NULL, NULL); /* no jti */
        char *tok = mint_token("ES512", NULL, c, signer);
        free(c);
        slow_call sc = {.c = a, .tok = tok};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, slow_thread, &sc), 0);
        rs_sleep_ms(8);
        char *msg = xprintf("{\"user_id\": \"%s\"}", g_heard_user);
        assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, msg, strlen(msg)) >= 1);
        free(msg);
        pthread_join(th, NULL);
        assert_true(WAIT_UNTIL(atomic_load(&g_heard_at) != 0, WAIT_MS));
        long long heard = atomic_load(&g_heard_at);
        assert_status(sc.st, IAM_OK);
        if (heard > sc.start && heard < sc.end) {
            conclusive++;
            uint64_t v0 = stats(a).verifications;
            assert_status(resolve(a, tok, g_heard_user), IAM_OK);
            if (stats(a).verifications == v0)
                violations++; /* answered from an entry stored after the invalidation */
        }
        free(tok);
    }
    mint_key_free(signer);
    iam_keyset_release(ks);
    if (violations)
        fail_msg("%d of %d resolutions in flight when their user's invalidation was heard were "
                 "cached anyway", violations, conclusive);
    if (conclusive == 0)
        fail_msg("the invalidation never landed during a verification (inconclusive)");
}

/* iam_client_revoke_token: blacklist key = "1" with TTL = seconds to exp, record deleted,
 * {"user_id": "<sub>", "jti": "<jti>"} published; refused here, by a fresh client, and by
 * a second subscribed client that had it cached. */
static void test_revoke_token_effects(void **state)
{
    (void)state;
    rs_subscriber *sub = rs_subscribe(g_rs, IAM_REDIS_CHANNEL);
    assert_non_null(sub);
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.cache_secret = OTHER_CACHE_SECRET; /* its own record never races A's DEL below */
    iam_client *c2 = ready_client(&o);
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    char jti[37];
    int64_t exp = now_s() + 600;
    char *tok = token_exp("rv-user", jti, exp);
    char *key = resolve_and_record(g_rs, a, tok, "rv-user");
    assert_status(resolve(c2, tok, "rv-user"), IAM_OK);

    assert_status(revoke_token(a, tok), IAM_OK);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    size_t len;
    char *v = rs_get(g_rs, bl, &len);
    if (!v)
        fail_msg("no %s after revoke_token", bl);
    assert_string_equal(v, "1");
    free(v);
    long long pttl = rs_pttl(g_rs, bl);
    long long left = exp * 1000 - real_ms();
    if (!(pttl > left - 5000 && pttl <= left + 1000))
        fail_msg("blacklist PTTL %lld ms, token expires in %lld ms", pttl, left);
    if (!wait_gone(g_rs, key))
        fail_msg("revoke_token did not delete the token's record");
    char *m = rs_next_message(sub, WAIT_MS, &len);
    if (!m)
        fail_msg("revoke_token published nothing");
    /* the platform's format, byte for byte: {"user_id": "<sub>", "jti": "<jti>"}, then at
     * most the documented "origin" member (the publisher's id, so it skips its own echo) */
    char *want = xprintf("{\"user_id\": \"rv-user\", \"jti\": \"%s\"", jti);
    if (strncmp(m, want, strlen(want)) != 0)
        fail_msg("revoke_token published %s", m);
    const char *rest = m + strlen(want);
    if (strcmp(rest, "}") != 0) {
        cJSON *j = cJSON_Parse(m);
        int members = 0;
        for (cJSON *it = j ? j->child : NULL; it; it = it->next)
            members++;
        const cJSON *origin = j ? cJSON_GetObjectItemCaseSensitive(j, "origin") : NULL;
        if (!j || members != 3 || !cJSON_IsString(origin) || strncmp(rest, ", \"origin\": \"", 13) != 0)
            fail_msg("revoke_token published %s", m);
        cJSON_Delete(j);
    }
    free(want);
    free(m);

    assert_status(resolve(a, tok, NULL), IAM_E_REVOKED);
    iam_client *fresh = ready_client(&o);
    assert_status(resolve(fresh, tok, NULL), IAM_E_REVOKED);
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    assert_not_ok(resolve(b, tok, NULL));
    /* c2 heard the message: its cached answer is gone */
    if (!WAIT_UNTIL(resolve_quiet(c2, tok, NULL) != IAM_OK, WAIT_MS))
        fail_msg("a subscribed client keeps accepting a revoked token");
    assert_status(resolve(c2, tok, NULL), IAM_E_REVOKED);
    free(bl);
    free(key);
    free(tok);
    rs_subscriber_free(sub);
}

static void test_revoke_token_edge_cases(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    /* expired: TTL at least 1 s */
    char jti[37];
    char *expired = token_exp("rv-edge", jti, now_s() - 30);
    assert_status(revoke_token(a, expired), IAM_OK);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    long long pttl = rs_pttl(g_rs, bl);
    if (!(pttl > 0 && pttl <= 1000))
        fail_msg("expired token's blacklist PTTL %lld ms, expected (0, 1000]", pttl);
    free(bl);
    /* no jti */
    char *c = claims("rv-edge", NULL, now_s() + 600, NULL, NULL);
    char *nojti = sign(c, g_key);
    free(c);
    assert_status(revoke_token(a, nojti), IAM_E_MISSING_CLAIM);
    assert_status(revoke_token(a, "not-a-token"), IAM_E_MALFORMED);
    long n;
    char **k = rs_keys(g_rs, IAM_REDIS_BLACKLIST_PREFIX "*", &n);
    rs_free_keys(k, n);
    assert_int_equal(n, 1);
    /* a client that cannot verify the token still revokes it */
    keyless_opts(&o, rs_url(g_rs));
    iam_client *b = ready_client(&o);
    char jti2[37];
    char *t2 = token("rv-edge2", jti2);
    assert_status(revoke_token(b, t2), IAM_OK);
    bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti2);
    assert_int_equal(rs_exists(g_rs, bl), 1);
    assert_status(resolve(a, t2, NULL), IAM_E_REVOKED);
    free(bl);
    /* no Redis tier */
    iam_client_options lo;
    iam_client_options_init(&lo);
    lo.jwt_secret = SECRET;
    iam_client *local = client_new(&lo);
    assert_status(revoke_token(local, t2), IAM_E_CONFIG);
    free(t2);
    free(nojti);
    free(expired);
}

/* The invalidate/revoke calls publish for the other nodes; revoke_jti writes the key. */
static void test_invalidations_publish(void **state)
{
    (void)state;
    rs_subscriber *sub = rs_subscribe(g_rs, IAM_REDIS_CHANNEL);
    assert_non_null(sub);
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.revocation_ttl_s = 120;
    iam_client *a = ready_client(&o);
    size_t len;

    iam_client_invalidate_user(a, "pub-user");
    char *m = rs_next_message(sub, WAIT_MS, &len);
    assert_non_null(m);
    cJSON *j = cJSON_Parse(m);
    if (!j || !cJSON_IsString(cJSON_GetObjectItem(j, "user_id")))
        fail_msg("invalidate_user published %s", m);
    assert_string_equal(cJSON_GetObjectItem(j, "user_id")->valuestring, "pub-user");
    cJSON_Delete(j);
    free(m);

    char jti[37];
    new_jti(jti);
    iam_client_revoke_jti(a, jti);
    m = rs_next_message(sub, WAIT_MS, &len);
    assert_non_null(m);
    j = cJSON_Parse(m);
    if (!j || !cJSON_IsString(cJSON_GetObjectItem(j, "jti")))
        fail_msg("revoke_jti published %s", m);
    assert_string_equal(cJSON_GetObjectItem(j, "jti")->valuestring, jti);
    cJSON_Delete(j);
    free(m);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    if (!WAIT_UNTIL(rs_exists(g_rs, bl) == 1, WAIT_MS))
        fail_msg("revoke_jti wrote no blacklist key");
    long long pttl = rs_pttl(g_rs, bl);
    if (!(pttl > 0 && pttl <= 120 * 1000))
        fail_msg("revoke_jti's key PTTL %lld, revocation_ttl_s 120", pttl);
    free(bl);

    iam_client_invalidate_all(a);
    m = rs_next_message(sub, WAIT_MS, &len);
    assert_non_null(m);
    j = cJSON_Parse(m);
    if (!j || !cJSON_IsTrue(cJSON_GetObjectItem(j, "all")))
        fail_msg("invalidate_all published %s", m);
    cJSON_Delete(j);
    free(m);

    char jti2[37];
    char *tok = token("pub-user", jti2);
    iam_client_invalidate_token(a, tok, strlen(tok));
    m = rs_next_message(sub, WAIT_MS, &len);
    assert_non_null(m);
    j = cJSON_Parse(m);
    if (!j || !cJSON_IsString(cJSON_GetObjectItem(j, "jti")))
        fail_msg("invalidate_token published %s", m);
    assert_string_equal(cJSON_GetObjectItem(j, "jti")->valuestring, jti2);
    assert_null(strstr(m, tok));
    cJSON_Delete(j);
    free(m);
    free(tok);
    rs_subscriber_free(sub);
}

/* ================================================================ invalidation */

static void test_invalidation_heard_by_second_client(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a1 = ready_client(&o);
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a2 = ready_client(&o);
    char vjti[37];
    char *tu = token("inv-u", NULL), *tv = token("inv-v", vjti);
    for (int i = 0; i < 2; i++) {
        iam_client *c = i ? a2 : a1;
        assert_status(resolve(c, tu, "inv-u"), IAM_OK);
        assert_status(resolve(c, tv, "inv-v"), IAM_OK);
    }
    assert_int_equal(stats(a2).l1_entries, 2);

    iam_client_invalidate_user(a1, "inv-u");
    if (!WAIT_UNTIL(stats(a2).l1_evictions_invalidated >= 1, WAIT_MS))
        fail_msg("the second client did not evict on invalidate_user");
    assert_true(wait_user_message(&g_rec, "inv-u", NULL));
    assert_int_equal(stats(a2).l1_entries, 1);
    uint64_t v0 = stats(a2).verifications;
    assert_status(resolve(a2, tv, "inv-v"), IAM_OK); /* still cached */
    assert_int_equal(stats(a2).verifications, v0);
    assert_status(resolve(a2, tu, "inv-u"), IAM_OK); /* re-verified */
    assert_int_equal(stats(a2).verifications, v0 + 1);

    iam_client_invalidate_all(a1);
    if (!WAIT_UNTIL(stats(a2).l1_entries == 0, WAIT_MS))
        fail_msg("the second client did not evict on invalidate_all");

    assert_status(resolve(a2, tv, "inv-v"), IAM_OK);
    iam_client_revoke_jti(a1, vjti);
    if (!WAIT_UNTIL(resolve_quiet(a2, tv, NULL) == IAM_E_REVOKED, WAIT_MS))
        fail_msg("the second client kept accepting a jti revoked by the first");
    assert_true(stats(a2).invalidations_heard >= 3);
    free(tu);
    free(tv);
}

/* The platform's own message, byte for byte: {"user_id": "2", "token": "<refresh jwt>"}. */
static void test_platform_message_format(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a = ready_client(&o);
    char *t2 = token("2", NULL), *t3 = token("3", NULL);
    assert_status(resolve(a, t2, "2"), IAM_OK);
    assert_status(resolve(a, t3, "3"), IAM_OK);
    char *rc = xprintf("{\"sub\":\"2\",\"type\":\"refresh\",\"jti\":\"r-1\",\"exp\":%lld}",
                       (long long)now_s() + 86400);
    char *refresh = sign(rc, g_key);
    char *msg = xprintf("{\"user_id\": \"2\", \"token\": \"%s\"}", refresh);
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, msg, strlen(msg)) >= 1);
    ev e;
    if (!wait_user_message(&g_rec, "2", &e))
        fail_msg("no MESSAGE callback for the platform's message");
    assert_false(e.malformed);
    assert_false(e.all);
    assert_false(e.has_jti);
    assert_false(e.on_main);
    char fp[17];
    sha256_fp(refresh, fp);
    assert_string_equal(e.fp, fp);
    assert_true(WAIT_UNTIL(stats(a).l1_evictions_invalidated == 1, WAIT_MS));
    iam_client_stats s = stats(a);
    assert_int_equal(s.l1_entries, 1);
    assert_true(s.invalidations_heard >= 1);
    assert_int_equal(s.invalidations_malformed, 0);
    uint64_t v0 = s.verifications;
    assert_status(resolve(a, t3, "3"), IAM_OK);
    assert_int_equal(stats(a).verifications, v0);
    assert_status(resolve(a, t2, "2"), IAM_OK);
    assert_int_equal(stats(a).verifications, v0 + 1);
    free(msg);
    free(refresh);
    free(rc);
    free(t2);
    free(t3);
}

static void test_integer_user_id(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a = ready_client(&o);
    char *t2 = token("2", NULL), *t22 = token("22", NULL);
    assert_status(resolve(a, t2, "2"), IAM_OK);
    assert_status(resolve(a, t22, "22"), IAM_OK);
    static const char msg[] = "{\"user_id\": 2}";
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, msg, strlen(msg)) >= 1);
    ev e;
    if (!wait_user_message(&g_rec, "2", &e))
        fail_msg("integer user_id not delivered as \"2\"");
    assert_false(e.malformed);
    assert_true(WAIT_UNTIL(stats(a).l1_evictions_invalidated == 1, WAIT_MS));
    assert_int_equal(stats(a).l1_entries, 1);
    uint64_t v0 = stats(a).verifications;
    assert_status(resolve(a, t22, "22"), IAM_OK);
    assert_int_equal(stats(a).verifications, v0);
    free(t2);
    free(t22);
}

/* {"jti": …}, {"token": …}, {"all": true}. */
static void test_jti_token_all_messages(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a = ready_client(&o);
    char ja[37];
    char *ta = token("m-a", ja), *tb = token("m-b", NULL), *tc = token("m-c", NULL);
    assert_status(resolve(a, ta, "m-a"), IAM_OK);
    assert_status(resolve(a, tb, "m-b"), IAM_OK);
    assert_status(resolve(a, tc, "m-c"), IAM_OK);
    char *m1 = xprintf("{\"jti\": \"%s\"}", ja);
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, m1, strlen(m1)) >= 1);
    assert_true(wait_count(&g_rec, IAM_INVALIDATION_MESSAGE, 1, WAIT_MS));
    assert_true(WAIT_UNTIL(stats(a).l1_entries == 2, WAIT_MS));
    pthread_mutex_lock(&g_rec.mu);
    ev e1 = g_rec.evs[g_rec.n - 1];
    pthread_mutex_unlock(&g_rec.mu);
    assert_true(e1.has_jti);
    assert_string_equal(e1.jti, ja);

    char *m2 = xprintf("{\"token\": \"%s\"}", tb);
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, m2, strlen(m2)) >= 1);
    assert_true(wait_count(&g_rec, IAM_INVALIDATION_MESSAGE, 2, WAIT_MS));
    if (!WAIT_UNTIL(stats(a).l1_entries == 1, WAIT_MS))
        fail_msg("{\"token\": …} did not evict that token");
    pthread_mutex_lock(&g_rec.mu);
    ev e2 = g_rec.evs[g_rec.n - 1];
    pthread_mutex_unlock(&g_rec.mu);
    char fp[17];
    sha256_fp(tb, fp);
    assert_string_equal(e2.fp, fp);
    uint64_t v0 = stats(a).verifications;
    assert_status(resolve(a, tc, "m-c"), IAM_OK);
    assert_int_equal(stats(a).verifications, v0);

    static const char m3[] = "{\"all\": true}";
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, m3, strlen(m3)) >= 1);
    assert_true(wait_count(&g_rec, IAM_INVALIDATION_MESSAGE, 3, WAIT_MS));
    assert_true(WAIT_UNTIL(stats(a).l1_entries == 0, WAIT_MS));
    pthread_mutex_lock(&g_rec.mu);
    ev e3 = g_rec.evs[g_rec.n - 1];
    pthread_mutex_unlock(&g_rec.mu);
    assert_true(e3.all);
    free(m1);
    free(m2);
    free(ta);
    free(tb);
    free(tc);
}

static void test_malformed_messages_ignored(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a = ready_client(&o);
    char *t2 = token("2", NULL), *t9 = token("mal-user", NULL);
    assert_status(resolve(a, t2, "2"), IAM_OK);
    assert_status(resolve(a, t9, "mal-user"), IAM_OK);
    size_t big = IAM_MAX_INVALIDATION_BYTES + 1000;
    char *huge = malloc(big + 1);
    assert_non_null(huge);
    int hn = snprintf(huge, big + 1, "{\"user_id\": \"2\", \"pad\": \"");
    memset(huge + hn, 'x', big - (size_t)hn - 2);
    memcpy(huge + big - 2, "\"}", 2);
    huge[big] = '\0';
    const char *bad[] = {
        "not json",
        "[\"user_id\", \"2\"]",
        "\"2\"",
        "{\"user_id\": \"2\"",
        "{\"user_id\": [\"2\"]}",
        "{\"user_id\": {\"id\": \"2\"}}",
        "{\"all\": \"yes\"}",
        "{\"user_id\": \"2\"} trailing",
        "",
        huge,
    };
    int nbad = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < nbad; i++)
        assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, bad[i], strlen(bad[i])) >= 1);
    static const char sentinel[] = "{\"user_id\": \"sentinel-user\"}";
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, sentinel, strlen(sentinel)) >= 1);
    if (!wait_user_message(&g_rec, "sentinel-user", NULL))
        fail_msg("the subscriber did not survive the malformed messages");
    iam_client_stats s = stats(a);
    if (s.invalidations_malformed != (uint64_t)nbad)
        fail_msg("invalidations_malformed %llu, expected %d",
                 (unsigned long long)s.invalidations_malformed, nbad);
    assert_int_equal(s.l1_entries, 2);
    assert_int_equal(s.l1_evictions_invalidated, 0);
    int flagged = 0;
    pthread_mutex_lock(&g_rec.mu);
    for (int i = 0; i < g_rec.n && i < MAX_EVENTS; i++)
        flagged += g_rec.evs[i].kind == IAM_INVALIDATION_MESSAGE && g_rec.evs[i].malformed;
    pthread_mutex_unlock(&g_rec.mu);
    if (flagged != nbad)
        fail_msg("%d callbacks flagged malformed, expected %d", flagged, nbad);
    /* still listening */
    static const char good[] = "{\"user_id\": \"2\"}";
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, good, strlen(good)) >= 1);
    assert_true(WAIT_UNTIL(stats(a).l1_entries == 1, WAIT_MS));
    free(huge);
    free(t2);
    free(t9);
}

/* A user id longer than 256 bytes (a valid sub) can still be invalidated: a message naming
 * it evicts that user's entries (or, conservatively, more) — it is never ignored. */
static void test_long_user_id_message(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a = ready_client(&o);
    char sub[301];
    memset(sub, 'u', 300);
    sub[300] = '\0';
    char *t = token(sub, NULL);
    assert_status(resolve(a, t, sub), IAM_OK);
    assert_int_equal(stats(a).l1_entries, 1);
    char *msg = xprintf("{\"user_id\": \"%s\", \"token\": \"x.y.z\"}", sub);
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, msg, strlen(msg)) >= 1);
    static const char sentinel[] = "{\"user_id\": \"sentinel-long\"}";
    assert_true(rs_publish(g_rs, IAM_REDIS_CHANNEL, sentinel, strlen(sentinel)) >= 1);
    free(msg);
    free(t);
    assert_true(wait_user_message(&g_rec, "sentinel-long", NULL));
    if (stats(a).l1_entries != 0)
        fail_msg("a message naming a 300-byte user id was ignored (malformed %llu): the user's "
                 "cached answer is still served",
                 (unsigned long long)stats(a).invalidations_malformed);
}

/* SUBSCRIBED, MESSAGE, LOST (server stopped), SUBSCRIBED (restarted), on the I/O thread. */
static void test_on_invalidation_kinds(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    iam_client *a = client_new(&o);
    if (!wait_count(&g_rec, IAM_INVALIDATION_SUBSCRIBED, 1, WAIT_MS))
        fail_msg("no SUBSCRIBED callback");
    wait_ready(a);
    static const char msg[] = "{\"user_id\": \"kinds-user\"}";
    assert_true(rs_publish(p, IAM_REDIS_CHANNEL, msg, strlen(msg)) >= 1);
    assert_true(wait_user_message(&g_rec, "kinds-user", NULL));
    assert_int_equal(rs_stop(p), 0);
    if (!wait_count(&g_rec, IAM_INVALIDATION_LOST, 1, WAIT_MS))
        fail_msg("no LOST callback after the server stopped");
    assert_true(WAIT_UNTIL(!stats(a).redis_subscribed, WAIT_MS));
    assert_int_equal(rs_restart(p), 0);
    if (!wait_count(&g_rec, IAM_INVALIDATION_SUBSCRIBED, 2, 15000))
        fail_msg("no second SUBSCRIBED callback after the server restarted");
    wait_ready(a);
    assert_true(stats(a).redis_reconnects >= 1);
    pthread_mutex_lock(&g_rec.mu);
    int n = g_rec.n;
    iam_invalidation_kind k[4] = {0};
    bool any_main = false;
    for (int i = 0; i < n && i < MAX_EVENTS; i++) {
        if (i < 4)
            k[i] = g_rec.evs[i].kind;
        any_main |= g_rec.evs[i].on_main;
    }
    pthread_mutex_unlock(&g_rec.mu);
    if (n != 4 || k[0] != IAM_INVALIDATION_SUBSCRIBED || k[1] != IAM_INVALIDATION_MESSAGE ||
        k[2] != IAM_INVALIDATION_LOST || k[3] != IAM_INVALIDATION_SUBSCRIBED)
        fail_msg("callback sequence has %d events (want SUBSCRIBED, MESSAGE, LOST, SUBSCRIBED)", n);
    assert_false(any_main);
}

/* ================================================================ failure */

typedef struct burst {
    iam_client *c;
    char *tok;
    iam_status st;
    long long ms;
} burst;

static void *burst_thread(void *arg)
{
    burst *b = arg;
    b->st = resolve_quiet(b->c, b->tok, &b->ms);
    return NULL;
}

/* Resolves n fresh tokens from n threads at once: every call returns within the bound with
 * `want`. */
static void resolve_burst(iam_client *c, int n, iam_status want)
{
    burst b[8];
    pthread_t th[8];
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        b[i].c = c;
        b[i].tok = token("burst-user", NULL);
        assert_int_equal(pthread_create(&th[i], NULL, burst_thread, &b[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++) {
        if (b[i].ms > BOUND_MS)
            fail_msg("a concurrent resolution took %lld ms", b[i].ms);
        assert_status(b[i].st, want);
        free(b[i].tok);
    }
}

/* Stopped, fail-closed: cached answers served (within redis_stale_s), new tokens
 * UNAVAILABLE (never cached), refusals still local, revoke_token's local effects stand. */
static void test_stopped_fail_closed(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_stale_s = 60;
    iam_client *a = ready_client(&o);
    char *t1 = token("down-user", NULL), *t2 = token("down-user", NULL);
    char *t3 = token("down-user", NULL);
    assert_status(resolve(a, t1, "down-user"), IAM_OK);
    int pipes0 = atomic_load(&g_sigpipes);
    assert_int_equal(rs_stop(p), 0);

    assert_status(resolve(a, t1, "down-user"), IAM_OK);
    assert_status(resolve(a, t2, NULL), IAM_E_UNAVAILABLE);
    assert_status(resolve(a, t2, NULL), IAM_E_UNAVAILABLE);
    assert_not_ok(cached(a, t2, NULL));
    char *c = claims("down-user", NULL, now_s() + 600, NULL, NULL);
    char *forged = sign(c, g_other_key);
    free(c);
    assert_status(resolve(a, forged, NULL), IAM_E_BAD_SIGNATURE);
    resolve_burst(a, 8, IAM_E_UNAVAILABLE);
    assert_status(revoke_token(a, t3), IAM_E_UNAVAILABLE);
    assert_status(resolve(a, t3, NULL), IAM_E_REVOKED); /* the local effect stands */
    /* a client that could only answer from a record: unavailable, not a refusal */
    iam_client_options ko;
    keyless_opts(&ko, rs_url(p));
    ko.redis_timeout_ms = FAIL_TIMEOUT_MS;
    iam_client *b = client_new(&ko);
    assert_status(resolve(b, t1, NULL), IAM_E_UNAVAILABLE);
    long long t0 = rs_mono_ms();
    iam_client_invalidate_user(a, "someone");
    iam_client_invalidate_all(a);
    assert_true(rs_mono_ms() - t0 < BOUND_MS);
    iam_client_stats s = stats(a);
    assert_true(s.redis_errors >= 1);
    assert_false(s.redis_subscribed);
    t0 = rs_mono_ms();
    client_free(a);
    assert_true(rs_mono_ms() - t0 < BOUND_MS);
    assert_int_equal(atomic_load(&g_sigpipes), pipes0);
    free(forged);
    free(t1);
    free(t2);
    free(t3);
}

static void test_stopped_fail_open(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.revocation_fail_open = true;
    iam_client *a = ready_client(&o);
    char *t1 = token("open-user", NULL);
    assert_int_equal(rs_stop(p), 0);
    assert_status(resolve(a, t1, "open-user"), IAM_OK);
    char *c = claims("open-user", NULL, now_s() + 600, NULL, NULL);
    char *forged = sign(c, g_other_key);
    free(c);
    assert_status(resolve(a, forged, NULL), IAM_E_BAD_SIGNATURE);
    resolve_burst(a, 4, IAM_OK);
    free(forged);
    free(t1);
}

/* Fail-open accepts an unchecked token, but caches it at most redis_stale_s: once Redis is
 * back, a revocation written meanwhile takes effect within that bound. */
static void test_fail_open_answer_rechecked(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_stale_s = 1;
    o.revocation_fail_open = true;
    iam_client *a = ready_client(&o);
    char jti[37];
    char *t = token("fo-user", jti);
    assert_int_equal(rs_stop(p), 0);
    assert_status(resolve(a, t, "fo-user"), IAM_OK); /* unchecked */
    long long t0 = rs_mono_ms();
    assert_int_equal(rs_restart(p), 0);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
    assert_int_equal(rs_set(p, bl, "1", 1, false), 0);
    wait_ready(a);
    iam_status st = IAM_OK;
    while (rs_mono_ms() - t0 < 8000 && (st = resolve(a, t, NULL)) != IAM_E_REVOKED)
        rs_sleep_ms(50);
    if (st != IAM_E_REVOKED)
        fail_msg("a fail-open answer was still %s %lld ms later (redis_stale_s 1)",
                 iam_status_name(st), rs_mono_ms() - t0);
    free(bl);
    free(t);
}

/* A host that does not answer at all (unroutable): creation, resolution and free return. */
static void test_unroutable_host(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, "redis://10.255.255.1:6379");
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    iam_client *a = client_new(&o);
    char *t = token("unroutable-user", NULL);
    assert_status(resolve(a, t, NULL), IAM_E_UNAVAILABLE);
    rs_sleep_ms(300);
    assert_status(resolve(a, t, NULL), IAM_E_UNAVAILABLE);
    assert_status(revoke_token(a, t), IAM_E_UNAVAILABLE);
    long long t0 = rs_mono_ms();
    client_free(a);
    assert_true(rs_mono_ms() - t0 < BOUND_MS);
    free(t);
}

/* While the subscription is lost, an answer cached meanwhile (a token without jti needs no
 * Redis round trip) is kept at most redis_stale_s: it is verified again after that. */
static void test_answers_cached_while_deaf_are_capped(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_stale_s = 1;
    iam_client *a = ready_client(&o);
    assert_int_equal(rs_stop(p), 0);
    assert_true(WAIT_UNTIL(!stats(a).redis_subscribed, WAIT_MS));
    char *c = claims("deaf-user", NULL, now_s() + 3600, NULL, NULL);
    char *t = sign(c, g_key);
    free(c);
    assert_status(resolve(a, t, "deaf-user"), IAM_OK);
    uint64_t v0 = stats(a).verifications;
    assert_status(resolve(a, t, "deaf-user"), IAM_OK);
    long long t0 = rs_mono_ms();
    while (rs_mono_ms() - t0 < 6000 && stats(a).verifications == v0) {
        assert_status(resolve(a, t, "deaf-user"), IAM_OK);
        rs_sleep_ms(50);
    }
    if (stats(a).verifications == v0)
        fail_msg("an answer cached while deaf was still served from the cache after %lld ms "
                 "(redis_stale_s 1)", rs_mono_ms() - t0);
    free(t);
}

/* Redis not there when the client starts: creation works, answers are UNAVAILABLE, and
 * when the server appears the client connects by itself. */
static void test_redis_absent_at_start(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    assert_int_equal(rs_stop(p), 0);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    iam_client *a = client_new(&o);
    char *t1 = token("absent-user", NULL);
    assert_status(resolve(a, t1, NULL), IAM_E_UNAVAILABLE);
    o.revocation_fail_open = true;
    iam_client *open = client_new(&o);
    assert_status(resolve(open, t1, "absent-user"), IAM_OK);
    assert_int_equal(rs_restart(p), 0);
    if (!WAIT_UNTIL(resolve_quiet(a, t1, NULL) == IAM_OK, 15000))
        fail_msg("the client did not connect once the server appeared");
    wait_ready(a);
    free(t1);
}

/* SIGSTOP: the server keeps its sockets but answers nothing. Every call returns within the
 * bound; after SIGCONT service resumes; freeing a client with a hung server returns. */
static void test_hung_server(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_stale_s = 60;
    iam_client *a = ready_client(&o);
    char *t1 = token("hung-user", NULL), *t2 = token("hung-user", NULL);
    char *t3 = token("hung-user", NULL), *t4 = token("hung-user", NULL);
    assert_status(resolve(a, t1, "hung-user"), IAM_OK);
    assert_int_equal(rs_pause(p), 0);
    assert_status(resolve(a, t2, NULL), IAM_E_UNAVAILABLE);
    resolve_burst(a, 6, IAM_E_UNAVAILABLE);
    assert_status(revoke_token(a, t3), IAM_E_UNAVAILABLE);
    assert_not_ok(cached(a, t4, NULL));
    assert_status(resolve(a, t1, "hung-user"), IAM_OK); /* cached, within redis_stale_s */
    long long t0 = rs_mono_ms();
    iam_client_invalidate_user(a, "hung-user-2");
    assert_true(rs_mono_ms() - t0 < BOUND_MS);
    assert_int_equal(rs_resume(p), 0);
    if (!WAIT_UNTIL(resolve_quiet(a, t4, NULL) == IAM_OK, 15000))
        fail_msg("service did not resume after SIGCONT");
    assert_status(resolve(a, t3, NULL), IAM_E_REVOKED);

    /* free while hung */
    iam_client *b = ready_client(&o);
    assert_int_equal(rs_pause(p), 0);
    assert_status(resolve(b, t2, NULL), IAM_E_UNAVAILABLE);
    t0 = rs_mono_ms();
    client_free(b);
    long long took = rs_mono_ms() - t0;
    assert_int_equal(rs_resume(p), 0);
    if (took > BOUND_MS)
        fail_msg("iam_client_free took %lld ms with a hung server", took);
    free(t1);
    free(t2);
    free(t3);
    free(t4);
}

/* Restarted mid-run: nothing wrong accepted (a key written the moment the server is back is
 * honoured), service resumes, the subscription is back. */
static void test_restart_resumes(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.on_invalidation = on_invalidation;
    o.invalidation_arg = &g_rec;
    iam_client *a = ready_client(&o);
    char j3[37];
    char *t1 = token("rs-user", NULL), *t2 = token("rs-user", NULL), *t3 = token("rs-user", j3);
    assert_status(resolve(a, t1, "rs-user"), IAM_OK);
    assert_int_equal(rs_stop(p), 0);
    assert_status(resolve(a, t2, NULL), IAM_E_UNAVAILABLE);
    assert_status(resolve(a, t3, NULL), IAM_E_UNAVAILABLE);
    assert_int_equal(rs_restart(p), 0);
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", j3);
    assert_int_equal(rs_set(p, bl, "1", 1, false), 0);
    /* until it is back, and after, t3 is never accepted */
    long long deadline = rs_mono_ms() + 15000;
    iam_status st3 = IAM_E_UNAVAILABLE;
    while (rs_mono_ms() < deadline && st3 != IAM_E_REVOKED) {
        st3 = resolve(a, t3, NULL);
        assert_not_ok(st3);
        rs_sleep_ms(20);
    }
    assert_status(st3, IAM_E_REVOKED);
    if (!WAIT_UNTIL(resolve_quiet(a, t2, NULL) == IAM_OK, 15000))
        fail_msg("service did not resume after the restart");
    wait_ready(a);
    assert_true(stats(a).redis_reconnects >= 1);
    char *t5 = token("rs-user-2", NULL);
    free(resolve_and_record(p, a, t5, "rs-user-2")); /* records again */
    free(t5);
    /* the subscription is back: an invalidation is heard */
    static const char msg[] = "{\"user_id\": \"rs-user\"}";
    assert_true(rs_publish(p, IAM_REDIS_CHANNEL, msg, strlen(msg)) >= 1);
    assert_true(wait_user_message(&g_rec, "rs-user", NULL));
    free(bl);
    free(t1);
    free(t2);
    free(t3);
}

/* Once the subscription is lost, a cached answer is served at most redis_stale_s more. */
static void stale_bound(bool hang)
{
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_stale_s = 1;
    iam_client *a = ready_client(&o);
    char *t1 = token("stale-user", NULL);
    assert_status(resolve(a, t1, "stale-user"), IAM_OK);
    long long t0 = rs_mono_ms();
    if (hang)
        assert_int_equal(rs_pause(p), 0);
    else
        assert_int_equal(rs_stop(p), 0);
    /* generous: 1 s of staleness + detection + slack */
    long long limit = hang ? 10000 : 6000;
    iam_status st = IAM_OK;
    while (rs_mono_ms() - t0 < limit && (st = resolve(a, t1, NULL)) == IAM_OK)
        rs_sleep_ms(50);
    if (st == IAM_OK)
        fail_msg("a cached answer was still served %lld ms after the server %s (redis_stale_s 1)",
                 rs_mono_ms() - t0, hang ? "hung" : "stopped");
    assert_status(st, IAM_E_UNAVAILABLE);
    if (hang)
        assert_int_equal(rs_resume(p), 0);
    else
        assert_int_equal(rs_restart(p), 0);
    if (!WAIT_UNTIL(resolve_quiet(a, t1, NULL) == IAM_OK, 15000))
        fail_msg("not served again after the server came back");
    free(t1);
}

static void test_stale_bound_after_stop(void **state)
{
    (void)state;
    stale_bound(false);
}

static void test_stale_bound_when_hung(void **state)
{
    (void)state;
    stale_bound(true);
}

/* ================================================================ URLs */

static void check_url_works(rs_server *p, const char *url, int db)
{
    iam_client_options o;
    redis_opts(&o, url);
    iam_client *a = ready_client(&o);
    char *t = token("url-user", NULL);
    assert_int_equal(rs_select(p, db), 0);
    free(resolve_and_record(p, a, t, "url-user"));
    assert_int_equal(stats(a).redis_errors, 0);
    assert_int_equal(rs_select(p, 0), 0);
    free(t);
}

static void test_url_password(void **state)
{
    (void)state;
    rs_options ro = {.password = "s3cr3t-pw"};
    rs_server *p = server_private(&ro);
    char *u1 = xprintf("redis://:s3cr3t-pw@127.0.0.1:%d", rs_port(p));
    char *u2 = xprintf("redis://default:s3cr3t-pw@127.0.0.1:%d/0", rs_port(p));
    check_url_works(p, u1, 0);
    check_url_works(p, u2, 0);
    rs_options ro2 = {.password = "p@ss:w/rd%x"};
    rs_server *p2 = server_private(&ro2);
    char *u3 = xprintf("redis://:p%%40ss%%3Aw%%2Frd%%25x@127.0.0.1:%d/1", rs_port(p2));
    check_url_works(p2, u3, 1);
    free(u1);
    free(u2);
    free(u3);
}

/* A wrong or missing password: the client is created and works locally (refusals, and
 * fail-open acceptance); fail-closed answers UNAVAILABLE; Redis errors are counted. */
static void test_url_wrong_password(void **state)
{
    (void)state;
    rs_options ro = {.password = "s3cr3t-pw"};
    rs_server *p = server_private(&ro);
    char *urls[] = {xprintf("redis://:wrong-pw@127.0.0.1:%d", rs_port(p)),
                    xprintf("redis://127.0.0.1:%d", rs_port(p))};
    for (int i = 0; i < 2; i++) {
        iam_client_options o;
        redis_opts(&o, urls[i]);
        o.redis_timeout_ms = FAIL_TIMEOUT_MS;
        iam_client *a = client_new(&o);
        o.revocation_fail_open = true;
        iam_client *open = client_new(&o);
        char *t = token("pw-user", NULL);
        assert_status(resolve(a, t, NULL), IAM_E_UNAVAILABLE);
        assert_status(resolve(open, t, "pw-user"), IAM_OK);
        char *c = claims("pw-user", NULL, now_s() + 600, NULL, NULL);
        char *forged = sign(c, g_other_key);
        free(c);
        assert_status(resolve(a, forged, NULL), IAM_E_BAD_SIGNATURE);
        if (!WAIT_UNTIL(stats(a).redis_errors >= 1, WAIT_MS))
            fail_msg("%s: no redis_errors counted", i ? "no password" : "wrong password");
        if (i == 1) {
            /* Without a password the command connection is up (nothing to refuse until a
             * command), so a blocking call tries the lane, whose PING gets NOAUTH: the caller
             * is told that Redis answered an error, not that it could not be reached (a user
             * looking for a network fault would miss the missing password). */
            if (!WAIT_UNTIL(stats(a).redis_connected, WAIT_MS))
                fail_msg("no password: the command connection never came up");
            rs_sleep_ms(300); /* past the lane's backoff from the first call */
            char *t2 = token("pw-user", NULL);
            iam_user *u = NULL;
            iam_error e = {0};
            assert_status(iam_client_resolve(a, t2, strlen(t2), NULL, &u, &e), IAM_E_UNAVAILABLE);
            if (!strstr(e.message, "answered an error: NOAUTH"))
                fail_msg("no password: the refusal says '%s'", e.message);
            free(t2);
        }
        assert_false(stats(a).redis_subscribed);
        free(forged);
        free(t);
        client_free(a);
        client_free(open);
        free(urls[i]);
    }
    assert_int_equal(record_count(p), 0);
}

/* /5 selects db 5: records and blacklist keys there, none in db 0. */
static void test_url_db_number(void **state)
{
    (void)state;
    char *url = xprintf("%s/5", rs_url(g_rs));
    iam_client_options o;
    redis_opts(&o, url);
    iam_client *a = ready_client(&o);
    char j2[37], j3[37], j4[37];
    char *t1 = token("db-user", NULL), *t2 = token("db-user", j2), *t3 = token("db-user", j3);
    char *t4 = token("db-user", j4);
    assert_int_equal(rs_select(g_rs, 5), 0);
    free(resolve_and_record(g_rs, a, t1, "db-user"));
    assert_int_equal(record_count(g_rs), 1);
    char *bl3 = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", j3);
    assert_int_equal(rs_set(g_rs, bl3, "1", 1, false), 0);
    assert_int_equal(rs_select(g_rs, 0), 0);
    assert_int_equal(record_count(g_rs), 0);
    char *bl2 = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", j2);
    assert_int_equal(rs_set(g_rs, bl2, "1", 1, false), 0); /* db 0: not this client's */
    assert_status(resolve(a, t2, "db-user"), IAM_OK);
    assert_status(resolve(a, t3, NULL), IAM_E_REVOKED);
    assert_status(revoke_token(a, t4), IAM_OK);
    char *bl4 = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", j4);
    assert_int_equal(rs_exists(g_rs, bl4), 0);
    assert_int_equal(rs_select(g_rs, 5), 0);
    assert_int_equal(rs_exists(g_rs, bl4), 1);
    assert_int_equal(rs_select(g_rs, 0), 0);
    /* a keyless client on db 6 does not see db 5's record; one on db 5 does */
    char *url6 = xprintf("%s/6", rs_url(g_rs));
    keyless_opts(&o, url6);
    iam_client *b6 = ready_client(&o);
    assert_status(resolve(b6, t1, NULL), IAM_E_UNKNOWN_KEY);
    keyless_opts(&o, url);
    iam_client *b5 = ready_client(&o);
    assert_status(resolve(b5, t1, "db-user"), IAM_OK);
    free(url6);
    free(bl2);
    free(bl3);
    free(bl4);
    free(t1);
    free(t2);
    free(t3);
    free(t4);
    free(url);
}

static void test_url_unix_socket(void **state)
{
    (void)state;
    rs_options ro = {.unix_socket = true};
    rs_server *p = server_private(&ro);
    char *u1 = xprintf("unix://%s?db=3", rs_socket_path(p));
    check_url_works(p, u1, 3);
    char *u0 = xprintf("unix://%s", rs_socket_path(p));
    check_url_works(p, u0, 0);
    rs_options ro2 = {.unix_socket = true, .password = "sockpw-1"};
    rs_server *p2 = server_private(&ro2);
    char *u2 = xprintf("unix://%s?db=2&password=sockpw-1", rs_socket_path(p2));
    check_url_works(p2, u2, 2);
    free(u0);
    free(u1);
    free(u2);
}

/* A healthy Redis: the very first resolution after creation is answered (the client does
 * not answer UNAVAILABLE while it is still connecting). */
static void test_first_resolve_right_after_creation(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.redis_timeout_ms = 0; /* the default */
    iam_client *a = client_new(&o);
    char *t = token("first-user", NULL);
    assert_status(resolve(a, t, "first-user"), IAM_OK);
    free(t);
}

/* ------------------------------------------------------------ the direct lane */

typedef struct async_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    iam_status st;
} async_wait;

static void on_async_done(void *arg, iam_status st, iam_user *u, const iam_error *e)
{
    (void)e;
    async_wait *w = arg;
    if (u)
        iam_user_release(u);
    pthread_mutex_lock(&w->mu);
    w->st = st;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static iam_status resolve_async_wait(iam_client *c, const char *tok)
{
    async_wait w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    assert_int_equal(iam_client_resolve_async(c, tok, strlen(tok), NULL, on_async_done, &w), IAM_OK);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return w.st;
}

/* A blocking call makes its round trip itself (counted in redis_direct) and answers exactly
 * as the I/O thread does: a record hit, a miss, a revoked token; an asynchronous call never
 * uses the lane; redis_direct_max -1 turns it off. */
static void test_direct_lane_answers(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    o.redis_direct_max = 0; /* the default: on */
    o.cache_disabled = true;
    iam_client *direct = ready_client(&o);
    o.redis_direct_max = -1;
    iam_client *io = ready_client(&o);
    char j2[37];
    char *t1 = token("dl-user", NULL), *t2 = token("dl-user", j2), *t3 = token("dl-none", NULL);
    free(resolve_and_record(g_rs, a, t1, "dl-user"));
    free(resolve_and_record(g_rs, a, t2, "dl-user"));
    char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", j2);
    assert_int_equal(rs_set(g_rs, bl, "1", 1, false), 0);
    iam_client *both[2] = {direct, io};
    for (int i = 0; i < 2; i++) {
        assert_status(resolve(both[i], t1, "dl-user"), IAM_OK);
        assert_status(resolve(both[i], t2, NULL), IAM_E_REVOKED);
        assert_status(resolve(both[i], t3, NULL), IAM_E_UNKNOWN_KEY);
    }
    /* (the revoked answer queues a DEL of its record: the call right after it may find that
     * DEL unanswered and go through the I/O thread) */
    iam_client_stats s = stats(direct);
    if (s.redis_direct < 2)
        fail_msg("the direct lane served %llu of 3 blocking round trips", (unsigned long long)s.redis_direct);
    assert_int_equal(s.redis_hits, 1);
    assert_int_equal(s.redis_revoked, 1);
    assert_int_equal(stats(io).redis_direct, 0);
    assert_int_equal(stats(io).redis_hits, 1);
    /* asynchronous resolutions go through the I/O thread */
    uint64_t before = stats(direct).redis_direct;
    assert_status(resolve_async_wait(direct, t1), IAM_OK);
    assert_int_equal(stats(direct).redis_direct, before);
    /* iam_client_cached and iam_client_revoke_token wait too: on the lane */
    o.cache_disabled = false;
    o.redis_direct_max = 0;
    iam_client *c = ready_client(&o);
    assert_status(cached(c, t1, "dl-user"), IAM_OK);
    assert_status(cached(c, t2, NULL), IAM_E_REVOKED);
    assert_status(revoke_token(c, t3), IAM_OK);
    assert_int_equal(stats(c).redis_direct, 3);
    free(bl);
    free(t1);
    free(t2);
    free(t3);
}

/* The lane never overtakes commands sent earlier through the I/O thread: a record deleted
 * by an invalidation is not read back by the next blocking call while the DEL waits at the
 * server (CLIENT PAUSE … WRITE holds writes, serves reads). Before the in-flight gate, the
 * GET on the lane's own connection answered from the record the DEL was about to remove. */
static void test_direct_lane_never_overtakes(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    o.cache_disabled = true;
    o.redis_direct_max = 0;
    iam_client *b = ready_client(&o);
    char *t1 = token("ov-user", NULL);
    char *key = resolve_and_record(g_rs, a, t1, "ov-user");
    assert_status(resolve(b, t1, "ov-user"), IAM_OK); /* the lane's connection is open */
    assert_true(stats(b).redis_direct >= 1);
    redisReply *r = rs_command(g_rs, "CLIENT PAUSE 500 WRITE");
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("CLIENT PAUSE … WRITE: %s", r->str);
    freeReplyObject(r);
    iam_client_invalidate_token(b, t1, strlen(t1)); /* DEL queued on the command connection */
    assert_status(resolve(b, t1, NULL), IAM_E_UNKNOWN_KEY);
    assert_int_equal(rs_exists(g_rs, key), 0);
    free(key);
    free(t1);
}

/* After a restart the lane's idle connections are dead: the first blocking call once the
 * tier is connected again must still answer (a fresh connection, in the time left), not
 * fail. Before the retry it answered UNAVAILABLE. */
static void lane_after_restart(bool unix_socket)
{
    rs_options ro = {.unix_socket = unix_socket};
    rs_server *p = server_private(&ro);
    char *url = unix_socket ? xprintf("unix://%s", rs_socket_path(p)) : xstrdup(rs_url(p));
    int pipes0 = atomic_load(&g_sigpipes);
    iam_client_options o;
    redis_opts(&o, url);
    o.redis_direct_max = 0;
    o.cache_disabled = true;
    iam_client *a = ready_client(&o);
    char *t1 = token("dr-user", NULL), *t2 = token("dr-user", NULL);
    assert_status(resolve(a, t1, "dr-user"), IAM_OK); /* verify + EXISTS, on the lane */
    uint64_t d0 = stats(a).redis_direct;
    assert_true(d0 >= 1);
    assert_int_equal(rs_stop(p), 0);
    if (!WAIT_UNTIL(!stats(a).redis_connected, WAIT_MS))
        fail_msg("the loss was not noticed");
    assert_int_equal(rs_restart(p), 0);
    /* the lane needs the command connection back (not the subscription) */
    if (!WAIT_UNTIL(stats(a).redis_connected, WAIT_MS))
        fail_msg("the command connection did not come back");
    /* Over a unix socket, the pooled connection's first write after the restart fails with
     * EPIPE at once (over TCP the write passes and the read fails): a write() there raised
     * SIGPIPE, whose default action kills the host. */
    assert_status(resolve(a, t2, "dr-user"), IAM_OK);
    assert_true(stats(a).redis_direct > d0);
    if (atomic_load(&g_sigpipes) != pipes0)
        fail_msg("SIGPIPE raised %d times: the lane wrote to a closed socket without MSG_NOSIGNAL",
                 atomic_load(&g_sigpipes) - pipes0);
    free(t1);
    free(t2);
    free(url);
}

static void test_direct_lane_after_restart(void **state)
{
    (void)state;
    lane_after_restart(false);
}

static void test_direct_lane_after_restart_unix(void **state)
{
    (void)state;
    lane_after_restart(true);
}

/* A connection reset (an RST: a crashed server, a middlebox) is noticed at once, on both
 * connections, and both come back by themselves. libuv reports a socket error as a poll
 * error, which hiredis 0.14's own libuv adapter drops without telling hiredis: the reset
 * connection then looked alive until a command timed out (the subscription: until its
 * heartbeat, 1 s + 4 x redis_timeout_ms), and a connect refused asynchronously hung until
 * the connect limit (4 x redis_timeout_ms). No command is sent here, so nothing but the
 * error itself can reveal the reset. */
static void test_reset_noticed_at_once(void **state)
{
    (void)state;
    tcp_proxy *x = tp_start(rs_port(g_rs));
    assert_non_null(x);
    char *url = xprintf("redis://127.0.0.1:%d", tp_port(x));
    iam_client_options o;
    redis_opts(&o, url); /* redis_timeout_ms 2000: the limits above are 8 and 9 s */
    iam_client *a = ready_client(&o);
    uint64_t r0 = stats(a).redis_reconnects, e0 = stats(a).redis_errors;
    int accepted0 = tp_accepted(x);
    assert_true(tp_reset_all(x) >= 2); /* the command connection and the subscription */
    /* both reconnect through the relay, long before either limit */
    bool back = WAIT_UNTIL(tp_accepted(x) >= accepted0 + 2, 4000);
    iam_client_stats s = stats(a);
    if (!back)
        fail_msg("a reset went unnoticed for 4 s: reconnects %llu -> %llu, errors %llu -> %llu",
                 (unsigned long long)r0, (unsigned long long)s.redis_reconnects,
                 (unsigned long long)e0, (unsigned long long)s.redis_errors);
    assert_true(s.redis_reconnects >= r0 + 2);
    assert_true(s.redis_errors >= e0 + 2);
    wait_ready(a);
    char *t = token("rst-user", NULL);
    assert_status(resolve(a, t, "rst-user"), IAM_OK);
    free(t);
    client_free(a);
    tp_free(x);
    free(url);
}

/* A server that resets every connection as it is accepted: each connect attempt fails at
 * once and the next follows its backoff (50 ms doubling to 2 s). A refusal reported as a
 * poll error used to be dropped (see test_reset_noticed_at_once), so an attempt hung until
 * the connect limit (8 s here) and a restarted server waited that long to be used. */
static void test_refused_connects_fail_at_once(void **state)
{
    (void)state;
    tcp_proxy *x = tp_start(rs_port(g_rs));
    assert_non_null(x);
    tp_refuse(x, 1);
    char *url = xprintf("redis://127.0.0.1:%d", tp_port(x));
    iam_client_options o;
    redis_opts(&o, url);
    iam_client *a = client_new(&o);
    /* two connections, each retrying at 25-50, 50-100, 100-200, 200-400 ms ...: at least
     * three attempts in 4 s unless one hangs */
    if (!WAIT_UNTIL(tp_accepted(x) >= 6, 4000))
        fail_msg("connect attempts hang: %d accepted and reset in 4 s", tp_accepted(x));
    assert_false(stats(a).redis_connected);
    tp_refuse(x, 0);
    wait_ready(a);
    char *t = token("ref-user", NULL);
    assert_status(resolve(a, t, "ref-user"), IAM_OK);
    free(t);
    client_free(a);
    tp_free(x);
    free(url);
}

/* Host signals landing on calling threads while they wait on the lane (a profiler's
 * SIGPROF, any handler): poll() and connect's poll return EINTR, whatever SA_RESTART says.
 * Redis is healthy, so no call may fail; before, each interrupted wait was taken for a
 * failure (UNAVAILABLE, and the lane backed off). */
typedef struct storm {
    iam_client *c;
    char **toks;
    int ntok;
    atomic_bool stop;
    atomic_int calls, failed;
    pthread_t th[4];
} storm;

static void on_usr2(int sig)
{
    (void)sig;
}

static void *storm_caller(void *arg)
{
    storm *w = arg;
    for (int i = 0; !atomic_load(&w->stop); i++) {
        iam_user *u = NULL;
        iam_error e = {0};
        const char *t = w->toks[i % w->ntok];
        iam_status st = iam_client_resolve(w->c, t, strlen(t), NULL, &u, &e);
        if (st == IAM_OK)
            iam_user_release(u);
        else
            atomic_fetch_add(&w->failed, 1);
        atomic_fetch_add(&w->calls, 1);
    }
    return NULL;
}

static void test_direct_lane_host_signals(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, &old);
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    o.redis_direct_max = 0;
    o.cache_disabled = true; /* every call asks Redis (EXISTS), on the lane */
    iam_client *a = ready_client(&o);
    storm w = {.c = a, .ntok = 8};
    char *toks[8];
    for (int i = 0; i < 8; i++)
        toks[i] = token("sig-user", NULL);
    w.toks = toks;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&w.th[i], NULL, storm_caller, &w), 0);
    long long end = rs_mono_ms() + 1500;
    int sent = 0;
    while (rs_mono_ms() < end) {
        for (int i = 0; i < 4; i++)
            if (pthread_kill(w.th[i], SIGUSR2) == 0)
                sent++;
        struct timespec pause = {0, 100 * 1000};
        nanosleep(&pause, NULL);
    }
    atomic_store(&w.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(w.th[i], NULL);
    sigaction(SIGUSR2, &old, NULL);
    iam_client_stats s = stats(a);
    for (int i = 0; i < 8; i++)
        free(toks[i]);
    if (atomic_load(&w.failed))
        fail_msg("%d of %d calls failed on a healthy Redis while the callers took %d signals "
                 "(lane round trips %llu)", atomic_load(&w.failed), atomic_load(&w.calls), sent,
                 (unsigned long long)s.redis_direct);
    assert_true(s.redis_direct > 0);
}

/* A client (L1 off, short deadline) whose "Redis" is the relay answering every command
 * with answer; returned once both its connections were answered. */
static iam_client *fake_server_client(const char *answer, int64_t direct_max, tcp_proxy **xp, char **urlp)
{
    tcp_proxy *x = tp_start(rs_port(g_rs));
    assert_non_null(x);
    tp_answer(x, answer);
    char *url = xprintf("redis://127.0.0.1:%d", tp_port(x));
    iam_client_options o;
    redis_opts(&o, url);
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_direct_max = direct_max;
    o.cache_disabled = true;
    iam_client *a = client_new(&o);
    if (!WAIT_UNTIL(tp_accepted(x) >= 2, WAIT_MS))
        fail_msg("the client never connected");
    *xp = x;
    *urlp = url;
    return a;
}

/* A server that is not Redis (or a hostile one) announcing an enormous array: hiredis 0.14
 * allocates the element table when the header arrives (*2000000000: 16 GB) before a single
 * element does. Replies are bounded (REDIS_MAX_REPLY_ELEMENTS): such a reply fails its
 * connection at once, calls fail closed within their deadline, and freeing the client is
 * quick. Both ways in: the lane (PING on a fresh connection) and the I/O thread. */
static void huge_array_reply(int64_t direct_max)
{
    char *url = NULL;
    tcp_proxy *x = NULL;
    iam_client *a = fake_server_client("*2000000000\r\n", direct_max, &x, &url);
    char *t = token("huge-user", NULL);
    for (int i = 0; i < 3; i++) {
        long long took = 0;
        iam_status st = resolve_quiet(a, t, &took);
        assert_status(st, IAM_E_UNAVAILABLE);
        if (took > FAIL_TIMEOUT_MS + 2000)
            fail_msg("a call took %lld ms against a %d ms deadline", took, FAIL_TIMEOUT_MS);
        rs_sleep_ms(100);
    }
    long long t0 = rs_mono_ms();
    client_free(a);
    long long freed = rs_mono_ms() - t0;
    if (freed > BOUND_MS)
        fail_msg("iam_client_free took %lld ms", freed);
    free(t);
    tp_free(x);
    free(url);
}

/* A server that answers every command twice. On an asynchronous connection hiredis 0.14
 * asserts on a reply no command waits for (the host aborted); on the lane the extra reply
 * would be read as the answer to the next command. Either way the connection is dropped and
 * calls fail closed. */
static void extra_reply(int64_t direct_max)
{
    char *url = NULL;
    tcp_proxy *x = NULL;
    /* +OK is not an answer to EXISTS: fail-closed */
    iam_client *a = fake_server_client("+OK\r\n+OK\r\n", direct_max, &x, &url);
    char *t = token("extra-user", NULL);
    for (int i = 0; i < 3; i++) {
        assert_status(resolve_quiet(a, t, NULL), IAM_E_UNAVAILABLE);
        rs_sleep_ms(100);
    }
    client_free(a);
    free(t);
    tp_free(x);
    free(url);
}

static void test_extra_reply_drops_connection(void **state)
{
    (void)state;
    extra_reply(0);
    extra_reply(-1);
}

/* A server that answers, and 50 ms later answers again: the extra arrives after the lane has
 * read what it asked for and pooled the connection. The next call on that connection read
 * it as its own EXISTS answer (a valid token answered revoked). A pooled connection with
 * anything to read before it is used (stray bytes, or the EOF of a restarted server) is
 * closed and a fresh one opened instead. */
static void test_direct_lane_late_extra_reply(void **state)
{
    (void)state;
    char *url = NULL;
    tcp_proxy *x = NULL;
    iam_client *a = fake_server_client(":0\r\n", 0, &x, &url); /* EXISTS: not revoked */
    tp_answer_late(x, ":1\r\n", 50);                       /* then "revoked", late */
    int wrong = 0;
    for (int i = 0; i < 5; i++) {
        char *t = token("late-user", NULL);
        iam_status st = resolve_quiet(a, t, NULL);
        if (st != IAM_OK)
            wrong++;
        free(t);
        rs_sleep_ms(120); /* the late extras arrive on the pooled connection */
    }
    uint64_t direct = stats(a).redis_direct;
    client_free(a);
    tp_free(x);
    free(url);
    if (wrong)
        fail_msg("%d of 5 calls were answered from a stray reply (lane round trips %llu)", wrong,
                 (unsigned long long)direct);
    /* the lane answered (not every call: the I/O thread's connection gets late extras too,
     * after its record stores, and is dropped for them, which closes the lane meanwhile) */
    assert_true(direct >= 1);
}

/* A server answering the subscription's SUBSCRIBE with arrays that are not pub/sub replies.
 * hiredis marks a connection subscribed when SUBSCRIBE is sent and hands every later array
 * to its pub/sub dispatch, which asserts on the shape (the host aborted). Each must only
 * drop the connection. */
static void test_malformed_pubsub_replies(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "*1\r\n$9\r\nsubscribe\r\n",                             /* too short */
        "*0\r\n",                                                    /* empty */
        "*2\r\n:1\r\n:2\r\n",                                      /* integers for names */
        "*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n",               /* nil channel */
        "*3\r\n*1\r\n:1\r\n$1\r\nc\r\n$1\r\nx\r\n",                /* nested kind */
        "*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n$1\r\nx\r\n",       /* string count */
        "*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$1\r\nc\r\n$1\r\nx\r\n", /* a pattern's */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *url = NULL;
        tcp_proxy *x = NULL;
        iam_client *a = fake_server_client(cases[i], -1, &x, &url);
        rs_sleep_ms(200); /* the answers are read on the I/O thread */
        char *t = token("push-user", NULL);
        assert_status(resolve_quiet(a, t, NULL), IAM_E_UNAVAILABLE);
        assert_false(stats(a).redis_subscribed);
        client_free(a);
        free(t);
        tp_free(x);
        free(url);
    }
}

static void test_huge_array_reply_refused(void **state)
{
    (void)state;
    huge_array_reply(0);  /* the lane */
    huge_array_reply(-1); /* the I/O thread */
}

/* A dual-stack name (::1 listed before 127.0.0.1) whose ::1 drops SYNs, Redis on 127.0.0.1:
 * the lane connects like hiredis does for the I/O thread (IPv4 first) and no address may
 * spend the whole deadline, so every call is answered. The lane's first own connect tried
 * ::1 first with the whole deadline: 6 of 20 calls failed (unavailable). Runs in a child
 * with a private /etc/hosts (a mount namespace: root only, skipped otherwise). */
static int dual_stack_child(void)
{
    int r = nh_private_hosts("::1 iam-dual.test\n127.0.0.1 iam-dual.test\n");
    if (r != 0)
        return r > 0 ? 77 : 10;
    if (nh_v6_blackhole(rs_port(g_rs)) < 0)
        return 77; /* no IPv6 loopback here */
    char *url = xprintf("redis://iam-dual.test:%d", rs_port(g_rs));
    iam_client_options o;
    redis_opts(&o, url);
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_direct_max = 0;
    o.cache_disabled = true;
    iam_client *a = NULL;
    if (iam_client_new(&o, &a, NULL) != IAM_OK)
        return 11;
    long long end = rs_mono_ms() + WAIT_MS;
    while (!stats(a).redis_connected && rs_mono_ms() < end)
        rs_sleep_ms(5);
    int failed = 0;
    for (int i = 0; i < 20; i++) {
        char *t = token("dual-user", NULL);
        if (resolve_quiet(a, t, NULL) != IAM_OK)
            failed++;
        free(t);
        rs_sleep_ms(50); /* lets the lane's backoff (if any) pass */
    }
    uint64_t direct = stats(a).redis_direct;
    iam_client_free(a);
    free(url);
    if (failed)
        fprintf(stderr, "dual-stack: %d of 20 calls failed (lane round trips %llu)\n", failed,
                (unsigned long long)direct);
    return failed ? 20 : direct > 0 ? 0 : 21;
}

static void test_direct_lane_dual_stack_name(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(dual_stack_child());
    int status = 0;
    long long end = rs_mono_ms() + 60000;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && rs_mono_ms() < end)
        rs_sleep_ms(20);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the dual-stack child hung");
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("    (skipped: no mount namespace or no IPv6 loopback here)\n");
        skip();
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("dual-stack name: the child %s %d", WIFEXITED(status) ? "exited" : "died of signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* A hung server: a blocking call on the lane ends by the deadline (fail-closed), and the lane
 * then stays closed for its backoff (later calls fail at once through the I/O thread). */
static void test_direct_lane_hung_deadline(void **state)
{
    (void)state;
    rs_server *p = server_private(NULL);
    iam_client_options o;
    redis_opts(&o, rs_url(p));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(p)); /* a reader only: no write of its own left in flight */
    o.redis_timeout_ms = FAIL_TIMEOUT_MS;
    o.redis_direct_max = 0;
    o.cache_disabled = true;
    iam_client *b = ready_client(&o);
    char *t1 = token("dh-user", NULL), *t2 = token("dh-user", NULL);
    free(resolve_and_record(p, a, t1, "dh-user"));
    free(resolve_and_record(p, a, t2, "dh-user"));
    assert_status(resolve(b, t1, "dh-user"), IAM_OK);
    uint64_t d0 = stats(b).redis_direct;
    assert_int_equal(rs_pause(p), 0);
    long long took = 0;
    iam_status st = resolve_quiet(b, t2, &took);
    iam_status st2 = resolve_quiet(b, t2, NULL); /* the lane is in backoff: the I/O thread */
    assert_int_equal(rs_resume(p), 0);
    assert_status(st, IAM_E_UNAVAILABLE);
    assert_status(st2, IAM_E_UNAVAILABLE);
    assert_true(stats(b).redis_direct == d0 + 1);
    if (took > FAIL_TIMEOUT_MS + 1000)
        fail_msg("a blocking call on a hung server took %lld ms (deadline %d ms)", took, FAIL_TIMEOUT_MS);
    if (!WAIT_UNTIL(resolve_quiet(b, t2, NULL) == IAM_OK, 15000))
        fail_msg("service did not resume after SIGCONT");
    free(t1);
    free(t2);
}

/* Many threads, a pool of two: calls that find every connection busy go through the I/O
 * thread; every answer is right. */
typedef struct lane_worker {
    iam_client *c;
    char **tokens;
    int n;
    atomic_int *wrong;
} lane_worker;

static void *lane_worker_run(void *arg)
{
    lane_worker *w = arg;
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < w->n; i++) {
            iam_user *u = NULL;
            iam_status st = iam_client_resolve(w->c, w->tokens[i], strlen(w->tokens[i]), NULL, &u, NULL);
            iam_status want = i % 3 == 2 ? IAM_E_REVOKED : IAM_OK;
            if (st != want || (u && strcmp(iam_user_id(u), "lane-user") != 0))
                atomic_fetch_add(w->wrong, 1);
            if (u)
                iam_user_release(u);
        }
    return NULL;
}

static void test_direct_lane_pool_threads(void **state)
{
    (void)state;
    iam_client_options o;
    redis_opts(&o, rs_url(g_rs));
    iam_client *a = ready_client(&o);
    keyless_opts(&o, rs_url(g_rs));
    o.cache_disabled = true;
    o.redis_direct_max = 2;
    iam_client *b = ready_client(&o);
    enum { NTOK = 9, NTHREADS = 6 };
    char *toks[NTOK];
    for (int i = 0; i < NTOK; i++) {
        char jti[37];
        toks[i] = token("lane-user", jti);
        free(resolve_and_record(g_rs, a, toks[i], "lane-user"));
        if (i % 3 == 2) {
            char *bl = xprintf(IAM_REDIS_BLACKLIST_PREFIX "%s", jti);
            assert_int_equal(rs_set(g_rs, bl, "1", 1, false), 0);
            free(bl);
        }
    }
    atomic_int wrong = 0;
    pthread_t th[NTHREADS];
    lane_worker w = {b, toks, NTOK, &wrong};
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, lane_worker_run, &w), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&wrong), 0);
    iam_client_stats s = stats(b);
    assert_true(s.redis_direct >= 1);
    assert_int_equal(s.redis_errors, 0);
    for (int i = 0; i < NTOK; i++)
        free(toks[i]);
}

static void test_no_sigpipe(void **state)
{
    (void)state;
    if (atomic_load(&g_sigpipes))
        fail_msg("SIGPIPE raised %d times in the process (the library wrote to a closed socket "
                 "without MSG_NOSIGNAL / SIGPIPE handling)",
                 atomic_load(&g_sigpipes));
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_rediss_refused),
        T(test_redis_url_malformed),
        T(test_cache_secret_rules),
        T(test_redis_option_ranges),
        T(test_record_round_trip),
        T(test_record_ttl_bounded_by_cache_ttl),
        T(test_no_record_unknown_key),
        T(test_no_token_bytes_in_redis),
        T(test_identifiers_are_strings_in_record),
        T(test_tamper_flipped_bytes),
        T(test_tamper_swapped_records),
        T(test_tamper_replayed_record),
        T(test_record_other_context),
        T(test_garbage_records),
        T(test_wrong_type_record),
        T(test_local_only_with_redis_refused),
        T(test_record_of_expired_token),
        T(test_record_not_trusted_when_revoked),
        T(test_invalidation_deletes_shared_records),
        T(test_cached_reads_shared_record),
        T(test_cached_honours_local_revocation),
        T(test_refusals_not_written),
        T(test_revoked_before_resolution),
        T(test_revocation_appears_in_flight),
        T(test_platform_logout_in_flight),
        T(test_invalidation_heard_during_local_verification),
        T(test_long_jti_checked),
        T(test_revoke_token_effects),
        T(test_revoke_token_edge_cases),
        T(test_invalidations_publish),
        T(test_invalidation_heard_by_second_client),
        T(test_platform_message_format),
        T(test_integer_user_id),
        T(test_jti_token_all_messages),
        T(test_malformed_messages_ignored),
        T(test_long_user_id_message),
        T(test_on_invalidation_kinds),
        T(test_stopped_fail_closed),
        T(test_stopped_fail_open),
        T(test_fail_open_answer_rechecked),
        T(test_answers_cached_while_deaf_are_capped),
        T(test_unroutable_host),
        T(test_redis_absent_at_start),
        T(test_hung_server),
        T(test_restart_resumes),
        T(test_stale_bound_after_stop),
        T(test_stale_bound_when_hung),
        T(test_missed_invalidation_during_outage),
        T(test_url_password),
        T(test_url_wrong_password),
        T(test_url_db_number),
        T(test_url_unix_socket),
        T(test_first_resolve_right_after_creation),
        T(test_direct_lane_answers),
        T(test_direct_lane_never_overtakes),
        T(test_direct_lane_after_restart),
        T(test_direct_lane_after_restart_unix),
        T(test_reset_noticed_at_once),
        T(test_refused_connects_fail_at_once),
        T(test_direct_lane_host_signals),
        T(test_direct_lane_dual_stack_name),
        T(test_huge_array_reply_refused),
        T(test_extra_reply_drops_connection),
        T(test_malformed_pubsub_replies),
        T(test_direct_lane_late_extra_reply),
        T(test_direct_lane_hung_deadline),
        T(test_direct_lane_pool_threads),
        T(test_no_sigpipe),
    };
    /* IAM_TEST_FILTER=test_name (a glob) runs only the matching tests (reproductions). */
    if (getenv("IAM_TEST_FILTER"))
        cmocka_set_test_filter(getenv("IAM_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
