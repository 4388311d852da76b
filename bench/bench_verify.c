/*
 * bench_verify.c — what a full iam_token_verify costs next to OpenSSL's bare primitive.
 *
 * For HS256 (44-byte secret), RS256 (RSA-2048), ES256 (P-256) and EdDSA (Ed25519) it mints
 * the platform's real claim set (tests/support/mint.c, independent of the library), builds
 * one keyset per algorithm, and measures in the same run:
 *
 *   - iam_token_verify: parse, signature, claims, user context, iam_user_release;
 *   - the bare OpenSSL verification of the same JWS signing input with a pre-parsed key:
 *       HS256  EVP_MAC "HMAC"/SHA256, one EVP_MAC_CTX keyed once, re-initialised per call
 *              with EVP_MAC_init(ctx, NULL, 0, NULL) (keeps the key schedule), then
 *              update + final + CRYPTO_memcmp;
 *       RS256  EVP_DigestVerifyInit(SHA-256 fetched once, pre-loaded public EVP_PKEY) +
 *              EVP_DigestVerify, PKCS#1 v1.5, on one reused EVP_MD_CTX;
 *       ES256  the same, with the signature converted to DER beforehand;
 *       EdDSA  the same with a NULL digest.
 *
 * Method: calibrate N per case so one batch takes ~10 ms (2 ms with --quick), warm up, then
 * 31 batches (5 with --quick); in each batch every case runs N calls, the cases interleaved
 * and their order rotated per batch so noise hits all alike. Per case the per-call ns of
 * each batch is kept and the median batch reported.
 *
 * A supplement measures a few other ways of calling OpenSSL, to show what per-call
 * fetching and context setup cost in OpenSSL 3 (--no-extra skips them).
 *
 * Exit status: 0 when every verification succeeded (and every tampered token was refused),
 * 1 otherwise, 2 on a usage or setup error.
 */
#include "iamclient.h"
#include "bench_util.h"
#include "mint.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

/* 2100-01-01T00:00:00Z: far in the future, well inside IAM_MAX_NUMERIC_DATE. */
#define BENCH_EXP INT64_C(4102444800)

static const char hs_secret[] = "bench-hs256-secret-0123456789abcdefghijklmno";
_Static_assert(sizeof hs_secret - 1 == 44, "the HS256 secret is 44 bytes");

/* ------------------------------------------------------------------------- */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------- */

