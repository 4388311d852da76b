/*
 * bench_redis.c — the Redis tier against bare hiredis, measured in the same run on a real
 * redis-server this program starts on a free loopback port.
 *
 * Latency (median of interleaved batches, ns per call, one thread):
 *   - Redis-hit path: iam_client_resolve of a token this client holds no key for, its L1
 *     cache off, answered from the shared record (GET record + EXISTS blacklist:jti in one
 *     round trip, MAC check, claims parse), through the client's I/O thread;
 *   - bare hiredis GET: one blocking redisCommand round trip of the same record key;
 *   - bare hiredis GET + EXISTS pipelined: the same two commands as the client sends;
 *   - key-holder miss: local HS256 verification + EXISTS round trip (L1 off).
 * Throughput: N asynchronous resolutions of distinct tokens in flight at once (pipelined
 * through the I/O thread) against N pipelined bare GET+EXISTS pairs.
 *
 *   bench_redis [--quick] [--unix]
 *
 * --unix: every connection (the clients' and the bare one) over the server's unix socket
 * instead of loopback TCP — a shorter round trip, so the library's own work weighs more.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "bench_util.h"
#include "cache/record.h"
#include "iamclient.h"
#include "mint.h"
#include "net/loop.h"
#include "redis_server.h"

static const char SECRET[] = "bench-redis-hmac-secret-0123456789abcdefghij";
static const char CACHE_SECRET[] = "bench-redis-cache-secret-0123456789abcdefghij";

#define TOKENS 2000

static char *g_tokens[TOKENS];
static size_t g_lens[TOKENS];

static void die(const char *what)
{
    fprintf(stderr, "bench_redis: %s\n", what);
    exit(1);
}

static iam_client *make_client(const char *url, bool holds_key, iam_keyset *other, bool direct)
{
    iam_client_options o;
    iam_client_options_init(&o);
    o.redis_url = url;
    o.cache_secret = CACHE_SECRET;
    if (holds_key)
        o.jwt_secret = SECRET;
    else
        o.keys = other; /* an RSA key only: HS256 tokens cannot be verified here */
    o.redis_timeout_ms = 2000;
    o.cache_disabled = true;
    o.redis_direct_max = direct ? 0 : -1; /* the default lane, or only the I/O thread */
    iam_client *c = NULL;
    iam_error e = {0};
    if (iam_client_new(&o, &c, &e) != IAM_OK) {
        fprintf(stderr, "bench_redis: iam_client_new: %s\n", e.message);
        exit(1);
    }
    return c;
}

static void resolve_ok(iam_client *c, size_t i)
{
    iam_user *u = NULL;
    iam_error e = {0};
    iam_status st = iam_client_resolve(c, g_tokens[i], g_lens[i], NULL, &u, &e);
    if (st != IAM_OK) {
        fprintf(stderr, "bench_redis: resolve: %s (%s)\n", iam_status_name(st), e.message);
        exit(1);
    }
    iam_user_release(u);
}

typedef struct kase {
    const char *what;
    double samples[64];
    int n;
} kase;

static double median(kase *k)
{
    qsort(k->samples, (size_t)k->n, sizeof k->samples[0], bench_cmp_double);
    return k->samples[k->n / 2];
}

typedef struct async_count {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t done, failed;
} async_count;

static void noop(void *arg)
{
    (void)arg;
}

