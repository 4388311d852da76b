/* claims.c — registered-claim checks (RFC 7519 §4.1) under an iam_verify_options policy. */
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

/* Position in CLAIMS of the name (len, first byte, last byte), or -1. A claim set has ~17
 * members; this keeps locating them to a few compares each instead of a table scan. */
static int claim_slot(const char *name, size_t len)
{
    if (len < 3 || len > 13)
        return -1;
    unsigned key = (unsigned)len << 16 | (unsigned)(unsigned char)name[0] << 8 |
                   (unsigned char)name[len - 1];
#define K(l, a, z) ((unsigned)(l) << 16 | (unsigned)(a) << 8 | (unsigned)(z))
    int slot;
    switch (key) {
    case K(3, 's', 'b'): slot = 0; break;  /* sub */
    case K(3, 'e', 'p'): slot = 1; break;  /* exp */
    case K(4, 't', 'e'): slot = 2; break;  /* type */
    case K(3, 'i', 's'): slot = 3; break;  /* iss */
    case K(3, 'a', 'd'): slot = 4; break;  /* aud */
    case K(3, 'j', 'i'): slot = 5; break;  /* jti */
    case K(5, 'e', 'l'): slot = 6; break;  /* email */
    case K(5, 'r', 's'): slot = 7; break;  /* roles */
    case K(11, 'p', 's'): slot = 8; break; /* permissions */
    case K(6, 'o', 'd'): slot = 9; break;  /* org_id */
    case K(8, 'o', 'e'): slot = 10; break; /* org_role */
    case K(7, 't', 'd'): slot = 11; break; /* team_id */
    case K(9, 't', 'e'): slot = 12; break; /* team_role */
    case K(11, 'a', 'd'): slot = 13; break; /* auth_method */
    case K(10, 'i', 'd'): slot = 14; break; /* idp_org_id */
    case K(13, 't', 'n'): slot = 15; break; /* token_version */
    case K(12, 'm', 'd'): slot = 16; break; /* mfa_verified */
    case K(3, 'n', 'f'): slot = 17; break;  /* nbf */
    case K(3, 'i', 't'): slot = 18; break;  /* iat */
    case K(9, 'c', 'd'): slot = 19; break;  /* client_id */
    case K(6, 's', 's'): slot = 20; break;  /* scopes */
    default: return -1;
    }
#undef K
    return memcmp(name, CLAIMS[slot].name, len) == 0 ? slot : -1;
}

void claims_index(const json_doc *d, claim_index *ix)
{
    memset(ix, 0, sizeof *ix);
    for (size_t k = 1, m = 0; m < d->nodes[0].len; m++, k = d->nodes[k + 1].next) {
        const json_node *key = &d->nodes[k];
        int slot = claim_slot(key->str, key->len);
        if (slot >= 0)
            *(size_t *)(void *)((char *)ix + CLAIMS[slot].offset) = k + 1;
    }
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

static iam_status check_audience(const json_doc *d, size_t v, const char *want, iam_error *err)
{
    if (!v)
        return iam_fail(err, IAM_E_MISSING_CLAIM, "token has no \"aud\" claim");
    const json_node *a = &d->nodes[v];
    if (a->type == JSON_STRING)
        return json_str_eq(d, v, want)
                   ? IAM_OK
                   : iam_fail(err, IAM_E_WRONG_AUDIENCE, "token \"aud\" does not name this audience");
    if (a->type != JSON_ARRAY)
        return iam_fail(err, IAM_E_INVALID_CLAIM, "\"aud\" must be a string or an array of strings");
    bool found = false;
    for (size_t i = json_first_child(d, v), m = 0; m < a->len; m++, i = json_next_sibling(d, i)) {
        if (d->nodes[i].type != JSON_STRING)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"aud\" array holds a non-string member");
        found = found || json_str_eq(d, i, want);
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
        const char *want = opts->issuer ? opts->issuer : IAM_DEFAULT_ISSUER;
        size_t v = ix->iss;
        if (!v)
            return iam_fail(err, IAM_E_MISSING_CLAIM, "token has no \"iss\" claim");
        if (d->nodes[v].type != JSON_STRING)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"iss\" must be a string");
        if (!json_str_eq(d, v, want))
            return iam_fail(err, IAM_E_WRONG_ISSUER, "token \"iss\" is not the expected issuer");
    }
    if (!(opts->flags & IAM_VERIFY_SKIP_AUDIENCE)) {
        iam_status st = check_audience(d, ix->aud, opts->audience ? opts->audience : IAM_DEFAULT_AUDIENCE, err);
        if (st != IAM_OK)
            return st;
    }
    if (!(opts->flags & IAM_VERIFY_ANY_TYPE)) {
        const char *want = opts->token_type ? opts->token_type : IAM_DEFAULT_TOKEN_TYPE;
        size_t v = ix->type;
        if (!v)
            return iam_fail(err, IAM_E_WRONG_TYPE, "token has no \"type\" claim; \"%s\" is required",
                            want);
        if (d->nodes[v].type != JSON_STRING)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"type\" must be a string");
        if (!json_str_eq(d, v, want))
            return iam_fail(err, IAM_E_WRONG_TYPE, "token \"type\" is not \"%s\"", want);
    }
    *exp_out = exp;
    return IAM_OK;
}
