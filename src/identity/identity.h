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
/* The first, straightforward builder: the reference user_from_claims is tested against
 * (claims_to_user_reference uses it). Same contract. */
iam_status user_from_claims_reference(const json_doc *d, const claim_index *ix, const char *payload,
                                      size_t len, double exp, iam_user **out, iam_error *err);

/*
 * A verified claim set to a user context: claims_parse, claims_check, user_from_claims
 * (what iam_token_verify does after the signature). claims_to_user_reference does the same
 * through the general parser (json_parse + claims_index); it exists for the differential
 * test and fuzzer, which require both to return the same status and the same user.
 */
iam_status claims_to_user(const char *payload, size_t len, const iam_verify_options *opts,
                          int64_t now_s, iam_user **out, iam_error *err);
iam_status claims_to_user_reference(const char *payload, size_t len, const iam_verify_options *opts,
                                    int64_t now_s, iam_user **out, iam_error *err);

#endif