static void fatal(const char *what)
{
    fprintf(stderr, "bench_verify: setup failed: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}


/* base64url decoding (no padding) for the bench's own use; NULL on bad input. */
static unsigned char *b64url_decode(const char *s, size_t len, size_t *outlen)
{
    unsigned char *out = malloc(len * 3 / 4 + 3);
    if (!out)
        return NULL;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = o;
    return out;
}

/* A token split into signing input and decoded signature. */
typedef struct {
    char *token;
    size_t token_len;
    const unsigned char *msg; /* the JWS signing input: header "." payload */
    size_t msg_len;
    unsigned char *sig;       /* decoded JWS signature */
    size_t sig_len;
} jws_parts;

static void split_token(char *token, jws_parts *p)
{
    p->token = token;
    p->token_len = strlen(token);
    const char *dot = strrchr(token, '.');
    if (!dot)
        fatal("minted token has no '.'");
    p->msg = (const unsigned char *)token;
    p->msg_len = (size_t)(dot - token);
    p->sig = b64url_decode(dot + 1, strlen(dot + 1), &p->sig_len);
    if (!p->sig)
        fatal("minted signature is not base64url");
}

/* A copy of token with one signature character changed (the signature then differs). */
static char *tamper(const char *token)
{
    char *t = strdup(token);
    if (!t)
        fatal("out of memory");
    char *sig = strrchr(t, '.') + 1;
    char *c = sig + strlen(sig) / 2;
    *c = (*c == 'A') ? 'B' : 'A';
    return t;
}

static EVP_PKEY *public_pkey(const mint_key *k)
{
    char *pem = mint_key_public_pem(k);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    free(pem);
    if (!pkey)
        fatal("PEM_read_bio_PUBKEY");
    return pkey;
}

/* ------------------------------------------------------------------------- */
/* The measured operations. Each runs n calls and returns how many failed    */
/* (for a "tampered" context: how many were wrongly accepted).               */
/* ------------------------------------------------------------------------- */

typedef size_t (*run_fn)(void *ctx, size_t n);

/* iam_token_verify, full path. */
typedef struct {
    const char *token;
    size_t len;
    const iam_keyset *ks;
    int64_t now;
} lib_ctx;

static size_t run_lib(void *arg, size_t n)
{
    lib_ctx *c = arg;
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        iam_user *u = NULL;
        iam_status st = iam_token_verify(c->token, c->len, c->ks, NULL, c->now, &u, NULL);
        if (st != IAM_OK || !u)
            failed++;
        iam_user_release(u);
    }
    return failed;
}

/* HMAC-SHA256, EVP_MAC_CTX keyed once; mode selects how each call starts. */
enum { HMAC_REINIT_NULL_KEY, HMAC_REINIT_WITH_KEY, HMAC_Q_MAC };
typedef struct {
    int mode;
    EVP_MAC_CTX *ctx;
    const unsigned char *key;
    size_t key_len;
    const unsigned char *msg;
    size_t msg_len;
    const unsigned char *expect; /* 32 bytes */
} hmac_ctx;

static size_t run_hmac(void *arg, size_t n)
{
    hmac_ctx *c = arg;
    size_t failed = 0;
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int ok;
        if (c->mode == HMAC_Q_MAC) {
            ok = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, c->key, c->key_len, c->msg,
                           c->msg_len, mac, sizeof mac, &len) != NULL;
        } else {
            const unsigned char *k = c->mode == HMAC_REINIT_WITH_KEY ? c->key : NULL;
            size_t kl = c->mode == HMAC_REINIT_WITH_KEY ? c->key_len : 0;
            ok = EVP_MAC_init(c->ctx, k, kl, NULL) == 1 &&
                 EVP_MAC_update(c->ctx, c->msg, c->msg_len) == 1 &&
                 EVP_MAC_final(c->ctx, mac, &len, sizeof mac) == 1;
        }
        if (!ok || len != 32 || CRYPTO_memcmp(mac, c->expect, 32) != 0)
            failed++;
    }
    return failed;
}

/* Signature verification with the EVP_DigestVerify family; mode selects the setup. */
enum {
    SIG_INIT_PER_CALL,       /* EVP_DigestVerifyInit + EVP_DigestVerify (the main baseline) */
    SIG_INIT_PER_CALL_BYNAME,/* the same, digest named per call with EVP_DigestVerifyInit_ex */
    SIG_COPY_TEMPLATE,       /* EVP_MD_CTX_copy_ex from a ctx initialised once + EVP_DigestVerify */
    SIG_PREHASH_PKEY_CTX     /* digest with a reused EVP_MD_CTX, EVP_PKEY_verify on a ctx set up once */
};
typedef struct {
    int mode;
    EVP_MD_CTX *mctx;      /* reused per call */
    EVP_MD_CTX *tmpl;      /* SIG_COPY_TEMPLATE */
    EVP_PKEY_CTX *pctx;    /* SIG_PREHASH_PKEY_CTX */
    const EVP_MD *md;      /* fetched once; NULL for EdDSA */
    const char *md_name;   /* for SIG_INIT_PER_CALL_BYNAME */
    EVP_PKEY *pkey;
    const unsigned char *msg;
    size_t msg_len;
    const unsigned char *sig; /* DER for ECDSA */
    size_t sig_len;
} sig_ctx;

