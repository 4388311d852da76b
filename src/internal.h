/* internal.h — helpers shared by every layer (not installed). */
#ifndef IAM_INTERNAL_H
#define IAM_INTERNAL_H

#include "iamclient.h"

#if defined(__GNUC__)
#  define IAM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#  define IAM_LIKELY(x) __builtin_expect(!!(x), 1)
#  define IAM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#  define IAM_PRINTF(a, b)
#  define IAM_LIKELY(x) (x)
#  define IAM_UNLIKELY(x) (x)
#endif

/*
 * Sets err (if non-NULL) and returns code. Messages are fixed text plus numbers or
 * names chosen by this library: never bytes taken from a token or a secret.
 */
iam_status iam_fail(iam_error *err, iam_status code, const char *fmt, ...) IAM_PRINTF(3, 4);

#endif
