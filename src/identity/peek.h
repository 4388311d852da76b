/*
 * peek.h — reads a few claims of a token WITHOUT verifying it. Only ever used to make a
 * decision more restrictive (which jti to check for revocation, which jti to revoke) or
 * to find a record whose own MAC is then verified — never to accept anything.
 */
#ifndef IAM_IDENTITY_PEEK_H
#define IAM_IDENTITY_PEEK_H

#include "internal.h"

typedef struct token_peek {
    char jti[IAM_MAX_KID_BYTES + 1]; /* "" when absent, not a string, or longer */
    char sub[IAM_MAX_KID_BYTES + 1]; /* "" when absent; an integer sub as its decimal text */
    int64_t exp;                     /* 0 when absent or not a number */
} token_peek;

/** IAM_E_MALFORMED unless the token is three base64url segments with a JSON object payload. */
iam_status token_peek_claims(const char *token, size_t len, token_peek *out, iam_error *err);

#endif
