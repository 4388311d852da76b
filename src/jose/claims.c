/* claims.c — the claim set as a claim_index (claims_parse on the verification path, claims_index
 * over a general parse as its reference) and the registered-claim checks (RFC 7519 §4.1)
 * under an iam_verify_options policy. */
#include "jose/jose.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define CLAIM(name) {#name, sizeof #name - 1, offsetof(claim_index, name)}
static const struct {
    const char *name;
    size_t len;
    size_t offset;
} CLAIMS[] = {
    CLAIM(sub), CLAIM(exp), CLAIM(type), CLAIM(iss), CLAIM(aud), CLAIM(jti), CLAIM(email),
    CLAIM(roles), CLAIM(permissions), CLAIM(org_id), CLAIM(org_role), CLAIM(team_id),
    CLAIM(team_role), CLAIM(auth_method), CLAIM(idp_org_id), CLAIM(token_version),
    CLAIM(mfa_verified), CLAIM(nbf), CLAIM(iat), CLAIM(client_id), CLAIM(scopes),
};
#undef CLAIM

/* The claims above as json_parse_picked's name table: each name at JSON_PICK_HASH of
 * itself, slot1 = the position of its field in claim_index + 1 (so picked[] is laid out as
 * a claim_index). The hash is distinct for every name here; test_claims_diff checks that
 * each is found (and near misses are not). */
#define FIELD(name) (offsetof(claim_index, name) / sizeof(size_t) + 1)
static const json_pick_entry CLAIM_NAMES[64] = {
    [1] = {"iss", 3, FIELD(iss)},
    [3] = {"roles", 5, FIELD(roles)},
    [4] = {"scopes", 6, FIELD(scopes)},
    [9] = {"permissions", 11, FIELD(permissions)},
    [11] = {"iat", 3, FIELD(iat)},
    [23] = {"sub", 3, FIELD(sub)},
    [25] = {"token_version", 13, FIELD(token_version)},
    [29] = {"jti", 3, FIELD(jti)},
    [35] = {"exp", 3, FIELD(exp)},
    [43] = {"aud", 3, FIELD(aud)},
    [46] = {"org_id", 6, FIELD(org_id)},
    [47] = {"team_id", 7, FIELD(team_id)},
    [49] = {"client_id", 9, FIELD(client_id)},
    [50] = {"idp_org_id", 10, FIELD(idp_org_id)},
    [51] = {"auth_method", 11, FIELD(auth_method)},
    [52] = {"mfa_verified", 12, FIELD(mfa_verified)},
    [54] = {"type", 4, FIELD(type)},
    [58] = {"org_role", 8, FIELD(org_role)},
    [59] = {"team_role", 9, FIELD(team_role)},
    [61] = {"email", 5, FIELD(email)},
    [63] = {"nbf", 3, FIELD(nbf)},
};
#undef FIELD

void claims_index(const json_doc *d, claim_index *ix)
{
    memset(ix, 0, sizeof *ix);
    for (size_t k = 1, m = 0; m < d->nodes[0].len; m++, k = d->nodes[k + 1].next) {
        const json_node *key = &d->nodes[k];
        for (size_t c = 0; c < sizeof CLAIMS / sizeof CLAIMS[0]; c++)
            if (json_span_eq(key->str, key->len, CLAIMS[c].name, CLAIMS[c].len))
                *(size_t *)(void *)((char *)ix + CLAIMS[c].offset) = k + 1;
    }
}

#define NCLAIMS (sizeof CLAIMS / sizeof CLAIMS[0])
_Static_assert(sizeof(claim_index) == NCLAIMS * sizeof(size_t),
               "claim_index is NCLAIMS size_t fields, no padding: an array of them has its layout");

iam_status claims_parse(json_doc *doc, claim_index *ix, const char *text, size_t len,
                        json_node *node_buf, size_t node_cap, char *scratch_buf, size_t scratch_cap,
                        iam_error *err)
{
    static const json_limits limits = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};
    size_t picked[NCLAIMS];
    iam_status st = json_parse_picked(doc, text, len, &limits, CLAIM_NAMES, picked, NCLAIMS, node_buf,
                                      node_cap, scratch_buf, scratch_cap, "claims", err);
    if (st != IAM_OK)
        return st;
    if (doc->nodes[0].type != JSON_OBJECT) {
        json_doc_free(doc);
        return iam_fail(err, IAM_E_MALFORMED, "claims are not a JSON object");
    }
    memcpy(ix, picked, sizeof *ix); /* picked[] is in claim_index's field order */
    return IAM_OK;
}

/* A NumericDate: a JSON number (integer or not), finite, within [0, IAM_MAX_NUMERIC_DATE].
 * Returns 0 when absent, 1 when valid, -1 when present but invalid. */
static int numeric_date(const json_doc *d, size_t v, double *out)
{
    if (!v)
        return 0;
    double x;
    if (!json_number(d, v, &x) || !isfinite(x) || x < 0 || x > IAM_MAX_NUMERIC_DATE)
        return -1;
    *out = x;
    return 1;
}