static size_t run_sig(void *arg, size_t n)
{
    sig_ctx *c = arg;
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        int ok = 0;
        switch (c->mode) {
        case SIG_INIT_PER_CALL:
            ok = EVP_DigestVerifyInit(c->mctx, NULL, c->md, NULL, c->pkey) == 1 &&
                 EVP_DigestVerify(c->mctx, c->sig, c->sig_len, c->msg, c->msg_len) == 1;
            break;
        case SIG_INIT_PER_CALL_BYNAME:
            ok = EVP_DigestVerifyInit_ex(c->mctx, NULL, c->md_name, NULL, NULL, c->pkey, NULL) ==
                     1 &&
                 EVP_DigestVerify(c->mctx, c->sig, c->sig_len, c->msg, c->msg_len) == 1;
            break;
        case SIG_COPY_TEMPLATE:
            ok = EVP_MD_CTX_copy_ex(c->mctx, c->tmpl) == 1 &&
                 EVP_DigestVerify(c->mctx, c->sig, c->sig_len, c->msg, c->msg_len) == 1;
            break;
        case SIG_PREHASH_PKEY_CTX: {
            unsigned char dig[EVP_MAX_MD_SIZE];
            unsigned int dlen = 0;
            ok = EVP_DigestInit_ex2(c->mctx, c->md, NULL) == 1 &&
                 EVP_DigestUpdate(c->mctx, c->msg, c->msg_len) == 1 &&
                 EVP_DigestFinal_ex(c->mctx, dig, &dlen) == 1 &&
                 EVP_PKEY_verify(c->pctx, c->sig, c->sig_len, dig, dlen) == 1;
            break;
        }
        }
        if (!ok) {
            failed++;
            ERR_clear_error();
        }
    }
    return failed;
}

/* Runs fn once on a context expected to fail (tampered input); returns 1 if it was accepted. */
static size_t run_inverted(run_fn fn, void *ctx)
{
    return fn(ctx, 1) == 0;
}

/* ------------------------------------------------------------------------- */
/* The cases                                                                 */
/* ------------------------------------------------------------------------- */

#define MAX_CASES 32
#define MAX_BATCHES 101

typedef struct {
    const char *alg;       /* HS256 … */
    const char *what;      /* label in the supplement */
    int role;              /* 0 library, 1 main primitive, 2 supplement */
    run_fn fn;
    void *ctx;
    size_t n;              /* calls per batch */
    size_t failed;
    double per_call[MAX_BATCHES];
    double median;
    double spread;         /* (p75 - p25) / median */
} bench_case;

static bench_case cases[MAX_CASES];
static size_t ncases;

static bench_case *add_case(const char *alg, const char *what, int role, run_fn fn, void *ctx)
{
    if (ncases == MAX_CASES)
        fatal("too many cases");
    bench_case *c = &cases[ncases++];
    memset(c, 0, sizeof *c);
    c->alg = alg;
    c->what = what;
    c->role = role;
    c->fn = fn;
    c->ctx = ctx;
    return c;
}

/* Per-algorithm state, kept alive for the whole run. */
typedef struct {
    const char *alg;
    mint_key *key;
    iam_keyset *ks;
    jws_parts parts;
    char *bad_token;
    lib_ctx lib, lib_bad;
    EVP_PKEY *pub;
    unsigned char *der; /* ECDSA signature as DER */
    size_t der_len;
    EVP_MD *md;
    sig_ctx sig[4], sig_bad;
    hmac_ctx hmac[3], hmac_bad;
} alg_state;

