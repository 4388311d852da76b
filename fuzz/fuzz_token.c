/*
 * fuzz_token.c — libFuzzer target for the token path.
 *
 * Every input is fed, as given (no terminator added, so an over-read is caught by ASan), to
 *   - iam_token_verify  (full verification: strict JWS, signature, claims) and
 *   - iam_jws_verify    (JWS only),
 * against one keyset built once in LLVMFuzzerInitialize: the platform cases' HMAC secret,
 * the cases' RSA-2048 key (kid r1), their P-256 key (kid e1) and the RFC 8037 Ed25519
 * public key (no kid). The corpus tokens therefore reach signature and claim checks.
 *
 * Inputs that contain a NUL byte are also read as  header-JSON \0 payload-JSON [\0 ...]
 * and turned into a compact JWS signed here with HMAC-SHA256 under the same secret, so
 * the fuzzer can mutate the JSON directly and still get past the signature check to
 * the header and claim parsers (a real token never contains a NUL, so the two readings
 * do not interfere).
 *
 * Invariants checked (abort() = a finding): a failure leaves *out / *payload NULL, every
 * status is one the API names, the error message is NUL-terminated, a payload is
 * NUL-terminated at payload_len. Everything allocated per input is released.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "iamclient.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The secret of /work/shared/cases/tokens.json (44 bytes). */
static const char HMAC_SECRET[] = "case-secret-0123456789abcdef0123456789abcdef";

/* Public keys of /work/shared/cases/tokens.json (RSA-2048 r1, P-256 e1). */
static const char RSA_JWK[] =
    "{\"kty\":\"RSA\",\"kid\":\"r1\",\"alg\":\"RS256\",\"use\":\"sig\",\"n\":\"q3aOzGGbvNF9H6"
    "MBfs9XCWHnIHlAAlvZoWw6g4LSl2XL2GLLTzKDOTcbT7G9_QmfrIhyAMHaF0Q8MCdnZdZpBiH9XGdL-b4myGv1-2"
    "dRe0x4_0amuOkZUOsj-YRz3Hfg_suvSHvoW9A2XSBsBAa2J3PbCElAU-saE3Ir8uFST3N-_0FnQ079Q7RJPwQ7Vk"
    "xwxNNf9NcEW8JGYXgrJPFuc4VFEiCbMZPygviJgWkdzcFOh9poG4qHp5NsBowJT-a2EoAFZRv8F1CaoNUnbUi3aE"
    "vjb55RDsBbM-fSKcUSW6ULPUy6sRL-WAz6pa4D5mxxfbnVtu_2W8Ek1lxzQigysQ\",\"e\":\"AQAB\"}";
static const char EC_JWK[] =
    "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"alg\":\"ES256\",\"use\":\"sig\",\"x\""
    ":\"9NGg9SjkN78h2mXlXAz5d3N9zDx83JQg8y2LPYxTi-s\",\"y\":\"VJlntttIEUmxbHvaPJWOmsPMje9vpdx"
    "cyPOQzGASa1I\"}";
/* RFC 8037 Appendix A.1 public key (public part only). */
static const char ED25519_JWK[] =
    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    "\"}";

/* The cases' verification time. */
#define FUZZ_NOW 1900000000

static iam_keyset *g_keys;
/* A non-NULL value the library must overwrite with NULL on failure. */
static char g_sentinel;

static void release_keys(void)
{
    iam_keyset_release(g_keys);
    g_keys = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_keys = iam_keyset_new();
    if (!g_keys)
        abort();
    iam_error err;
    if (iam_keyset_add_hmac(g_keys, HMAC_SECRET, sizeof HMAC_SECRET - 1, NULL, &err) != IAM_OK ||
        iam_keyset_add_jwk(g_keys, RSA_JWK, sizeof RSA_JWK - 1, &err) != IAM_OK ||
        iam_keyset_add_jwk(g_keys, EC_JWK, sizeof EC_JWK - 1, &err) != IAM_OK ||
        iam_keyset_add_jwk(g_keys, ED25519_JWK, sizeof ED25519_JWK - 1, &err) != IAM_OK ||
        iam_keyset_count(g_keys) != 4)
        abort();
    atexit(release_keys);
    return 0;
}

static void check_status(iam_status st, const iam_error *err)
{
    if (strcmp(iam_status_name(st), "unknown") == 0 || iam_strerror(st) == NULL)
        abort();
    if (st != IAM_OK && memchr(err->message, '\0', sizeof err->message) == NULL)
        abort();
}