static void on_async(void *arg, iam_status st, iam_user *u, const iam_error *e)
{
    (void)e;
    async_count *a = arg;
    iam_user_release(u);
    pthread_mutex_lock(&a->lock);
    a->done++;
    if (st != IAM_OK)
        a->failed++;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

int main(int argc, char **argv)
{
    bool quick = false, over_unix = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--unix") == 0)
            over_unix = true;
        else
            die("usage: bench_redis [--quick] [--unix]");
    }
    int batches = quick ? 5 : 31;
    size_t per_batch = quick ? 200 : 1000;
    rs_options ro = {.unix_socket = over_unix};
    rs_server *rs = rs_start(&ro);
    if (!rs)
        die("cannot start redis-server (is it installed?)");
    char unix_url[256];
    snprintf(unix_url, sizeof unix_url, "unix://%s", over_unix ? rs_socket_path(rs) : "");
    const char *url = over_unix ? unix_url : rs_url(rs);
    mint_key *key = mint_key_hmac(SECRET, strlen(SECRET));
    mint_key *rsa = mint_key_generate("rsa2048");
    char *pem = mint_key_public_pem(rsa);
    iam_keyset *other = iam_keyset_new();
    if (!key || !rsa || !pem || !other || iam_keyset_add_pem(other, pem, strlen(pem), "bench-rsa", NULL) != IAM_OK)
        die("setup failed");
    int64_t exp = (int64_t)time(NULL) + 3600;
    for (size_t i = 0; i < TOKENS; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "%zu", 1000 + i);
        char *claims = mint_platform_claims(sub, exp);
        g_tokens[i] = mint_token("HS256", NULL, claims, key);
        g_lens[i] = strlen(g_tokens[i]);
        free(claims);
    }
    iam_client *holder = make_client(url, true, NULL, true);
    iam_client *keyless = make_client(url, false, other, true);
    iam_client *keyless_io = make_client(url, false, other, false);
    /* the key holder stores every record; wait until Redis has them all */
    for (size_t i = 0; i < TOKENS; i++)
        resolve_ok(holder, i);
    for (int tries = 0;; tries++) {
        redisReply *r = rs_command(rs, "DBSIZE");
        long long n = r ? r->integer : 0;
        freeReplyObject(r);
        if (n >= TOKENS)
            break;
        if (tries > 500)
            die("records were not stored");
        rs_sleep_ms(10);
    }
    /* the record keys, for the bare baseline (same bytes, same sizes) */
    record_keys rk;
    record_ctx ctx;
    record_keys_init(&rk, (const unsigned char *)CACHE_SECRET, strlen(CACHE_SECRET));
    record_ctx_init(&ctx, &rk, NULL, NULL);
    static char keys[TOKENS][RECORD_KEY_LEN + 1], bl[TOKENS][64];
    for (size_t i = 0; i < TOKENS; i++) {
        record_key(&rk, &ctx, g_tokens[i], g_lens[i], keys[i]);
        iam_user *u = NULL;
        iam_client_resolve(holder, g_tokens[i], g_lens[i], NULL, &u, NULL);
        snprintf(bl[i], sizeof bl[i], "blacklist:jti:%s", iam_user_jti(u));
        iam_user_release(u);
    }
    record_keys_free(&rk);
    redisContext *rc = over_unix ? redisConnectUnix(rs_socket_path(rs)) : redisConnect("127.0.0.1", rs_port(rs));
    if (!rc || rc->err)
        die("bare hiredis connect failed");

    kase k_hit = {"Redis-hit path (no key here, L1 off): iam_client_resolve, direct lane (default)", {0}, 0};
    kase k_hit_io = {"Redis-hit path as above, through the I/O thread (redis_direct_max -1)", {0}, 0};
    kase k_get = {"bare hiredis GET (blocking round trip)", {0}, 0};
    kase k_pair = {"bare hiredis GET + EXISTS pipelined", {0}, 0};
    kase k_miss = {"key holder, L1 off: HS256 verify + EXISTS round trip", {0}, 0};
    kase k_hop = {"I/O-thread handoff alone: post a no-op, wait for it (2 thread wake-ups)", {0}, 0};
    io_loop *loop = NULL;
    if (io_loop_start(&loop, NULL, NULL, 0) != IAM_OK)
        die("cannot start a loop");
    size_t at = 0;
    for (int b = 0; b < batches; b++) {
        for (int which = 0; which < 6; which++) {
            double t0 = bench_now_ns();
            for (size_t j = 0; j < per_batch; j++) {
                size_t i = (at + j) % TOKENS;
                if (which == 0) {
                    resolve_ok(keyless, i);
                } else if (which == 1) {
                    redisReply *r = redisCommand(rc, "GET %s", keys[i]);
                    if (!r || r->type != REDIS_REPLY_STRING)
                        die("bare GET failed");
                    freeReplyObject(r);
                } else if (which == 2) {
                    redisAppendCommand(rc, "GET %s", keys[i]);
                    redisAppendCommand(rc, "EXISTS %s", bl[i]);
                    void *r1 = NULL, *r2 = NULL;
                    if (redisGetReply(rc, &r1) != REDIS_OK || redisGetReply(rc, &r2) != REDIS_OK)
                        die("bare pipeline failed");
                    freeReplyObject(r1);
                    freeReplyObject(r2);
                } else if (which == 3) {
                    resolve_ok(holder, i);
                } else if (which == 5) {
                    resolve_ok(keyless_io, i);
                } else {
                    io_loop_run_sync(loop, noop, NULL);
                }
            }
            double ns = (bench_now_ns() - t0) / (double)per_batch;
            kase *k = which == 0   ? &k_hit
                      : which == 1 ? &k_get
                      : which == 2 ? &k_pair
                      : which == 3 ? &k_miss
                      : which == 4 ? &k_hop
                                   : &k_hit_io;
            k->samples[k->n++] = ns;
        }
        at += per_batch;
    }
    /* throughput: everything in flight at once */
    size_t inflight = quick ? 500 : TOKENS;
    kase k_async = {"async resolutions in flight (ops/s)", {0}, 0};
    kase k_bare = {"bare pipelined GET + EXISTS (ops/s)", {0}, 0};
    for (int b = 0; b < (quick ? 3 : 11); b++) {
        async_count a = {.done = 0};
        pthread_mutex_init(&a.lock, NULL);
        pthread_cond_init(&a.cond, NULL);
        double t0 = bench_now_ns();
        for (size_t i = 0; i < inflight; i++)
            if (iam_client_resolve_async(keyless, g_tokens[i], g_lens[i], NULL, on_async, &a) != IAM_OK)
                die("resolve_async refused");
        pthread_mutex_lock(&a.lock);
        while (a.done < inflight)
            pthread_cond_wait(&a.cond, &a.lock);
        pthread_mutex_unlock(&a.lock);
        k_async.samples[k_async.n++] = (double)inflight / ((bench_now_ns() - t0) / 1e9);
        if (a.failed)
            die("async resolutions failed");
        pthread_mutex_destroy(&a.lock);
        pthread_cond_destroy(&a.cond);
        t0 = bench_now_ns();
        for (size_t i = 0; i < inflight; i++) {
            redisAppendCommand(rc, "GET %s", keys[i]);
            redisAppendCommand(rc, "EXISTS %s", bl[i]);
        }
        for (size_t i = 0; i < 2 * inflight; i++) {
            void *r = NULL;
            if (redisGetReply(rc, &r) != REDIS_OK)
                die("bare pipeline failed");
            freeReplyObject(r);
        }
        k_bare.samples[k_bare.n++] = (double)inflight / ((bench_now_ns() - t0) / 1e9);
    }
    iam_client_stats s;
    iam_client_stats_get(keyless, &s);
    io_loop_stop(loop);
    double hit = median(&k_hit), get = median(&k_get), pair = median(&k_pair), miss = median(&k_miss);
    double hop = median(&k_hop), hit_io = median(&k_hit_io);
    double async_ops = median(&k_async), bare_ops = median(&k_bare);
    printf("### Redis tier (redis-server started by the bench; connections over %s)\n\n",
           over_unix ? "its unix socket" : "loopback TCP");
    printf("| case | median ns per call |\n|---|---:|\n");
    printf("| %s | %.0f |\n| %s | %.0f |\n| %s | %.0f |\n| %s | %.0f |\n| %s | %.0f |\n| %s | %.0f |\n", k_hit.what,
           hit, k_hit_io.what, hit_io, k_get.what, get, k_pair.what, pair, k_miss.what, miss, k_hop.what, hop);
    printf("\n| throughput, %zu in flight | median ops/s |\n|---|---:|\n", inflight);
    printf("| %s | %.3g |\n| %s | %.3g |\n", k_async.what, async_ops, k_bare.what, bare_ops);
    printf("\n| ratio | value | target |\n|---|---:|---:|\n");
    printf("| Redis-hit path / bare GET | %.2fx | <= 1.2x |\n", hit / get);
    printf("| Redis-hit path / bare GET + EXISTS pipelined (same commands) | %.2fx | - |\n", hit / pair);
    printf("| Redis-hit path through the I/O thread / bare GET | %.2fx | - |\n", hit_io / get);
    printf("| Redis-hit path through the I/O thread / (bare GET + EXISTS + handoff) | %.2fx | - |\n",
           hit_io / (pair + hop));
    printf("| async throughput / bare pipelined | %.2fx | - |\n", async_ops / bare_ops);
    printf("\nmethod: %d interleaved batches of %zu calls per latency case, median of batch means; "
           "throughput median of %d runs. keyless client: %" PRIu64 " shared-record hits, %" PRIu64
           " bad records, %" PRIu64 " errors, %" PRIu64 " round trips on the direct lane (the async "
           "calls never use it).\n",
           batches, per_batch, k_async.n, s.redis_hits, s.redis_bad_records, s.redis_errors, s.redis_direct);
    redisFree(rc);
    iam_client_free(keyless);
    iam_client_free(keyless_io);
    iam_client_free(holder);
    iam_keyset_release(other);
    for (size_t i = 0; i < TOKENS; i++)
        free(g_tokens[i]);
    free(pem);
    mint_key_free(rsa);
    mint_key_free(key);
    rs_free(rs);
    return 0;
}