static bool check_lib(alg_state *a)
{
    iam_user *u = NULL;
    iam_error err;
    memset(&err, 0, sizeof err);
    iam_status st = iam_token_verify(a->parts.token, a->parts.token_len, a->ks, NULL,
                                     a->lib.now, &u, &err);
    if (st != IAM_OK) {
        fprintf(stderr, "bench_verify: %s: iam_token_verify refused the token: %s (%s)\n",
                a->alg, iam_status_name(st), err.message);
        return false;
    }
    bool ok = iam_user_id(u) && strcmp(iam_user_id(u), "2") == 0 && iam_user_email(u) &&
              strcmp(iam_user_email(u), "user@example.org") == 0 &&
              iam_user_has_permission(u, "workflow.execute");
    iam_user_release(u);
    if (!ok) {
        fprintf(stderr, "bench_verify: %s: the user context does not match the claims\n",
                a->alg);
        return false;
    }
    u = NULL;
    st = iam_token_verify(a->bad_token, strlen(a->bad_token), a->ks, NULL, a->lib.now, &u,
                          NULL);
    iam_user_release(u);
    if (st == IAM_OK) {
        fprintf(stderr, "bench_verify: %s: a tampered signature was ACCEPTED\n", a->alg);
        return false;
    }
    if (st != IAM_E_BAD_SIGNATURE)
        fprintf(stderr, "bench_verify: note: %s tampered token refused as %s\n", a->alg,
                iam_status_name(st));
    return true;
}

