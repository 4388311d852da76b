/* jws.c — compact JWS: strict parsing, header rules, key selection, signature check. */
#include "jose/b64url.h"
#include "jose/jose.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

const canonical_header JOSE_CANONICAL_HEADERS[] = {
    {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", sizeof "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" - 1, "HS256"}, /* {\"alg\":\"HS256\",\"typ\":\"JWT\"} */
    {"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9", sizeof "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9" - 1, "HS256"}, /* {\"typ\":\"JWT\",\"alg\":\"HS256\"} */
    {"eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9", sizeof "eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9" - 1, "HS384"}, /* {\"alg\":\"HS384\",\"typ\":\"JWT\"} */
    {"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzM4NCJ9", sizeof "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzM4NCJ9" - 1, "HS384"}, /* {\"typ\":\"JWT\",\"alg\":\"HS384\"} */
    {"eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9", sizeof "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9" - 1, "HS512"}, /* {\"alg\":\"HS512\",\"typ\":\"JWT\"} */
    {"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9", sizeof "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9" - 1, "HS512"}, /* {\"typ\":\"JWT\",\"alg\":\"HS512\"} */
};
const size_t JOSE_CANONICAL_HEADER_COUNT = sizeof JOSE_CANONICAL_HEADERS / sizeof JOSE_CANONICAL_HEADERS[0];

static const json_limits HEADER_LIMITS = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};

/* Header parameters defined by RFC 7515/7518: never valid inside `crit` (§4.1.11). */
static const char *const REGISTERED[] = {"alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t",
                                         "x5t#S256", "typ", "cty", "crit", "enc", "zip",
                                         "epk", "apu", "apv", "iv", "tag", "p2s", "p2c"};

static bool is_registered(const json_node *n)
{
    for (size_t i = 0; i < sizeof REGISTERED / sizeof REGISTERED[0]; i++)
        if (json_span_eq(n->str, n->len, REGISTERED[i], strlen(REGISTERED[i])))
            return true;
    return false;
}

/* RFC 7515 §4.1.11: a non-empty array of distinct-from-registered names that are all
 * present in the header. This library implements no extension, so a well-formed crit
 * always means "not understood". */
static iam_status check_crit(const json_doc *h, size_t crit, iam_error *err)
{
    const json_node *c = &h->nodes[crit];
    if (c->type != JSON_ARRAY || c->len == 0)
        return iam_fail(err, IAM_E_MALFORMED, "header \"crit\" must be a non-empty array");
    for (size_t i = json_first_child(h, crit), m = 0; m < c->len; m++, i = json_next_sibling(h, i)) {
        const json_node *name = &h->nodes[i];
        if (name->type != JSON_STRING || name->len == 0)
            return iam_fail(err, IAM_E_MALFORMED, "header \"crit\" must list names as strings");
        if (is_registered(name))
            return iam_fail(err, IAM_E_MALFORMED, "header \"crit\" lists a registered parameter");
        bool present = false;
        for (size_t k = 1, mm = 0; mm < h->nodes[0].len; mm++, k = h->nodes[k + 1].next)
            present = present || json_span_eq(h->nodes[k].str, h->nodes[k].len, name->str, name->len);
        if (!present)
            return iam_fail(err, IAM_E_MALFORMED, "header \"crit\" names a parameter the header lacks");
    }
    return iam_fail(err, IAM_E_UNSUPPORTED_CRIT,
                    "header \"crit\" requires an extension this verifier does not implement");
}

static bool typ_is_jwt(const json_doc *h, size_t typ)
{
    if (!typ)
        return true;
    const json_node *t = &h->nodes[typ];
    if (t->type != JSON_STRING)
        return false;
    static const char *const OK[] = {"JWT", "at+jwt", "application/jwt", "application/at+jwt"};
    for (size_t i = 0; i < sizeof OK / sizeof OK[0]; i++)
        if (t->len == strlen(OK[i]) && strncasecmp(t->str, OK[i], t->len) == 0)
            return true;
    return false;
}

