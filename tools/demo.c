/*
 * demo.c — `iamctl demo`. Mints tokens carrying the platform's real claim set with a
 * freshly generated HS256 secret (signing lives here, not in the library: the library
 * only verifies) and resolves them through a client: first sight, many requests from
 * several threads, a revocation, tenant isolation, refusals with their reasons.
 */
#include "demo.h"

#include "iamclient.h"
#include "jose/b64url.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned char secret[32];

static char *b64(const void *data, size_t len)
{
    char *out = malloc(len / 3 * 4 + 8);
    if (out)
        b64url_encode(data, len, out);
    return out;
}

/* header.payload.HMAC-SHA256 with the demo secret. */
static char *sign_hs256(const char *header, const char *payload)
{
    char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h, p);
    unsigned char mac[32];
    size_t mac_len = 0;
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, sizeof secret,
              (const unsigned char *)input, strlen(input), mac, sizeof mac, &mac_len);
    char *s = b64(mac, mac_len);
    size_t tn = n + strlen(s) + 1;
    char *token = malloc(tn);
    snprintf(token, tn, "%s.%s", input, s);
    free(h), free(p), free(input), free(s);
    return token;
}

static char *claims(const char *sub, const char *email, const char *roles, const char *perms,
                    int org, const char *type, long long exp, const char *aud)
{
    char *buf = malloc(1024);
    snprintf(buf, 1024,
             "{\"sub\":\"%s\",\"email\":\"%s\",\"roles\":%s,\"permissions\":%s,\"org_id\":%d,"
             "\"org_role\":[\"member\"],\"team_id\":null,\"team_role\":null,\"auth_method\":\"password\","
             "\"idp_org_id\":null,\"token_version\":2,\"mfa_verified\":true,\"exp\":%lld,"
             "\"type\":\"%s\",\"jti\":\"demo-%s-%lld\",\"iss\":\"omnibioai-auth\",\"aud\":\"%s\"}",
             sub, email, roles, perms, org, exp, type, sub, exp, aud);
    return buf;
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct demo_thread {
    iam_client *client;
    char **tokens;
    size_t ntokens;
    long requests, failures;
} demo_thread;

static void *demo_worker(void *arg)
{
    demo_thread *t = arg;
    for (long i = 0; i < t->requests; i++) {
        const char *tok = t->tokens[(size_t)i % t->ntokens];
        iam_user *u = NULL;
        if (iam_client_resolve(t->client, tok, strlen(tok), NULL, &u, NULL) != IAM_OK)
            t->failures++;
        iam_user_release(u);
    }
    return NULL;
}

static const char *fmt_ns(double ns, char *buf, size_t n)
{
    if (ns < 1000)
        snprintf(buf, n, "%.0f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, n, "%.1f us", ns / 1e3);
    else
        snprintf(buf, n, "%.1f ms", ns / 1e6);
    return buf;
}

static double median_bucket_ns(const iam_latency *h)
{
    if (!h->count)
        return 0;
    uint64_t seen = 0;
    for (int i = 0; i < IAM_LATENCY_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen * 2 > h->count)
            return (double)((uint64_t)3 << i) / 2; /* middle of [2^i, 2^(i+1)) */
    }
    return 0;
}

int iamctl_demo(int argc, char **argv)
{
    (void)argc, (void)argv;
    const char *HDR = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    if (RAND_bytes(secret, sizeof secret) != 1) {
        fprintf(stderr, "iamctl demo: no randomness available\n");
        return 2;
    }
    iam_keyset *ks = iam_keyset_new();
    iam_error e = {0};
    if (!ks || iam_keyset_add_hmac(ks, secret, sizeof secret, NULL, &e) != IAM_OK) {
        fprintf(stderr, "iamctl demo: %s\n", e.message);
        return 2;
    }
    iam_client_options o;
    iam_client_options_init(&o);
    o.mode = IAM_MODE_LOCAL_ONLY;
    o.keys = ks;
    iam_client *client = NULL;
    if (iam_client_new(&o, &client, &e) != IAM_OK) {
        fprintf(stderr, "iamctl demo: %s\n", e.message);
        return 2;
    }
    long long now = (long long)time(NULL);
    char buf[32], buf2[32];
    printf("iamctl demo — libiamclient %s\n\n", IAM_VERSION_STRING);
    printf("A client on an embedded default: an in-process cache and a generated 32-byte HS256\n"
           "secret. Tokens carry the platform's claim set (CONTRACT.md). No servers, no config.\n\n");

    struct {
        const char *sub, *email, *roles, *perms;
        int org;
    } users[] = {
        {"1", "ada@lab7.example.org", "[\"admin\"]", "[\"manage_all_orgs\",\"dataset.read\"]", 7},
        {"2", "user@example.org", "[\"user\",\"scientist\"]",
         "[\"dataset.read\",\"model.use\",\"workflow.execute\"]", 7},
        {"3", "grace@lab9.example.org", "[\"user\",\"scientist\"]", "[\"workflow.execute\"]", 9},
        {"4", "lin@lab9.example.org", "[\"user\"]", "[]", 9},
    };
    enum { NUSERS = sizeof users / sizeof users[0] };
    char *tokens[NUSERS];
    printf("1. Who is this? First sight of each token: verified locally, then cached.\n");
    printf("   %-4s %-24s %-16s %-4s %-18s %s\n", "user", "email", "roles", "org", "workflow.execute?",
           "took");
    for (size_t i = 0; i < NUSERS; i++) {
        char *c = claims(users[i].sub, users[i].email, users[i].roles, users[i].perms, users[i].org,
                         "access", now + 900, "omnibioai-platform");
        tokens[i] = sign_hs256(HDR, c);
        free(c);
        iam_user *u = NULL;
        double t0 = now_ns();
        iam_status st = iam_client_resolve(client, tokens[i], strlen(tokens[i]), NULL, &u, &e);
        double took = now_ns() - t0;
        if (st != IAM_OK) {
            printf("   unexpected: %s: %s\n", iam_status_name(st), e.message);
            continue;
        }
        size_t nr;
        const char *const *r = iam_user_roles(u, &nr);
        char roles[64] = "";
        for (size_t k = 0; k < nr; k++) {
            strncat(roles, r[k], sizeof roles - strlen(roles) - 1);
            if (k + 1 < nr)
                strncat(roles, ",", sizeof roles - strlen(roles) - 1);
        }
        printf("   %-4s %-24s %-16s %-4s %-18s %s\n", iam_user_id(u), iam_user_email(u), roles,
               iam_user_org_id(u), iam_user_has_permission(u, "workflow.execute") ? "yes" : "no",
               fmt_ns(took, buf, sizeof buf));
        iam_user_release(u);
    }
    printf("   (\"took\" is one wall-clock measurement; the first includes warming up. Permissions,\n"
           "    not roles, decide: user 1 is an admin without workflow.execute.)\n");

    /* 2. Many requests from several threads: almost all answered from memory. */
#ifdef IAM_SANITIZED /* the same tour, less work: sanitizer builds are 5-20x slower */
    enum { THREADS = 4, PER_THREAD = 5000 };
#else
    enum { THREADS = 4, PER_THREAD = 250000 };
#endif
    iam_client_stats before;
    iam_client_stats_get(client, &before);
    demo_thread th[THREADS];
    pthread_t tid[THREADS];
    double t0 = now_ns();
    for (int i = 0; i < THREADS; i++) {
        th[i] = (demo_thread){client, tokens, NUSERS, PER_THREAD, 0};
        pthread_create(&tid[i], NULL, demo_worker, &th[i]);
    }
    long failures = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(tid[i], NULL);
        failures += th[i].failures;
    }
    double wall = now_ns() - t0;
    iam_client_stats s;
    iam_client_stats_get(client, &s);
    printf("\n2. The same tokens again: %d threads x %d requests on this machine's 2 cores.\n",
           THREADS, PER_THREAD);
    printf("   %-26s %12s %16s\n", "tier", "requests", "median (histogram)");
    printf("   %-26s %12llu %16s\n", "L1 in-process cache (hit)",
           (unsigned long long)(s.l1_hits - before.l1_hits), fmt_ns(median_bucket_ns(&s.hit_latency), buf, sizeof buf));
    printf("   %-26s %12llu %16s\n", "local verification",
           (unsigned long long)(s.verifications - before.verifications),
           s.verifications == before.verifications ? "- (none needed)"
                                                   : fmt_ns(median_bucket_ns(&s.verify_latency), buf2, sizeof buf2));
    printf("   %-26s %12llu %16s\n", "network (Redis, auth svc)", (unsigned long long)s.network_calls, "-");
    printf("   %.1f million resolutions/s in all, %ld wrong answers\n",
           (double)THREADS * PER_THREAD / wall * 1e3, failures);

    /* 3. Revocation: the platform's logout revokes the access token's jti and tells every
     * node to drop the user's entries; the next request is refused. */
    printf("\n3. User 2 logs out (revoke the token's jti, invalidate the user's cache entries).\n");
    iam_user *u2 = NULL;
    iam_client_resolve(client, tokens[1], strlen(tokens[1]), NULL, &u2, NULL);
    char jti[128] = "";
    if (u2 && iam_user_jti(u2))
        snprintf(jti, sizeof jti, "%s", iam_user_jti(u2));
    iam_user_release(u2);
    size_t dropped = iam_client_revoke_jti(client, jti) + iam_client_invalidate_user(client, "2");
    iam_user *u = NULL;
    iam_status st = iam_client_resolve(client, tokens[1], strlen(tokens[1]), NULL, &u, &e);
    printf("   entries dropped: %zu; next request for user 2 -> %s: %s\n", dropped, iam_status_name(st),
           e.message);
    iam_user_release(u);
    u = NULL;
    st = iam_client_resolve(client, tokens[2], strlen(tokens[2]), NULL, &u, &e);
    printf("   user 3 meanwhile -> %s (still from the cache)\n", st == IAM_OK ? "accepted" : iam_status_name(st));
    iam_user_release(u);

    /* 4. Tenant isolation: a lab-7 service asks about a lab-9 user. */
    iam_resolve_options lab7 = {NULL, "7"};
    u = NULL;
    st = iam_client_resolve(client, tokens[3], strlen(tokens[3]), &lab7, &u, &e);
    printf("\n4. Tenant isolation: a lab-7 service resolving a lab-9 user -> %s: %s\n", iam_status_name(st),
           e.message);
    iam_user_release(u);

    printf("\n5. Refused (reason code: message)\n");
    struct {
        const char *what;
        char *token;
    } bad[6];
    char *c;
    c = claims("2", "user@example.org", "[\"user\"]", "[]", 7, "access", now - 120, "omnibioai-platform");
    bad[0].what = "expired two minutes ago", bad[0].token = sign_hs256(HDR, c), free(c);
    c = claims("2", "user@example.org", "[\"user\"]", "[]", 7, "refresh", now + 604800, "omnibioai-platform");
    bad[1].what = "a refresh token", bad[1].token = sign_hs256(HDR, c), free(c);
    c = claims("2", "user@example.org", "[\"user\"]", "[]", 7, "access", now + 900, "another-platform");
    bad[2].what = "meant for another audience", bad[2].token = sign_hs256(HDR, c), free(c);
    bad[3].what = "payload edited after signing";
    bad[3].token = strdup(tokens[0]);
    {
        char *dot = strchr(bad[3].token, '.');
        dot[5] = dot[5] == 'A' ? 'B' : 'A';
    }
    c = claims("2", "user@example.org", "[\"admin\"]", "[]", 7, "access", now + 900, "omnibioai-platform");
    {
        char *h = b64("{\"alg\":\"none\",\"typ\":\"JWT\"}", 26), *p = b64(c, strlen(c));
        size_t n = strlen(h) + strlen(p) + 3;
        bad[4].token = malloc(n);
        snprintf(bad[4].token, n, "%s.%s.", h, p);
        free(h), free(p), free(c);
    }
    bad[4].what = "alg none (unsigned)";
    bad[5].what = "not a token at all", bad[5].token = strdup("hello.world");
    for (size_t i = 0; i < 6; i++) {
        u = NULL;
        st = iam_client_resolve(client, bad[i].token, strlen(bad[i].token), NULL, &u, &e);
        printf("   %-30s -> %s: %s\n", bad[i].what, iam_status_name(st), e.message);
        iam_user_release(u);
        free(bad[i].token);
    }

    /* Timing of the bare verification, for scale. */
#ifdef IAM_SANITIZED
    enum { BATCHES = 5, PER = 200 };
#else
    enum { BATCHES = 21, PER = 20000 };
#endif
    double ns[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double b0 = now_ns();
        for (int i = 0; i < PER; i++) {
            u = NULL;
            iam_token_verify(tokens[2], strlen(tokens[2]), ks, NULL, now, &u, NULL);
            iam_user_release(u);
        }
        ns[b] = (now_ns() - b0) / PER;
    }
    qsort(ns, BATCHES, sizeof ns[0], cmp_double);
    printf("\nFull HS256 verification without the cache (parse, signature, claims, user context)\n"
           "of a %zu-byte token: median %.0f ns per token, one thread (%d x %d runs)\n",
           strlen(tokens[2]), ns[BATCHES / 2], BATCHES, PER);

    char *json = iam_client_stats_json(client);
    printf("\nPer-tier counters (also: iamctl verify --stats, iam_client_metrics_prometheus):\n%s\n", json);
    iam_free(json);
    for (size_t i = 0; i < NUSERS; i++)
        free(tokens[i]);
    iam_client_free(client);
    iam_keyset_release(ks);
    return failures ? 1 : 0;
}
