/* b64url.c — strict base64url. Table-driven; rejects rather than repairs. */
#include "jose/b64url.h"

#include <stdint.h>

#define X 0xff
static const uint8_t DECODE[256] = {
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, 62, X, X, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X, X,
    X, X, X, X, X, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    23, 24, 25, X, X, X, X, 63, X, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41,
    42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
};
#undef X

static const char ENCODE[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

bool b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t rem = len % 4;
    if (rem == 1)
        return false;
    size_t full = len - rem;
    unsigned char *o = out;
    for (size_t i = 0; i < full; i += 4) {
        uint32_t a = DECODE[s[i]], b = DECODE[s[i + 1]], c = DECODE[s[i + 2]], d = DECODE[s[i + 3]];
        if ((a | b | c | d) & 0x80)
            return false;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
        o += 3;
    }
    if (rem) {
        uint32_t a = DECODE[s[full]], b = DECODE[s[full + 1]];
        uint32_t c = rem == 3 ? DECODE[s[full + 2]] : 0;
        if ((a | b | c) & 0x80)
            return false;
        if (rem == 2) {
            if (b & 0x0f) /* 4 discarded bits must be zero */
                return false;
            *o++ = (unsigned char)(a << 2 | b >> 4);
        } else {
            if (c & 0x03) /* 2 discarded bits must be zero */
                return false;
            *o++ = (unsigned char)(a << 2 | b >> 4);
            *o++ = (unsigned char)((b & 0x0f) << 4 | c >> 2);
        }
    }
    *out_len = (size_t)(o - out);
    return true;
}

size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = ENCODE[v >> 18];
        out[o++] = ENCODE[(v >> 12) & 63];
        out[o++] = ENCODE[(v >> 6) & 63];
        out[o++] = ENCODE[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = ENCODE[v >> 18];
        out[o++] = ENCODE[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = ENCODE[v >> 18];
        out[o++] = ENCODE[(v >> 12) & 63];
        out[o++] = ENCODE[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}