/* Tries keys per the selection rules in iamclient.h. */
static iam_status select_and_verify(const iam_keyset *ks, const alg_info *alg, const char *kid,
                                    size_t kid_len, const unsigned char *input, size_t input_len,
                                    const unsigned char *sig, size_t sig_len, iam_error *err)
{
    bool kid_named = false, tried = false;
    if (kid) {
        for (size_t i = 0; i < ks->count; i++) {
            const iam_key *k = &ks->keys[i];
            if (!k->kid || !json_span_eq(k->kid, k->kid_len, kid, kid_len))
                continue;
            kid_named = true;
            if (!key_fits_alg(k, alg))
                continue;
            tried = true;
            iam_status st = key_verify(ks, k, alg, input, input_len, sig, sig_len);
            if (st != IAM_E_BAD_SIGNATURE)
                return st == IAM_OK ? IAM_OK : iam_fail(err, st, "signature check failed internally");
        }
        if (kid_named && !tried)
            return iam_fail(err, IAM_E_UNKNOWN_KEY, "the key named by \"kid\" cannot verify %s",
                            alg->name);
    }
    if (!kid_named) {
        /* No kid, or a kid no key carries: keys of the right type (only kid-less ones
         * when the token named a kid). */
        for (size_t i = 0; i < ks->count; i++) {
            const iam_key *k = &ks->keys[i];
            if ((kid && k->kid) || !key_fits_alg(k, alg))
                continue;
            tried = true;
            iam_status st = key_verify(ks, k, alg, input, input_len, sig, sig_len);
            if (st != IAM_E_BAD_SIGNATURE)
                return st == IAM_OK ? IAM_OK : iam_fail(err, st, "signature check failed internally");
        }
    }
    if (!tried) {
        if (kid)
            return iam_fail(err, IAM_E_UNKNOWN_KEY, "no key with the token's \"kid\" can verify %s",
                            alg->name);
        return iam_fail(err, IAM_E_UNKNOWN_KEY, "no %s key held for %s", key_type_name(alg->key),
                        alg->name);
    }
    return iam_fail(err, IAM_E_BAD_SIGNATURE, "%s signature does not verify", alg->name);
}

/* Everything after the header: signature and payload segments, key selection, signature. */
static iam_status verify_rest(const char *jws, size_t len, const char *d1, const char *d2,
                              const iam_keyset *ks, const alg_info *alg, const char *kid,
                              size_t kid_len, unsigned char *payload_buf, jws_verified *out,
                              iam_error *err)
{
    size_t p64_len = (size_t)(d2 - d1 - 1), s64_len = (size_t)(jws + len - d2 - 1);
    unsigned char sig[JOSE_MAX_SIG_BYTES + 3];
    size_t sig_len;
    if (s64_len > (JOSE_MAX_SIG_BYTES + 2) / 3 * 4)
        return iam_fail(err, IAM_E_BAD_SIGNATURE, "signature is longer than any key allows");
    if (!b64url_decode(d2 + 1, s64_len, sig, &sig_len))
        return iam_fail(err, IAM_E_MALFORMED, "signature segment is not strict base64url");
    /* The payload segment must be strict base64url before anything is trusted. */
    size_t plen;
    if (!b64url_decode(d1 + 1, p64_len, payload_buf, &plen))
        return iam_fail(err, IAM_E_MALFORMED, "payload segment is not strict base64url");
    iam_status st = select_and_verify(ks, alg, kid, kid_len, (const unsigned char *)jws,
                                      (size_t)(d2 - jws), sig, sig_len, err);
    if (st != IAM_OK)
        return st;
    out->alg = alg;
    out->payload = payload_buf;
    out->payload_len = plen;
    return IAM_OK;
}

