/* verify.c — iam_token_verify: JWS, then claims, then the user context. */
#include "identity/identity.h"
#include "jose/b64url.h"

iam_status claims_to_user(const char *payload, size_t len, const iam_verify_options *opts,
                          int64_t now_s, iam_user **out, iam_error *err)
{
    /* Typical claim sets (~400 bytes) parse with no allocation. */
    json_node nodes[256];
    char scratch[1024];
    json_doc d;
    claim_index ix;
    iam_status st = claims_parse(&d, &ix, payload, len, nodes, sizeof nodes / sizeof nodes[0],
                                 scratch, sizeof scratch, err);
    if (st != IAM_OK)
        return st;
    double exp;
    st = claims_check(&d, &ix, opts, now_s, &exp, err);
    if (st == IAM_OK)
        st = user_from_claims(&d, &ix, payload, len, exp, out, err);
    json_doc_free(&d);
    return st;
}

iam_status claims_to_user_reference(const char *payload, size_t len, const iam_verify_options *opts,
                                    int64_t now_s, iam_user **out, iam_error *err)
{
    static const json_limits limits = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};
    json_doc d;
    iam_status st = json_parse(&d, payload, len, &limits, NULL, 0, NULL, 0, "claims", err);
    if (st != IAM_OK)
        return st;
    if (d.nodes[0].type != JSON_OBJECT) {
        json_doc_free(&d);
        return iam_fail(err, IAM_E_MALFORMED, "claims are not a JSON object");
    }
    claim_index ix;
    claims_index(&d, &ix);
    double exp;
    st = claims_check(&d, &ix, opts, now_s, &exp, err);
    if (st == IAM_OK)
        st = user_from_claims_reference(&d, &ix, payload, len, exp, out, err);
    json_doc_free(&d);
    return st;
}

iam_status iam_token_verify(const char *token, size_t len, const iam_keyset *ks,
                            const iam_verify_options *opts, int64_t now_s, iam_user **out,
                            iam_error *err)
{
    if (!out)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "out-parameter is required");
    *out = NULL;
    unsigned char payload[IAM_MAX_TOKEN_BYTES / 4 * 3 + 2];
    jws_verified v;
    iam_status st = jws_verify_compact(token, len, ks, payload, &v, err);
    if (st != IAM_OK)
        return st;
    if (!v.typ_is_jwt && !(opts && (opts->flags & IAM_VERIFY_ANY_TYPE)))
        return iam_fail(err, IAM_E_WRONG_TYPE, "header \"typ\" is not JWT");
    return claims_to_user((const char *)v.payload, v.payload_len, opts, now_s, out, err);
}
