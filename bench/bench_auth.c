/*
 * bench_auth.c — the auth-service tier's cost: one validation through the client (central
 * mode, cache disabled, so every request is a POST /auth/validate on the client's I/O
 * thread) next to a bare libcurl easy POST of the same body to the same server on a
 * kept-alive connection, measured in the same run (interleaved batches, medians).
 *
 * The server is the test auth service (tests/authsvc/authsvc.py, Python), started by the
 * bench on a free loopback port: its own time per request dominates both figures, so the
 * difference (not the ratio alone) is the tier's overhead.
 *
 * A second table: the cost of swappable key sets on the verification path (a client with
 * jwks_url takes a lock and a reference per verification) against fixed keys.
 *
 *   bench_auth [--quick]
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc.h"
#include "bench_util.h"
#include "iamclient.h"

static size_t discard(char *d, size_t size, size_t n, void *arg)
{
    (void)d, (void)arg;
    return size * n;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int batches = quick ? 5 : 15;
    int per_batch = quick ? 20 : 100;
    as_server *svc = as_start(NULL);
    if (!svc) {
        fprintf(stderr, "bench_auth: cannot start the test auth service\n");
        return 1;
    }
    char *tok = as_mint(svc, "{\"user_id\":3}");
    iam_client_options o;
    iam_client_options_init(&o);
    o.mode = IAM_MODE_CENTRAL;
    o.auth_url = as_url(svc);
    o.cache_disabled = true;
    iam_client *c = NULL;
    iam_error e = {0};
    if (!tok || iam_client_new(&o, &c, &e) != IAM_OK) {
        fprintf(stderr, "bench_auth: setup failed: %s\n", e.message);
        return 1;
    }
    char url[256], *body = malloc(strlen(tok) + 16);
    snprintf(url, sizeof url, "%s/auth/validate", as_url(svc));
    sprintf(body, "{\"token\":\"%s\"}", tok);
    CURL *easy = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);

    double *tier = calloc((size_t)batches, sizeof *tier), *bare = calloc((size_t)batches, sizeof *bare);
    for (int warm = 0; warm < 10; warm++) { /* connections up, both sides */
        iam_user *u = NULL;
        iam_client_resolve(c, tok, strlen(tok), NULL, &u, NULL);
        iam_user_release(u);
        curl_easy_perform(easy);
    }
    for (int b = 0; b < batches; b++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < per_batch; i++) {
            iam_user *u = NULL;
            iam_status st = iam_client_resolve(c, tok, strlen(tok), NULL, &u, &e);
            if (st != IAM_OK) {
                fprintf(stderr, "bench_auth: resolve: %s (%s)\n", iam_status_name(st), e.message);
                return 1;
            }
            iam_user_release(u);
        }
        double t1 = bench_now_ns();
        for (int i = 0; i < per_batch; i++) {
            long status = 0;
            if (curl_easy_perform(easy) != CURLE_OK ||
                curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
                fprintf(stderr, "bench_auth: bare POST failed\n");
                return 1;
            }
        }
        double t2 = bench_now_ns();
        tier[b] = (t1 - t0) / per_batch;
        bare[b] = (t2 - t1) / per_batch;
    }
    qsort(tier, (size_t)batches, sizeof *tier, bench_cmp_double);
    qsort(bare, (size_t)batches, sizeof *bare, bench_cmp_double);
    double mt = tier[batches / 2], mb = bare[batches / 2];
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    printf("### Auth-service tier (test auth service on loopback, started by the bench)\n\n");
    printf("| case | median us per call |\n|---|---:|\n");
    printf("| central-mode resolution, cache off (POST /auth/validate via the I/O thread) | %.1f |\n", mt / 1e3);
    printf("| bare libcurl easy POST, same body, kept-alive connection | %.1f |\n", mb / 1e3);
    printf("\n| ratio | value |\n|---|---:|\n| tier / bare | %.2fx |\n| tier - bare | %.1f us |\n", mt / mb,
           (mt - mb) / 1e3);
    printf("\nmethod: %d interleaved batches of %d calls each, median of batch means. auth calls %" PRIu64
           ", errors %" PRIu64 "; connections the server accepted in all: %lld (keep-alive).\n",
           batches, per_batch, s.auth_calls, s.auth_errors, as_stat(svc, "connections"));

    /* The key-set swap's cost on the verification path: the same HS256 token verified
     * (cache off) by a client whose keys can be swapped (jwks_url: lock + reference per
     * verification) and by a local-only client (fixed keys: neither). */
    char *hs = as_mint(svc, "{\"alg\":\"HS256\"}");
    char jwks[256];
    snprintf(jwks, sizeof jwks, "%s/.well-known/jwks.json", as_url(svc));
    iam_client *dyn = NULL, *fixed = NULL;
    iam_client_options_init(&o);
    o.jwt_secret = as_secret();
    o.cache_disabled = true;
    o.mode = IAM_MODE_LOCAL_ONLY;
    iam_client_new(&o, &fixed, NULL);
    o.mode = IAM_MODE_LOCAL_FIRST;
    o.jwks_url = jwks;
    iam_client_new(&o, &dyn, NULL);
    int vb = quick ? 5 : 21, vn = quick ? 2000 : 20000;
    double *vd = calloc((size_t)vb, sizeof *vd), *vf = calloc((size_t)vb, sizeof *vf);
    for (int b = 0; b < vb; b++) {
        iam_client *cs[2] = {dyn, fixed};
        double *out[2] = {vd, vf};
        for (int k = 0; k < 2; k++) {
            double t0 = bench_now_ns();
            for (int i = 0; i < vn; i++) {
                iam_user *u = NULL;
                if (iam_client_resolve(cs[k], hs, strlen(hs), NULL, &u, NULL) != IAM_OK) {
                    fprintf(stderr, "bench_auth: HS256 resolve failed\n");
                    return 1;
                }
                iam_user_release(u);
            }
            out[k][b] = (bench_now_ns() - t0) / vn;
        }
    }
    qsort(vd, (size_t)vb, sizeof *vd, bench_cmp_double);
    qsort(vf, (size_t)vb, sizeof *vf, bench_cmp_double);
    printf("\n| verification through the client, cache off, HS256 | median ns per call |\n|---|---:|\n");
    printf("| swappable keys (jwks_url: lock + reference per verification) | %.0f |\n", vd[vb / 2]);
    printf("| fixed keys (local-only) | %.0f |\n| ratio | %.3fx |\n", vf[vb / 2], vd[vb / 2] / vf[vb / 2]);
    iam_client_free(dyn);
    iam_client_free(fixed);
    free(hs), free(vd), free(vf);
    curl_easy_cleanup(easy);
    curl_slist_free_all(h);
    free(body), free(tok), free(tier), free(bare);
    iam_client_free(c);
    as_free(svc);
    return 0;
}
