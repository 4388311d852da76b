/*
 * peek.h — reads a few claims of a token WITHOUT verifying it. Only ever used to make a
 * decision more restrictive (which jti to check for revocation, which jti to revoke) or
 * to find a record whose own MAC is then verified — never to accept anything.
 */
#ifndef IAM_IDENTITY_PEEK_H
#define IAM_IDENTITY_PEEK_H

#include "internal.h"

/* A claim set is at most this long (the payload of a token of IAM_MAX_TOKEN_BYTES). */
#define PEEK_MAX_CLAIM_BYTES (IAM_MAX_TOKEN_BYTES / 4 * 3 + 2)

typedef struct token_peek {
    bool has_jti;                    /* a string jti is present ("" included) */
    char jti[PEEK_MAX_CLAIM_BYTES];  /* the jti, any length the token can carry; "" otherwise */
    char sub[IAM_MAX_KID_BYTES + 1]; /* "" when absent; an integer sub as its decimal text */
    int64_t exp;                     /* 0 when absent or not a number */
} token_peek;

/** IAM_E_MALFORMED unless the token is three base64url segments with a JSON object payload. */
iam_status token_peek_claims(const char *token, size_t len, token_peek *out, iam_error *err);

/**
 * Decodes the payload segment of a compact token WITHOUT verifying anything into buf
 * (IAM_MAX_TOKEN_BYTES / 4 * 3 + 2 bytes). IAM_E_MALFORMED unless the token has three
 * segments and a canonical base64url payload; IAM_E_TOO_LARGE over IAM_MAX_TOKEN_BYTES.
 */
iam_status token_peek_payload(const char *token, size_t len, unsigned char *buf, size_t *out_len,
                              iam_error *err);

#endif
