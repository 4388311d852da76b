/*
 * fuzz_claims.c — differential libFuzzer target: the claim-set fast path against the
 * general parser.
 *
 * Every input is a claim-set text (bytes as given, no terminator). tests/support/
 * claims_diff.h runs it through json_parse + claims_index (the general parser) and through
 * claims_parse (the one-pass claim-set parser iam_token_verify uses), and requires the
 * same status code, the same claims with identical value subtrees, and then — for the whole
 * claims stage (checks and user context) under four policies at three times — the same
 * status and the same user. Any difference is a finding (abort()), as is any sanitizer
 * report. The seeds (fuzz/corpus/claims) are claim sets: the platform's, a service
 * identity's, and edge cases of duplicates, escapes, depth and numbers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "claims_diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = claims_diff((const char *)data, size);
    if (why) {
        fprintf(stderr, "fuzz_claims: the fast path and the general parser differ: %s\n", why);
        abort();
    }
    return 0;
}