iam_status jws_verify_compact(const char *jws, size_t len, const iam_keyset *ks,
                              unsigned char *payload_buf, jws_verified *out, iam_error *err)
{
    if (!jws || !ks)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "token and keyset are required");
    if (len > IAM_MAX_TOKEN_BYTES)
        return iam_fail(err, IAM_E_TOO_LARGE, "token is %zu bytes; the limit is %d", len,
                        IAM_MAX_TOKEN_BYTES);
    const char *d1 = memchr(jws, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(jws + len - d1 - 1)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', (size_t)(jws + len - d2 - 1)))
        return iam_fail(err, IAM_E_MALFORMED, "token must have exactly three segments");
    size_t h64_len = (size_t)(d1 - jws);
    if (h64_len == 0)
        return iam_fail(err, IAM_E_MALFORMED, "header segment is empty");

    for (size_t i = 0; i < JOSE_CANONICAL_HEADER_COUNT; i++) {
        const canonical_header *c = &JOSE_CANONICAL_HEADERS[i];
        if (h64_len == c->segment_len && memcmp(jws, c->segment, h64_len) == 0) {
            out->typ_is_jwt = true;
            return verify_rest(jws, len, d1, d2, ks, alg_find(c->alg, strlen(c->alg)), NULL, 0,
                               payload_buf, out, err);
        }
    }

    /* Header: decode, parse, read alg/kid/typ/crit. */
    unsigned char hbuf[IAM_MAX_TOKEN_BYTES / 4 * 3 + 2];
    size_t hlen;
    if (!b64url_decode(jws, h64_len, hbuf, &hlen))
        return iam_fail(err, IAM_E_MALFORMED, "header segment is not strict base64url");
    json_node hnodes[64];
    char hscratch[512];
    json_doc h;
    iam_status st = json_parse(&h, (const char *)hbuf, hlen, &HEADER_LIMITS, hnodes,
                               sizeof hnodes / sizeof hnodes[0], hscratch, sizeof hscratch,
                               "header", err);
    if (st != IAM_OK)
        return st;
    if (h.nodes[0].type != JSON_OBJECT) {
        json_doc_free(&h);
        return iam_fail(err, IAM_E_MALFORMED, "header is not a JSON object");
    }
    size_t a = json_get(&h, 0, "alg");
    const alg_info *alg = a && h.nodes[a].type == JSON_STRING
                              ? alg_find(h.nodes[a].str, h.nodes[a].len)
                              : NULL;
    if (!alg) {
        json_doc_free(&h);
        return iam_fail(err, IAM_E_UNSUPPORTED_ALG,
                        a ? "header \"alg\" is not a supported signature algorithm"
                          : "header has no \"alg\"");
    }
    size_t crit = json_get(&h, 0, "crit");
    if (crit && (st = check_crit(&h, crit, err)) != IAM_OK) {
        json_doc_free(&h);
        return st;
    }
    size_t kid = json_get(&h, 0, "kid");
    if (kid && (h.nodes[kid].type != JSON_STRING || h.nodes[kid].len > IAM_MAX_KID_BYTES ||
                h.nodes[kid].len == 0)) {
        json_doc_free(&h);
        return iam_fail(err, IAM_E_MALFORMED, "header \"kid\" must be a string of 1 to %d bytes",
                        IAM_MAX_KID_BYTES);
    }
    out->typ_is_jwt = typ_is_jwt(&h, json_get(&h, 0, "typ"));
    /* jwk, jku, x5u, x5c are deliberately never read: keys come only from the keyset. */
    st = verify_rest(jws, len, d1, d2, ks, alg, kid ? h.nodes[kid].str : NULL,
                     kid ? h.nodes[kid].len : 0, payload_buf, out, err);
    json_doc_free(&h); /* after: kid points into the header's storage */
    return st;
}

iam_status iam_jws_verify(const char *jws, size_t len, const iam_keyset *ks, char **payload,
                          size_t *payload_len, iam_error *err)
{
    if (payload)
        *payload = NULL;
    if (payload_len)
        *payload_len = 0;
    if (!payload)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "payload out-parameter is required");
    unsigned char buf[IAM_MAX_TOKEN_BYTES / 4 * 3 + 2];
    jws_verified v;
    iam_status st = jws_verify_compact(jws, len, ks, buf, &v, err);
    if (st != IAM_OK)
        return st;
    char *copy = malloc(v.payload_len + 1);
    if (!copy)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    memcpy(copy, v.payload, v.payload_len);
    copy[v.payload_len] = '\0';
    *payload = copy;
    if (payload_len)
        *payload_len = v.payload_len;
    return IAM_OK;
}