/* Node i is a string equal to want[0..want_len). */
static inline bool str_is(const json_doc *d, size_t i, const char *want, size_t want_len)
{
    const json_node *n = &d->nodes[i];
    return n->type == JSON_STRING && json_span_eq(n->str, n->len, want, want_len);
}

/* A policy string and its length (the default's length known at compile time). */
#define POLICY(opt, dflt, len_out)                                                           \
    ((opt) ? ((len_out) = strlen(opt), (opt)) : ((len_out) = sizeof dflt - 1, dflt))

static iam_status check_audience(const json_doc *d, size_t v, const char *want, size_t want_len,
                                 iam_error *err)
{
    if (!v)
        return iam_fail(err, IAM_E_MISSING_CLAIM, "token has no \"aud\" claim");
    const json_node *a = &d->nodes[v];
    if (a->type == JSON_STRING)
        return str_is(d, v, want, want_len)
                   ? IAM_OK
                   : iam_fail(err, IAM_E_WRONG_AUDIENCE, "token \"aud\" does not name this audience");
    if (a->type != JSON_ARRAY)
        return iam_fail(err, IAM_E_INVALID_CLAIM, "\"aud\" must be a string or an array of strings");
    bool found = false;
    for (size_t i = json_first_child(d, v), m = 0; m < a->len; m++, i = json_next_sibling(d, i)) {
        if (d->nodes[i].type != JSON_STRING)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"aud\" array holds a non-string member");
        found = found || str_is(d, i, want, want_len);
    }
    return found ? IAM_OK
                 : iam_fail(err, IAM_E_WRONG_AUDIENCE, "token \"aud\" does not name this audience");
}

iam_status claims_check(const json_doc *d, const claim_index *ix, const iam_verify_options *opts,
                        int64_t now_s, double *exp_out, iam_error *err)
{
    static const iam_verify_options defaults = {0};
    if (!opts)
        opts = &defaults;
    if (opts->leeway_s < 0 || opts->leeway_s > 86400)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "leeway must be 0 to 86400 seconds");
    double now = (double)now_s, leeway = (double)opts->leeway_s;

    double exp = 0, nbf = 0, iat = 0;
    int has = numeric_date(d, ix->exp, &exp);
    if (has == 0)
        return iam_fail(err, IAM_E_MISSING_CLAIM, "token has no \"exp\" claim");
    if (has < 0)
        return iam_fail(err, IAM_E_INVALID_CLAIM,
                        "\"exp\" must be a number between 0 and year 9999");
    if (now >= exp + leeway)
        return iam_fail(err, IAM_E_EXPIRED, "token expired %.0f s ago (leeway %lld s)", now - exp,
                        (long long)opts->leeway_s);
    if ((has = numeric_date(d, ix->nbf, &nbf)) < 0)
        return iam_fail(err, IAM_E_INVALID_CLAIM, "\"nbf\" must be a number between 0 and year 9999");
    if (has && nbf > now + leeway)
        return iam_fail(err, IAM_E_NOT_YET_VALID, "token is not valid for another %.0f s", nbf - now);
    if ((has = numeric_date(d, ix->iat, &iat)) < 0)
        return iam_fail(err, IAM_E_INVALID_CLAIM, "\"iat\" must be a number between 0 and year 9999");
    if (has && iat > now + leeway)
        return iam_fail(err, IAM_E_NOT_YET_VALID, "token is issued %.0f s in the future", iat - now);

    if (!(opts->flags & IAM_VERIFY_SKIP_ISSUER)) {
        size_t want_len;
        const char *want = POLICY(opts->issuer, IAM_DEFAULT_ISSUER, want_len);
        size_t v = ix->iss;
        if (!v)
            return iam_fail(err, IAM_E_MISSING_CLAIM, "token has no \"iss\" claim");
        if (d->nodes[v].type != JSON_STRING)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"iss\" must be a string");
        if (!str_is(d, v, want, want_len))
            return iam_fail(err, IAM_E_WRONG_ISSUER, "token \"iss\" is not the expected issuer");
    }
    if (!(opts->flags & IAM_VERIFY_SKIP_AUDIENCE)) {
        size_t want_len;
        const char *want = POLICY(opts->audience, IAM_DEFAULT_AUDIENCE, want_len);
        iam_status st = check_audience(d, ix->aud, want, want_len, err);
        if (st != IAM_OK)
            return st;
    }
    if (!(opts->flags & IAM_VERIFY_ANY_TYPE)) {
        size_t want_len;
        const char *want = POLICY(opts->token_type, IAM_DEFAULT_TOKEN_TYPE, want_len);
        size_t v = ix->type;
        if (!v)
            return iam_fail(err, IAM_E_WRONG_TYPE, "token has no \"type\" claim; \"%s\" is required",
                            want);
        if (d->nodes[v].type != JSON_STRING)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"type\" must be a string");
        if (!str_is(d, v, want, want_len))
            return iam_fail(err, IAM_E_WRONG_TYPE, "token \"type\" is not \"%s\"", want);
    }
    *exp_out = exp;
    return IAM_OK;
}
