/* status.c — status names, descriptions, error filling. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct status_text {
    iam_status code;
    const char *name;
    const char *text;
} status_text;

static const status_text STATUS_TEXTS[] = {
    {IAM_OK, "ok", "success"},
    {IAM_E_MALFORMED, "malformed", "token is not a well-formed JWS"},
    {IAM_E_TOO_LARGE, "too_large", "input exceeds a documented limit"},
    {IAM_E_UNSUPPORTED_ALG, "unsupported_alg", "algorithm is missing, unknown or not allowed"},
    {IAM_E_UNKNOWN_KEY, "unknown_key", "no key held can verify this token"},
    {IAM_E_BAD_SIGNATURE, "bad_signature", "signature does not verify"},
    {IAM_E_UNSUPPORTED_CRIT, "unsupported_crit", "token requires an unsupported critical extension"},
    {IAM_E_EXPIRED, "expired", "token has expired"},
    {IAM_E_NOT_YET_VALID, "not_yet_valid", "token is not valid yet"},
    {IAM_E_WRONG_ISSUER, "wrong_issuer", "token was issued by another issuer"},
    {IAM_E_WRONG_AUDIENCE, "wrong_audience", "token is meant for another audience"},
    {IAM_E_WRONG_TYPE, "wrong_type", "token is not an access token"},
    {IAM_E_MISSING_CLAIM, "missing_claim", "a required claim is missing"},
    {IAM_E_INVALID_CLAIM, "invalid_claim", "a claim has an invalid type or value"},
    {IAM_E_REVOKED, "revoked", "token has been revoked"},
    {IAM_E_WRONG_TENANT, "wrong_tenant", "user does not belong to the required organisation"},
    {IAM_E_DENIED, "denied", "the central auth service refused the token"},
    {IAM_E_UNAVAILABLE, "unavailable", "the answer could not be obtained"},
    {IAM_E_NOT_CACHED, "not_cached", "no cache holds an answer for the token"},
    {IAM_E_INVALID_ARGUMENT, "invalid_argument", "invalid argument"},
    {IAM_E_BAD_KEY, "bad_key", "key is malformed or unsupported"},
    {IAM_E_CONFIG, "config", "invalid configuration"},
    {IAM_E_NOMEM, "nomem", "out of memory"},
    {IAM_E_INTERNAL, "internal", "internal error"},
};

static const status_text *find(iam_status status)
{
    for (size_t i = 0; i < sizeof STATUS_TEXTS / sizeof STATUS_TEXTS[0]; i++)
        if (STATUS_TEXTS[i].code == status)
            return &STATUS_TEXTS[i];
    return NULL;
}

const char *iam_status_name(iam_status status)
{
    const status_text *t = find(status);
    return t ? t->name : "unknown";
}

const char *iam_strerror(iam_status status)
{
    const status_text *t = find(status);
    return t ? t->text : "unknown status";
}

bool iam_status_is_rejection(iam_status status)
{
    return status <= IAM_E_MALFORMED && status >= IAM_E_DENIED;
}

iam_status iam_fail(iam_error *err, iam_status code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void iam_free(void *p)
{
    free(p);
}
