/* peek.c — unverified claim reading (see peek.h). */
#include "identity/peek.h"
#include "jose/b64url.h"
#include "jose/jose.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const json_limits PEEK_LIMITS = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};

static void copy_str(const json_doc *d, size_t i, char *out, size_t cap)
{
    out[0] = '\0';
    if (!i)
        return;
    const json_node *n = &d->nodes[i];
    if (n->type == JSON_STRING && n->len < cap && !memchr(n->str, '\0', n->len)) {
        memcpy(out, n->str, n->len);
        out[n->len] = '\0';
    }
}

iam_status token_peek_payload(const char *token, size_t len, unsigned char *buf, size_t *out_len,
                              iam_error *err)
{
    if (len > IAM_MAX_TOKEN_BYTES)
        return iam_fail(err, IAM_E_TOO_LARGE, "token is %zu bytes; the limit is %d", len, IAM_MAX_TOKEN_BYTES);
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return iam_fail(err, IAM_E_MALFORMED, "a token has exactly three segments");
    if (!b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, out_len))
        return iam_fail(err, IAM_E_MALFORMED, "the payload is not canonical base64url");
    return IAM_OK;
}

iam_status token_peek_claims(const char *token, size_t len, token_peek *out, iam_error *err)
{
    memset(out, 0, sizeof *out);
    unsigned char payload[IAM_MAX_TOKEN_BYTES / 4 * 3 + 2];
    size_t plen;
    iam_status pst = token_peek_payload(token, len, payload, &plen, err);
    if (pst != IAM_OK)
        return pst;
    json_node nodes[256];
    char scratch[1024];
    json_doc d;
    iam_status st = json_parse(&d, (const char *)payload, plen, &PEEK_LIMITS, nodes, 256, scratch,
                               sizeof scratch, "claims", err);
    if (st != IAM_OK)
        return st;
    if (d.nodes[0].type != JSON_OBJECT) {
        json_doc_free(&d);
        return iam_fail(err, IAM_E_MALFORMED, "claims are not a JSON object");
    }
    size_t jti = json_get(&d, 0, "jti");
    copy_str(&d, jti, out->jti, sizeof out->jti);
    out->has_jti = jti && d.nodes[jti].type == JSON_STRING && !memchr(d.nodes[jti].str, 0, d.nodes[jti].len);
    size_t sub = json_get(&d, 0, "sub");
    int64_t v;
    if (sub && d.nodes[sub].type == JSON_NUMBER && json_integer(&d, sub, INT64_MAX, &v))
        snprintf(out->sub, sizeof out->sub, "%lld", (long long)v);
    else
        copy_str(&d, sub, out->sub, sizeof out->sub);
    size_t exp = json_get(&d, 0, "exp");
    double e;
    if (exp && d.nodes[exp].type == JSON_NUMBER && json_number(&d, exp, &e) && isfinite(e) &&
        e > 0 && e < 1e15)
        out->exp = (int64_t)e;
    json_doc_free(&d);
    return IAM_OK;
}
