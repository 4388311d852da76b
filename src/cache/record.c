/* record.c — shared-cache records (see record.h). */
#include "cache/record.h"
#include "identity/identity.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const json_limits RECORD_LIMITS = {IAM_MAX_JSON_DEPTH + 1, IAM_MAX_JSON_MEMBERS};
static const json_limits CLAIM_LIMITS = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char H[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = H[b[i] >> 4];
        out[2 * i + 1] = H[b[i] & 15];
    }
    out[2 * n] = '\0';
}

bool record_keys_init(record_keys *rk, const unsigned char *secret, size_t len)
{
    memset(rk, 0, sizeof *rk);
    hmac_states *root = hmac_states_new(secret, len);
    if (!root)
        return false;
    /* Distinct labels: a key-derivation output can never serve as a MAC and vice versa. */
    static const char KL[] = "omnibioai-iam shared-cache record key v1";
    static const char ML[] = "omnibioai-iam shared-cache record mac v1";
    unsigned char k[64];
    hmac_compute(root, HASH_SHA256, (const unsigned char *)KL, sizeof KL - 1, k);
    rk->key_mac = hmac_states_new(k, 32);
    hmac_compute(root, HASH_SHA256, (const unsigned char *)ML, sizeof ML - 1, k);
    rk->body_mac = hmac_states_new(k, 32);
    OPENSSL_cleanse(k, sizeof k);
    hmac_states_free(root);
    if (!rk->key_mac || !rk->body_mac) {
        record_keys_free(rk);
        return false;
    }
    return true;
}

void record_keys_free(record_keys *rk)
{
    hmac_states_free(rk->key_mac);
    hmac_states_free(rk->body_mac);
    rk->key_mac = rk->body_mac = NULL;
}

/* Appends a context part: a marker for absent vs present, the bytes, a terminator. */
static size_t put_part(char *out, size_t at, const char *name, const char *v)
{
    at += (size_t)sprintf(out + at, "%s%c", name, v ? '=' : '!');
    if (v) {
        size_t n = strlen(v);
        memcpy(out + at, v, n);
        at += n;
    }
    out[at++] = '\n';
    return at;
}

void record_ctx_init(record_ctx *ctx, const record_keys *rk, const char *audience, const char *issuer)
{
    /* Audience and issuer are bounded by IAM_MAX_URL_BYTES-like limits at client creation;
     * longer ones are truncated into their digest below, never overflowing the label. */
    char a[IAM_MAX_URL_BYTES + 1] = "", i[IAM_MAX_URL_BYTES + 1] = "";
    if (audience)
        snprintf(a, sizeof a, "%s", audience);
    if (issuer)
        snprintf(i, sizeof i, "%s", issuer);
    size_t at = put_part(ctx->label, 0, "aud", audience ? a : NULL);
    at = put_part(ctx->label, at, "iss", issuer ? i : NULL);
    ctx->label_len = at;
    unsigned char mac[64];
    hmac_compute(rk->key_mac, HASH_SHA256, (const unsigned char *)ctx->label, at, mac);
    hex(mac, 8, ctx->id);
}

void record_key(const record_keys *rk, const record_ctx *ctx, const char *token, size_t len,
                char out[RECORD_KEY_LEN + 1])
{
    unsigned char buf[sizeof ctx->label + 1 + IAM_MAX_TOKEN_BYTES];
    if (len > IAM_MAX_TOKEN_BYTES)
        len = IAM_MAX_TOKEN_BYTES; /* callers refuse longer tokens before this */
    memcpy(buf, ctx->label, ctx->label_len);
    buf[ctx->label_len] = 0;
    memcpy(buf + ctx->label_len + 1, token, len);
    unsigned char mac[64];
    hmac_compute(rk->key_mac, HASH_SHA256, buf, ctx->label_len + 1 + len, mac);
    memcpy(out, RECORD_KEY_PREFIX, sizeof RECORD_KEY_PREFIX - 1);
    hex(mac, 32, out + sizeof RECORD_KEY_PREFIX - 1);
}

void record_user_key(const record_keys *rk, const char *user_id, char out[RECORD_USER_KEY_LEN + 1])
{
    /* "user\n" keeps this domain apart from record keys (whose input starts "aud"). */
    size_t n = strlen(user_id);
    if (n > IAM_MAX_KID_BYTES)
        n = IAM_MAX_KID_BYTES;
    unsigned char buf[5 + IAM_MAX_KID_BYTES], mac[64];
    memcpy(buf, "user\n", 5);
    memcpy(buf + 5, user_id, n);
    hmac_compute(rk->key_mac, HASH_SHA256, buf, 5 + n, mac);
    memcpy(out, RECORD_USER_KEY_PREFIX, sizeof RECORD_USER_KEY_PREFIX - 1);
    hex(mac, 32, out + sizeof RECORD_USER_KEY_PREFIX - 1);
}

/* MAC over key "\n" body, as 64 hex digits. */
static bool body_mac(const record_keys *rk, const char *key, const char *body, size_t n, char out[65])
{
    size_t kl = strlen(key);
    unsigned char *buf = malloc(kl + 1 + n);
    if (!buf)
        return false;
    memcpy(buf, key, kl);
    buf[kl] = '\n';
    memcpy(buf + kl + 1, body, n);
    unsigned char mac[64];
    hmac_compute(rk->body_mac, HASH_SHA256, buf, kl + 1 + n, mac);
    free(buf);
    hex(mac, 32, out);
    return true;
}

