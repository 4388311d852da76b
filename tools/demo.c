/*
 * demo.c — `iamctl demo`. Mints tokens carrying the platform's real claim set with a
 * freshly generated HS256 secret (signing lives here, not in the library: the library
 * only verifies), then shows what the verifier accepts, what it refuses and why, and
 * how long a verification takes.
 */
#include "demo.h"

#include "iamclient.h"
#include "jose/b64url.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
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
    long long now = (long long)time(NULL);
    printf("iamctl demo — libiamclient %s\n\n", IAM_VERSION_STRING);
    printf("A generated 32-byte HS256 secret signs tokens with the platform's claim set\n"
           "(CONTRACT.md); the library verifies them locally, with no network.\n\n");

    struct {
        const char *sub, *email, *roles, *perms;
        int org;
    } users[] = {
        {"1", "ada@lab7.example.org", "[\"admin\"]", "[\"manage_all_orgs\",\"dataset.read\"]", 7},
        {"2", "user@example.org", "[\"user\",\"scientist\"]",
         "[\"dataset.read\",\"model.use\",\"workflow.execute\"]", 7},
        {"3", "grace@lab9.example.org", "[\"user\"]", "[]", 9},
    };
    printf("Accepted\n  %-4s %-24s %-22s %-6s %s\n", "user", "email", "roles", "org", "may run workflows?");
    char *sample = NULL;
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        char *c = claims(users[i].sub, users[i].email, users[i].roles, users[i].perms, users[i].org,
                         "access", now + 900, "omnibioai-platform");
        char *t = sign_hs256(HDR, c);
        iam_user *u = NULL;
        iam_status st = iam_token_verify(t, strlen(t), ks, NULL, now, &u, &e);
        if (st != IAM_OK) {
            printf("  unexpected: %s: %s\n", iam_status_name(st), e.message);
        } else {
            size_t nr;
            const char *const *r = iam_user_roles(u, &nr);
            char roles[64] = "";
            for (size_t k = 0; k < nr; k++) {
                strncat(roles, r[k], sizeof roles - strlen(roles) - 1);
                if (k + 1 < nr)
                    strncat(roles, ",", sizeof roles - strlen(roles) - 1);
            }
            printf("  %-4s %-24s %-22s %-6s %s\n", iam_user_id(u), iam_user_email(u), roles,
                   iam_user_org_id(u), iam_user_has_permission(u, "workflow.execute") ? "yes" : "no");
            iam_user_release(u);
        }
        free(c);
        if (i == 1)
            sample = t;
        else
            free(t);
    }

    printf("\nRefused (reason code: message)\n");
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
    bad[3].token = strdup(sample);
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
        iam_user *u = NULL;
        iam_status st = iam_token_verify(bad[i].token, strlen(bad[i].token), ks, NULL, now, &u, &e);
        printf("  %-30s -> %s: %s\n", bad[i].what, iam_status_name(st), e.message);
        iam_user_release(u);
        free(bad[i].token);
    }

    /* Timing: median of 21 batches of full verifications of the same token. */
    enum { BATCHES = 21, PER = 20000 };
    double ns[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int i = 0; i < PER; i++) {
            iam_user *u = NULL;
            iam_token_verify(sample, strlen(sample), ks, NULL, now, &u, NULL);
            iam_user_release(u);
        }
        ns[b] = (now_ns() - t0) / PER;
    }
    qsort(ns, BATCHES, sizeof ns[0], cmp_double);
    printf("\nFull HS256 verification (parse, signature, claims, user context) of a %zu-byte token:\n"
           "  median %.0f ns per token, on one thread (%d x %d runs)\n",
           strlen(sample), ns[BATCHES / 2], BATCHES, PER);
    free(sample);
    iam_keyset_release(ks);
    return 0;
}
