/* client_internal.h — pieces of client.c exposed to its tests (not installed). */
#ifndef IAM_CLIENT_INTERNAL_H
#define IAM_CLIENT_INTERNAL_H

#include "internal.h"

#define INV_LOG 256

enum inv_kind { INV_ALL = 1, INV_TOKEN, INV_USER, INV_JTI };

/* One invalidation, in a ring of INV_LOG indexed by epoch. */
typedef struct inv_record {
    uint64_t epoch;
    int kind;
    uint64_t token_hash;
    char value[IAM_MAX_KID_BYTES + 1]; /* user id or jti; longer ones are logged as INV_ALL */
} inv_record;

/**
 * Whether any invalidation with epoch in (since, now] concerns an answer (its token hash,
 * user id, jti). Conservative: a window longer than the log, or a record overwritten by a
 * later invalidation, counts as concerning it. Caller holds the log's lock.
 */
bool inv_log_concerns(const inv_record log[INV_LOG], uint64_t since, uint64_t now,
                      uint64_t token_hash, const char *user_id, const char *jti);

#endif
