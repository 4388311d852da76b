/* identity.h — internal interface of the identity/ layer. */
#ifndef IAM_IDENTITY_H
#define IAM_IDENTITY_H

#include "jose/jose.h"

/**
 * Builds a user context from a verified claim set (root object at index 0 of d, whose
 * bytes are payload[0..len)). Validates the identity claims' types (ids: integer or
 * string; lists: arrays of strings; …) and the principal rules (a user needs `sub`; a
 * client_credentials service needs `client_id` and has no `sub`). exp is the checked
 * expiry. One allocation holds the whole context.
 */
iam_status user_from_claims(const json_doc *d, const claim_index *ix, const char *payload,
                            size_t len, double exp, iam_user **out, iam_error *err);

#endif