static void setup_alg(alg_state *a, const char *alg, const char *keytype, const char *kid,
                      const char *claims, int64_t now, bool extra)
{
    memset(a, 0, sizeof *a);
    a->alg = alg;
    iam_error err;
    memset(&err, 0, sizeof err);
    a->ks = iam_keyset_new();
    if (!a->ks)
        fatal("iam_keyset_new");
    if (!keytype) {
        a->key = mint_key_hmac(hs_secret, sizeof hs_secret - 1);
        if (iam_keyset_add_hmac(a->ks, hs_secret, sizeof hs_secret - 1, kid, &err) != IAM_OK) {
            fprintf(stderr, "iam_keyset_add_hmac: %s\n", err.message);
            fatal("HMAC key refused");
        }
    } else {
        a->key = mint_key_generate(keytype);
        char *jwk = mint_key_public_jwk(a->key, kid, alg);
        if (iam_keyset_add_jwk(a->ks, jwk, strlen(jwk), &err) != IAM_OK) {
            fprintf(stderr, "iam_keyset_add_jwk(%s): %s\n", jwk, err.message);
            fatal("JWK refused");
        }
        free(jwk);
        a->pub = public_pkey(a->key);
    }
    split_token(mint_token(alg, kid, claims, a->key), &a->parts);
    a->bad_token = tamper(a->parts.token);
    a->lib = (lib_ctx){a->parts.token, a->parts.token_len, a->ks, now};

    add_case(alg, "iam_token_verify", 0, run_lib, &a->lib);

    if (!keytype) {
        static const char *labels[3] = {
            "EVP_MAC_init(ctx, NULL key) + update + final [main]",
            "EVP_MAC_init(ctx, key) + update + final (key schedule per call)",
            "EVP_Q_mac (fetches HMAC + SHA256 per call)"};
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!mac)
            fatal("EVP_MAC_fetch");
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};
        for (int m = 0; m < 3; m++) {
            hmac_ctx *h = &a->hmac[m];
            h->mode = m;
            h->ctx = EVP_MAC_CTX_new(mac);
            if (!h->ctx ||
                EVP_MAC_init(h->ctx, (const unsigned char *)hs_secret, sizeof hs_secret - 1,
                             params) != 1)
                fatal("EVP_MAC_init");
            h->key = (const unsigned char *)hs_secret;
            h->key_len = sizeof hs_secret - 1;
            h->msg = a->parts.msg;
            h->msg_len = a->parts.msg_len;
            h->expect = a->parts.sig;
            if (a->parts.sig_len != 32 || run_hmac(h, 1) != 0)
                fatal("HMAC primitive does not reproduce the token's signature");
            if (m == 0 || extra)
                add_case(alg, labels[m], m == 0 ? 1 : 2, run_hmac, h);
        }
        EVP_MAC_free(mac);
        /* the primitive must refuse a wrong MAC */
        a->hmac_bad = a->hmac[0];
        unsigned char *wrong = malloc(32);
        if (!wrong)
            fatal("out of memory");
        memcpy(wrong, a->parts.sig, 32);
        wrong[7] ^= 1;
        a->hmac_bad.expect = wrong;
        if (run_inverted(run_hmac, &a->hmac_bad))
            fatal("HMAC primitive accepted a wrong MAC");
        free(wrong);
        return;
    }

    const unsigned char *sig = a->parts.sig;
    size_t sig_len = a->parts.sig_len;
    if (strcmp(alg, "ES256") == 0) {
        /* raw r||s → DER, prepared once */
        if (sig_len != 64)
            fatal("ES256 signature is not 64 bytes");
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1)
            fatal("ECDSA_SIG");
        unsigned char *der = NULL;
        int dl = i2d_ECDSA_SIG(es, &der);
        if (dl <= 0)
            fatal("i2d_ECDSA_SIG");
        a->der = der;
        a->der_len = (size_t)dl;
        ECDSA_SIG_free(es);
        sig = a->der;
        sig_len = a->der_len;
    }
    bool eddsa = strcmp(alg, "EdDSA") == 0;
    EVP_MD *md = eddsa ? NULL : EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!eddsa && !md)
        fatal("EVP_MD_fetch");
    a->md = md;

    static const char *labels[4] = {
        "EVP_DigestVerifyInit(md fetched once) + EVP_DigestVerify [main]",
        "EVP_DigestVerifyInit_ex(\"SHA256\" by name) + EVP_DigestVerify",
        "EVP_MD_CTX_copy_ex(ctx initialised once, FINALISE flag) + EVP_DigestVerify",
        "reused EVP_MD_CTX SHA-256 + EVP_PKEY_verify on an EVP_PKEY_CTX set up once"};
    for (int m = 0; m < 4; m++) {
        if (m > 0 && !extra)
            break;
        if ((m == SIG_PREHASH_PKEY_CTX || m == SIG_INIT_PER_CALL_BYNAME) && eddsa)
            continue; /* Ed25519 has no digest to name and no prehash form */
        sig_ctx *c = &a->sig[m];
        c->mode = m;
        c->md = md;
        c->md_name = eddsa ? NULL : "SHA256";
        c->pkey = a->pub;
        c->msg = a->parts.msg;
        c->msg_len = a->parts.msg_len;
        c->sig = sig;
        c->sig_len = sig_len;
        c->mctx = EVP_MD_CTX_new();
        if (!c->mctx)
            fatal("EVP_MD_CTX_new");
        if (m == SIG_COPY_TEMPLATE) {
            c->tmpl = EVP_MD_CTX_new();
            if (!c->tmpl)
                fatal("EVP_MD_CTX_new");
            EVP_MD_CTX_set_flags(c->tmpl, EVP_MD_CTX_FLAG_FINALISE);
            if (EVP_DigestVerifyInit(c->tmpl, NULL, md, NULL, a->pub) != 1)
                fatal("EVP_DigestVerifyInit (template)");
        }
        if (m == SIG_PREHASH_PKEY_CTX) {
            c->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, a->pub, NULL);
            if (!c->pctx || EVP_PKEY_verify_init(c->pctx) != 1 ||
                EVP_PKEY_CTX_set_signature_md(c->pctx, md) != 1)
                fatal("EVP_PKEY_verify_init");
            if (EVP_PKEY_is_a(a->pub, "RSA") &&
                EVP_PKEY_CTX_set_rsa_padding(c->pctx, RSA_PKCS1_PADDING) != 1)
                fatal("RSA padding");
        }
        /* must verify, twice (the second call checks that reuse works) */
        if (run_sig(c, 2) != 0) {
            if (m == SIG_INIT_PER_CALL)
                fatal("OpenSSL primitive does not verify the minted signature");
            fprintf(stderr, "bench_verify: note: %s variant '%s' does not work here; skipped\n",
                    alg, labels[m]);
            continue;
        }
        add_case(alg, labels[m], m == 0 ? 1 : 2, run_sig, c);
    }
    /* the main primitive must refuse a wrong signature */
    a->sig_bad = a->sig[0];
    unsigned char *wrong = malloc(sig_len);
    if (!wrong)
        fatal("out of memory");
    memcpy(wrong, sig, sig_len);
    wrong[sig_len - 3] ^= 1;
    a->sig_bad.sig = wrong;
    if (run_inverted(run_sig, &a->sig_bad))
        fatal("OpenSSL primitive accepted a wrong signature");
    free(wrong);
    ERR_clear_error();
}

