/*
 * auth.h — the central auth service's protocol (CONTRACT.md "Central auth service"), with
 * no I/O: the request body, the strict reading of the reply, the circuit breaker's state.
 * The HTTP tier moves the bytes; client.c composes.
 */
#ifndef IAM_NET_AUTH_H
#define IAM_NET_AUTH_H

#include "internal.h"

#define AUTH_VALIDATE_PATH "/auth/validate"
#define AUTH_JWKS_PATH "/.well-known/jwks.json"

/**
 * {"token":"<token>"}: malloc'd, NUL-terminated, *out_len its length. NULL when the token
 * holds a byte that is not printable ASCII (no JWS does: the caller refuses it as
 * malformed without asking anyone) or on OOM (*oom set).
 */
char *auth_validate_body(const char *token, size_t len, size_t *out_len, bool *oom);

/**
 * Reads a /auth/validate reply strictly and maps it to the same user context as a local
 * verification of the token would give:
 *
 *   - the body must be one JSON object (strict parser: no duplicates…) with `valid` a JSON
 *     boolean; {"valid": false} is IAM_E_DENIED (a definite refusal);
 *   - on true, `user_id` is an integer (<= 2^53) or a non-empty string — or null/absent for
 *     a service identity, which then needs a non-empty string `client_id`; `email`,
 *     `team_role`, `auth_method` are strings or null; `roles`, `permissions`, `org_role`,
 *     `scopes` arrays of strings or null (absent/null: empty); `org_id`, `team_id`,
 *     `idp_org_id` integers, strings or null (identifiers become strings); other members
 *     are ignored;
 *   - the claim set is the service's identity fields plus every other claim of the token's
 *     own payload (type, jti, exp, iss, aud, token_version, …: authentic, since the service
 *     vouched for exactly these bytes), checked with the same claim rules as a local
 *     verification (vo at now_s: a refresh token is IAM_E_WRONG_TYPE, an expired one
 *     IAM_E_EXPIRED even when the service says valid) and built by user_from_claims;
 *   - a user_id that differs from the token's own `sub` is not the contract either.
 *
 * Anything that is not the contract is IAM_E_UNAVAILABLE with a precise message (never
 * bytes of the body or of the token).
 */
iam_status auth_reply_user(const char *body, size_t body_len, const char *token, size_t token_len,
                           const iam_verify_options *vo, int64_t now_s, iam_user **out, iam_error *err);

/* ------------------------------------------------------------ circuit breaker */

/** Consecutive failed calls that open the breaker. */
#define AUTH_BREAKER_FAILURES 5
/** How long an open breaker fails calls fast before one probe is let through. */
#define AUTH_BREAKER_COOLDOWN_MS 2000

typedef enum auth_breaker_state {
    BREAKER_CLOSED = 0, /* calls go through; failures are counted */
    BREAKER_OPEN,       /* calls fail fast until open_until */
    BREAKER_HALF_OPEN   /* one probe call is in flight; the others fail fast */
} auth_breaker_state;

typedef struct auth_breaker {
    auth_breaker_state state;
    int failures;       /* consecutive, while closed */
    int64_t open_until; /* ms */
    uint64_t opened;    /* times it opened */
} auth_breaker;

/** Whether a call may start at now_ms; *probe is set when it is the half-open probe. */
bool auth_breaker_allow(auth_breaker *b, int64_t now_ms, bool *probe);
/** The outcome of a call that was allowed (ok: the service answered per the contract). */
void auth_breaker_record(auth_breaker *b, int64_t now_ms, bool ok, bool probe);

#endif