typedef struct span {
    size_t start, len;
    const char *text; /* replacement: a decimal id, quoted on output */
} span;

/* The claim set with integer identifiers rewritten as strings (exact: the replacement is
 * the user context's own decimal text). Caller frees. */
static char *normalised_claims(const iam_user *u, size_t *out_len)
{
    size_t len;
    const char *payload = iam_user_payload(u, &len);
    json_doc d;
    if (json_parse(&d, payload, len, &CLAIM_LIMITS, NULL, 0, NULL, 0, "claims", NULL) != IAM_OK)
        return NULL;
    static const char *const NAMES[] = {"org_id", "team_id", "idp_org_id"};
    const char *values[] = {iam_user_org_id(u), iam_user_team_id(u), iam_user_idp_org_id(u)};
    span spans[3];
    size_t ns = 0, extra = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t n = json_get(&d, 0, NAMES[i]);
        if (!n || d.nodes[n].type != JSON_NUMBER || !values[i])
            continue;
        span s = {0, 0, values[i]};
        if (!json_member_text(&d, payload, len, NAMES[i], &s.start, &s.len))
            continue;
        size_t k = ns++;
        while (k > 0 && spans[k - 1].start > s.start) { /* keep in text order */
            spans[k] = spans[k - 1];
            k--;
        }
        spans[k] = s;
        extra += strlen(values[i]) + 2;
    }
    json_doc_free(&d);
    char *out = malloc(len + extra + 1);
    if (!out)
        return NULL;
    size_t at = 0, from = 0;
    for (size_t i = 0; i < ns; i++) {
        memcpy(out + at, payload + from, spans[i].start - from);
        at += spans[i].start - from;
        at += (size_t)sprintf(out + at, "\"%s\"", spans[i].text);
        from = spans[i].start + spans[i].len;
    }
    memcpy(out + at, payload + from, len - from);
    at += len - from;
    out[at] = '\0';
    *out_len = at;
    return out;
}

char *record_encode(const record_keys *rk, const record_ctx *ctx, const char *key, const iam_user *u,
                    size_t *out_len)
{
    size_t cl;
    char *claims = normalised_claims(u, &cl);
    if (!claims)
        return NULL;
    static const char HEAD[] = "{\"v\":1,\"ctx\":\"";
    size_t body_len = sizeof HEAD - 1 + 16 + 12 + cl + 1;
    /* "v1." + 64 hex + "." + body */
    char *out = malloc(3 + 64 + 1 + body_len + 1);
    if (!out) {
        free(claims);
        return NULL;
    }
    char *body = out + 3 + 64 + 1;
    int n = sprintf(body, "%s%s\",\"claims\":", HEAD, ctx->id);
    memcpy(body + n, claims, cl);
    body[n + cl] = '}';
    body[n + cl + 1] = '\0';
    body_len = (size_t)n + cl + 1;
    free(claims);
    char mac[65];
    if (!body_mac(rk, key, body, body_len, mac)) {
        free(out);
        return NULL;
    }
    memcpy(out, "v1.", 3);
    memcpy(out + 3, mac, 64);
    out[67] = '.';
    *out_len = 68 + body_len;
    return out;
}

record_result record_decode(const record_keys *rk, const record_ctx *ctx, const char *key,
                            const char *value, size_t len, const iam_verify_options *vo,
                            int64_t now_s, iam_user **out, iam_status *st, iam_error *err)
{
    *out = NULL;
    *st = IAM_OK;
    if (len < 69 || len > IAM_MAX_RECORD_BYTES || memcmp(value, "v1.", 3) != 0 || value[67] != '.')
        return RECORD_BAD;
    const char *body = value + 68;
    size_t body_len = len - 68;
    char mac[65];
    if (!body_mac(rk, key, body, body_len, mac))
        return RECORD_BAD; /* OOM: not trusted, and removal is harmless */
    if (CRYPTO_memcmp(mac, value + 3, 64) != 0)
        return RECORD_BAD;
    /* Authentic from here on: written by a holder of the cache secret for this key. The
     * body is still parsed strictly and its context compared (a defence in depth against a
     * writer with the secret but another configuration). */
    /* Typical records parse with no allocation (as token claims do). */
    json_node nodes[256];
    char scratch[1024];
    json_doc d;
    if (json_parse(&d, body, body_len, &RECORD_LIMITS, nodes, 256, scratch, sizeof scratch, "record", NULL) !=
        IAM_OK)
        return RECORD_BAD;
    size_t v = json_get(&d, 0, "v"), c = json_get(&d, 0, "ctx"), cl = json_get(&d, 0, "claims");
    int64_t version;
    bool ok = d.nodes[0].type == JSON_OBJECT && v && json_integer(&d, v, 10, &version) && version == 1 &&
              c && json_str_eq(&d, c, ctx->id) && cl && d.nodes[cl].type == JSON_OBJECT;
    size_t cs = 0, cn = 0;
    if (ok)
        ok = json_member_text(&d, body, body_len, "claims", &cs, &cn);
    json_doc_free(&d);
    if (!ok)
        return RECORD_BAD;
    /* The claims stage of a token (iam_token_verify after the signature); a claim set that
     * does not even parse is a bad record, a parsed one that fails a check a refusal. */
    *st = claims_to_user(body + cs, cn, vo, now_s, out, err);
    if (*st == IAM_E_MALFORMED || *st == IAM_E_TOO_LARGE || *st == IAM_E_NOMEM)
        return RECORD_BAD;
    return *st == IAM_OK ? RECORD_OK : RECORD_REFUSED;
}
