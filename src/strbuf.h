/* strbuf.h — a growable, always NUL-terminated string for the library's own output (stats,
 * the auth service's request and claim sets, invalidation messages). A failed allocation
 * latches `failed`; strbuf_finish then frees and returns NULL. Internal. */
#ifndef IAM_STRBUF_H
#define IAM_STRBUF_H

#include "internal.h"

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool failed;
} strbuf;

void strbuf_put(strbuf *b, const char *s, size_t n);
void strbuf_puts(strbuf *b, const char *s);
void strbuf_printf(strbuf *b, const char *fmt, ...) IAM_PRINTF(2, 3);
/** s[0..n) as a JSON string, quotes included (bytes >= 0x20 other than " and \ verbatim). */
void strbuf_json_string(strbuf *b, const char *s, size_t n);
/** The string (caller frees), or NULL when an allocation failed. */
char *strbuf_finish(strbuf *b);

#endif