static void teardown_alg(alg_state *a)
{
    for (int m = 0; m < 3; m++)
        EVP_MAC_CTX_free(a->hmac[m].ctx);
    for (int m = 0; m < 4; m++) {
        EVP_MD_CTX_free(a->sig[m].mctx);
        EVP_MD_CTX_free(a->sig[m].tmpl);
        EVP_PKEY_CTX_free(a->sig[m].pctx);
    }
    EVP_MD_free(a->md);
    EVP_PKEY_free(a->pub);
    OPENSSL_free(a->der);
    free(a->parts.token);
    free(a->parts.sig);
    free(a->bad_token);
    iam_keyset_release(a->ks);
    mint_key_free(a->key);
}

/* ------------------------------------------------------------------------- */
/* Measurement                                                               */
/* ------------------------------------------------------------------------- */

static double time_batch(bench_case *c, size_t n)
{
    double t0 = bench_now_ns();
    c->failed += c->fn(c->ctx, n);
    return bench_now_ns() - t0;
}

static void calibrate(bench_case *c, double target_ns)
{
    size_t n = 1;
    double t = time_batch(c, n);
    while (t < target_ns / 8 && n < ((size_t)1 << 30)) {
        n *= 2;
        t = time_batch(c, n);
    }
    double est = (double)n * target_ns / (t > 1 ? t : 1);
    c->n = est < 1 ? 1 : (size_t)est;
    /* warm-up: one full batch at the chosen size */
    (void)time_batch(c, c->n);
}

static void summarise(bench_case *c, int batches)
{
    double v[MAX_BATCHES];
    memcpy(v, c->per_call, (size_t)batches * sizeof v[0]);
    qsort(v, (size_t)batches, sizeof v[0], bench_cmp_double);
    c->median = v[batches / 2];
    double p25 = v[batches / 4], p75 = v[(3 * batches) / 4];
    c->spread = c->median > 0 ? (p75 - p25) / c->median : 0;
}

static const bench_case *find_case(const char *alg, int role)
{
    for (size_t i = 0; i < ncases; i++)
        if (cases[i].role == role && strcmp(cases[i].alg, alg) == 0)
            return &cases[i];
    return NULL;
}

static void usage(FILE *f)
{
    fputs("usage: bench_verify [--quick] [--no-extra] [--batches N]\n"
          "  --quick      5 batches of ~2 ms (CI smoke run)\n"
          "  --no-extra   skip the supplementary OpenSSL variants\n"
          "  --batches N  number of batches (odd, 3..101; default 31)\n",
          f);
}

