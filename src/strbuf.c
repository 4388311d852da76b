/* strbuf.c — see strbuf.h. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(strbuf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void strbuf_put(strbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_puts(strbuf *b, const char *s)
{
    strbuf_put(b, s, strlen(s));
}

void strbuf_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void strbuf_json_string(strbuf *b, const char *s, size_t n)
{
    static const char H[] = "0123456789abcdef";
    strbuf_put(b, "\"", 1);
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        strbuf_put(b, s + from, i - from);
        char esc[7] = {'\\', (char)ch, 0};
        if (ch < 0x20) {
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = H[ch >> 4], esc[5] = H[ch & 15];
            strbuf_put(b, esc, 6);
        } else {
            strbuf_put(b, esc, 2);
        }
        from = i + 1;
    }
    strbuf_put(b, s + from, n - from);
    strbuf_put(b, "\"", 1);
}

char *strbuf_finish(strbuf *b)
{
    if (b->failed) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    if (!b->p) /* nothing was written: an empty string, not "no memory" */
        b->p = calloc(1, 1);
    return b->p;
}