static void touch_list(const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!list || !list[i])
            abort();
}

/* Reads every accessor of a verified context, as an application would. */
static void use_user(const iam_user *u)
{
    size_t n = 0;
    volatile size_t sink = 0;
    const char *s[] = {iam_user_id(u),        iam_user_client_id(u),  iam_user_email(u),
                       iam_user_org_id(u),    iam_user_team_id(u),    iam_user_team_role(u),
                       iam_user_idp_org_id(u), iam_user_auth_method(u), iam_user_token_type(u),
                       iam_user_jti(u),       iam_user_issuer(u)};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (s[i])
            sink += strlen(s[i]);
    sink += (size_t)iam_user_kind(u) + (size_t)iam_user_token_version(u) +
            (size_t)iam_user_mfa_verified(u) + (size_t)iam_user_expires_at(u);
    touch_list(iam_user_roles(u, &n), n);
    touch_list(iam_user_permissions(u, &n), n);
    touch_list(iam_user_org_roles(u, &n), n);
    touch_list(iam_user_scopes(u, &n), n);
    static const char *const wanted[] = {"admin", "user", "dataset.read"};
    sink += iam_user_has_role(u, "admin") + iam_user_has_permission(u, "dataset.read") +
            iam_user_has_any_role(u, wanted, 3) + iam_user_has_any_permission(u, wanted, 3) +
            iam_user_in_org(u, "7");
    size_t plen = 0;
    const char *payload = iam_user_payload(u, &plen);
    if (!payload)
        abort();
    char *claim = iam_user_claim_json(u, "sub");
    iam_free(claim);
    claim = iam_user_claim_json(u, "aud");
    iam_free(claim);
    char *json = iam_user_to_json(u);
    if (json)
        sink += strlen(json);
    iam_free(json);
    (void)sink;
}

static void verify_token(const char *tok, size_t len)
{
    static const iam_verify_options permissive = {
        .leeway_s = 86400,
        .flags = IAM_VERIFY_SKIP_AUDIENCE | IAM_VERIFY_SKIP_ISSUER | IAM_VERIFY_ANY_TYPE};
    const iam_verify_options *opts[] = {NULL, &permissive};
    for (size_t i = 0; i < 2; i++) {
        iam_user *u = (iam_user *)(void *)&g_sentinel;
        iam_error err;
        memset(&err, 0x41, sizeof err);
        iam_status st = iam_token_verify(tok, len, g_keys, opts[i], FUZZ_NOW, &u, &err);
        check_status(st, &err);
        if (st != IAM_OK) {
            if (u != NULL)
                abort();
            continue;
        }
        if (!u)
            abort();
        use_user(u);
        iam_user *again = iam_user_retain(u);
        iam_user_release(again);
        iam_user_release(u);
    }

    char *payload = &g_sentinel;
    size_t payload_len = 0;
    iam_error err;
    memset(&err, 0x41, sizeof err);
    iam_status st = iam_jws_verify(tok, len, g_keys, &payload, &payload_len, &err);
    check_status(st, &err);
    if (st != IAM_OK) {
        if (payload != NULL)
            abort();
        return;
    }
    if (!payload || payload[payload_len] != '\0')
        abort();
    iam_free(payload);
}

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
    }
    return o;
}

/* header \0 payload [\0 ignored]  ->  b64(header).b64(payload).b64(HMAC-SHA256) */
static void verify_structured(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul)
        return;
    size_t hlen = (size_t)(nul - data);
    const uint8_t *pay = nul + 1;
    size_t plen = size - hlen - 1;
    const uint8_t *end = memchr(pay, 0, plen);
    if (end)
        plen = (size_t)(end - pay);

    size_t cap = (hlen + plen) / 3 * 4 + 8 + 2 + 43 + 1;
    char *tok = malloc(cap);
    if (!tok)
        return;
    size_t n = b64url(data, hlen, tok);
    tok[n++] = '.';
    n += b64url(pay, plen, tok + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), HMAC_SECRET, (int)(sizeof HMAC_SECRET - 1), (const unsigned char *)tok,
              n, mac, &mac_len))
        abort();
    tok[n++] = '.';
    n += b64url(mac, mac_len, tok + n);
    verify_token(tok, n);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    verify_token((const char *)data, size);
    verify_structured(data, size);
    return 0;
}