int main(int argc, char **argv)
{
    int batches = 31;
    double target_ns = 10e6;
    bool extra = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            batches = 5;
            target_ns = 2e6;
        } else if (strcmp(argv[i], "--no-extra") == 0) {
            extra = false;
        } else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc) {
            batches = atoi(argv[++i]);
            if (batches < 3 || batches > MAX_BATCHES) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    int64_t now = (int64_t)time(NULL);
    char *claims = mint_platform_claims("2", BENCH_EXP);
    size_t claims_len = strlen(claims);

    static alg_state algs[4];
    setup_alg(&algs[0], "HS256", NULL, NULL, claims, now, extra);
    setup_alg(&algs[1], "RS256", "rsa2048", "r1", claims, now, extra);
    setup_alg(&algs[2], "ES256", "p256", "e1", claims, now, extra);
    setup_alg(&algs[3], "EdDSA", "ed25519", "d1", claims, now, extra);

    bool all_ok = true;
    for (int i = 0; i < 4; i++)
        all_ok = check_lib(&algs[i]) && all_ok;
    if (!all_ok) {
        fprintf(stderr, "bench_verify: verification failed before timing\n");
        return 1;
    }

    for (size_t i = 0; i < ncases; i++)
        calibrate(&cases[i], target_ns);

    /* Interleaved batches, case order rotated every batch. */
    for (int b = 0; b < batches; b++) {
        for (size_t k = 0; k < ncases; k++) {
            bench_case *c = &cases[(k + (size_t)b) % ncases];
            c->per_call[b] = time_batch(c, c->n) / (double)c->n;
        }
    }
    size_t failures = 0;
    for (size_t i = 0; i < ncases; i++) {
        summarise(&cases[i], batches);
        failures += cases[i].failed;
        if (cases[i].failed)
            fprintf(stderr, "bench_verify: %s %s: %zu calls failed\n", cases[i].alg,
                    cases[i].what, cases[i].failed);
    }

    printf("| algorithm | iam_token_verify median ns | bare OpenSSL primitive median ns | ratio |\n");
    printf("|---|---:|---:|---:|\n");
    for (int i = 0; i < 4; i++) {
        const bench_case *l = find_case(algs[i].alg, 0), *p = find_case(algs[i].alg, 1);
        printf("| %s | %.0f | %.0f | %.2f |\n", algs[i].alg, l->median, p->median,
               l->median / p->median);
    }
    printf("\nclaim set: %zu bytes (the platform's real access-token claims); "
           "tokens: HS256 %zu, RS256 %zu, ES256 %zu, EdDSA %zu bytes\n",
           claims_len, algs[0].parts.token_len, algs[1].parts.token_len,
           algs[2].parts.token_len, algs[3].parts.token_len);
    printf("method: %d interleaved batches per case, ~%.0f ms each (calls per batch:", batches,
           target_ns / 1e6);
    for (int i = 0; i < 4; i++)
        printf(" %s %zu/%zu", algs[i].alg, find_case(algs[i].alg, 0)->n,
               find_case(algs[i].alg, 1)->n);
    printf(" library/primitive); median batch of per-call ns\n");
    printf("noise (interquartile range of the batches / median), library/primitive:");
    for (int i = 0; i < 4; i++)
        printf(" %s %.0f%%/%.0f%%", algs[i].alg, find_case(algs[i].alg, 0)->spread * 100,
               find_case(algs[i].alg, 1)->spread * 100);
    printf("\n");
    printf("primitives: HS256 = EVP_MAC HMAC-SHA256 ctx keyed once, re-initialised per call "
           "with EVP_MAC_init(ctx, NULL, 0, NULL); RS256/ES256/EdDSA = EVP_DigestVerifyInit + "
           "EVP_DigestVerify per call on a reused EVP_MD_CTX, public EVP_PKEY parsed once "
           "(ES256 signature as DER, prepared once)\n");
    printf("%s; %s", OpenSSL_version(OPENSSL_VERSION), "library " IAM_VERSION_STRING);
#ifndef __OPTIMIZE__
    printf("; WARNING: bench built without optimisation");
#endif
    printf("\n");

    if (extra) {
        printf("\nSupplement: other ways to call OpenSSL for the same verification "
               "(median ns per call, same run)\n\n");
        printf("| algorithm | OpenSSL call pattern | median ns | IQR/median |\n|---|---|---:|---:|\n");
        for (int i = 0; i < 4; i++)
            for (size_t k = 0; k < ncases; k++)
                if (cases[k].role != 0 && strcmp(cases[k].alg, algs[i].alg) == 0)
                    printf("| %s | %s | %.0f | %.0f%% |\n", cases[k].alg, cases[k].what,
                           cases[k].median, cases[k].spread * 100);
    }

    for (int i = 0; i < 4; i++)
        teardown_alg(&algs[i]);
    free(claims);
    if (failures) {
        fprintf(stderr, "bench_verify: %zu verification calls failed\n", failures);
        return 1;
    }
    return 0;
}
