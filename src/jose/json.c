/* json.c — strict one-pass JSON parser (see json.h for the rules and the why). */
#include "jose/json.h"

#include <locale.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const unsigned char *s;
    size_t pos, len;
    json_doc *doc;
    const json_limits *lim;
    const char *what;
    iam_error *err;
    bool full;
    /* json_parse_picked: nodes json_parse would hold at this point beyond doc->count (the
     * member names and the values not kept), so the capacity check fails where it would. */
    size_t phantom;
} parser;

static iam_status bad(parser *p, const char *why)
{
    return iam_fail(p->err, IAM_E_MALFORMED, "%s is not valid JSON: %s at byte %zu", p->what, why,
                    p->pos);
}

static inline void skip_ws(parser *p)
{
    /* Tokens' JSON is compact: one compare settles the common case. */
    if (IAM_LIKELY(p->pos < p->len && p->s[p->pos] > ' '))
        return;
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* Returns the new node's index, or 0 when full (index 0 is always the root, so 0 never
 * names a fresh node). json_parse sizes the array so that this cannot happen; the check
 * makes a mistake in that bound a refusal rather than an overflow. */
static size_t new_node(parser *p, json_type type)
{
    json_doc *d = p->doc;
    if (d->count + p->phantom >= d->cap) {
        p->full = true;
        return 0;
    }
    size_t i = d->count++;
    d->nodes[i].type = (uint8_t)type;
    d->nodes[i].raw = (uint32_t)p->pos;
    d->nodes[i].str = NULL;
    d->nodes[i].len = 0;
    d->nodes[i].next = 0;
    return i;
}

/* Length of a valid UTF-8 sequence starting at s[0] (a byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c >= 0xC2 && c <= 0xDF)
        return avail >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (s[2] & 0xC0) != 0x80)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        if (c == 0xED)
            hi = 0x9F; /* no surrogates */
        return s[1] >= lo && s[1] <= hi ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F; /* <= U+10FFFF */
        return s[1] >= lo && s[1] <= hi ? 4 : 0;
    }
    return 0;
}

static int hex4(const unsigned char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* 1 for bytes that need no attention inside a string: printable ASCII except '"' and '\\'. */
static const uint8_t PLAIN[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0xa0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0xb0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0xc0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0xd0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0xe0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0xf0 */
};

/* The first position at or after pos (< n) that is not plain printable ASCII, or n. */
static inline size_t scan_plain(const unsigned char *s, size_t pos, size_t n)
{
#if defined(__SSE2__)
    /* Sixteen bytes at a time: the first '"', '\\', control byte or non-ASCII byte (a
     * signed compare puts bytes >= 0x80 below 0x20 too). SSE2 is part of x86-64. */
    while (pos + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + pos));
        __m128i special = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
            _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
        unsigned mask = (unsigned)_mm_movemask_epi8(special);
        if (mask)
            return pos + (size_t)__builtin_ctz(mask);
        pos += 16;
    }
#else
    /* Eight bytes at a time while none is '"', '\\', a control byte or non-ASCII. */
    while (pos + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + pos, 8);
        const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
        uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
        uint64_t special = ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) |
                           (w - ones * 0x20) | w;
        if (special & highs)
            break;
        pos += 8;
    }
#endif
    while (pos < n && PLAIN[s[pos]])
        pos++;
    return pos;
}

static iam_status parse_string_slow(parser *p, size_t start, const char **str, uint32_t *len)
    __attribute__((noinline));

/* Parses a string whose opening quote is at p->pos into a span (*str, *len). The common
 * case (no escapes) stays here and points into the input; escapes go to parse_string_slow. */
static inline iam_status parse_string_span(parser *p, const char **str, uint32_t *len)
{
    const unsigned char *s = p->s;
    size_t start = p->pos + 1, n = p->len, pos = start;
    for (;;) {
        pos = scan_plain(s, pos, n);
        if (IAM_UNLIKELY(pos >= n)) {
            p->pos = pos;
            return bad(p, "unterminated string");
        }
        unsigned char c = s[pos];
        if (IAM_LIKELY(c == '"')) {
            *str = (const char *)s + start;
            *len = (uint32_t)(pos - start);
            p->pos = pos + 1;
            return IAM_OK;
        }
        if (c == '\\') {
            p->pos = pos;
            return parse_string_slow(p, start, str, len);
        }
        if (c < 0x80) { /* a control character */
            p->pos = pos;
            return bad(p, "control character in string");
        }
        size_t k = utf8_seq(s + pos, n - pos);
        if (!k) {
            p->pos = pos;
            return bad(p, "invalid UTF-8");
        }
        pos += k;
    }
}

/* Parses a string whose opening quote is at p->pos; fills node i's span. */
static inline iam_status parse_string(parser *p, size_t i)
{
    return parse_string_span(p, &p->doc->nodes[i].str, &p->doc->nodes[i].len);
}

/* Escapes from p->pos on: decode the whole string into scratch. */
static iam_status parse_string_slow(parser *p, size_t start, const char **str, uint32_t *len)
{
    const unsigned char *s = p->s;
    size_t n = p->len;
    /* Slow path: decode into scratch. Decoding never grows the text, so the scratch
     * (sized to the input) always has room. */
    json_doc *d = p->doc;
    char *out = d->scratch + d->scratch_used, *o = out;
    memcpy(o, s + start, p->pos - start);
    o += p->pos - start;
    while (p->pos < n) {
        unsigned char c = s[p->pos];
        if (c == '"') {
            *str = out;
            *len = (uint32_t)(o - out);
            d->scratch_used += (size_t)(o - out);
            p->pos++;
            return IAM_OK;
        }
        if (c < 0x20)
            return bad(p, "control character in string");
        if (c >= 0x80) {
            size_t k = utf8_seq(s + p->pos, n - p->pos);
            if (!k)
                return bad(p, "invalid UTF-8");
            memcpy(o, s + p->pos, k);
            o += k;
            p->pos += k;
            continue;
        }
        if (c != '\\') {
            *o++ = (char)c;
            p->pos++;
            continue;
        }
        if (p->pos + 1 >= n)
            return bad(p, "unterminated escape");
        unsigned char e = s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            int cp = p->pos + 4 <= n ? hex4(s + p->pos) : -1;
            if (cp < 0)
                return bad(p, "bad \\u escape");
            p->pos += 4;
            if (cp == 0)
                return bad(p, "\\u0000 in string");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return bad(p, "unpaired surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo = p->pos + 6 <= n && s[p->pos] == '\\' && s[p->pos + 1] == 'u'
                             ? hex4(s + p->pos + 2)
                             : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return bad(p, "unpaired surrogate");
                p->pos += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            o += put_utf8(o, (unsigned)cp);
            break;
        }
        default:
            return bad(p, "bad escape");
        }
    }
    return bad(p, "unterminated string");
}

static iam_status parse_number(parser *p, size_t i)
{
    const unsigned char *s = p->s;
    size_t start = p->pos, n = p->len;
    if (s[p->pos] == '-')
        p->pos++;
    if (p->pos >= n)
        return bad(p, "bad number");
    if (s[p->pos] == '0') {
        p->pos++;
    } else if (s[p->pos] >= '1' && s[p->pos] <= '9') {
        while (p->pos < n && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
    } else {
        return bad(p, "bad number");
    }
    if (p->pos < n && s[p->pos] == '.') {
        p->pos++;
        size_t d = p->pos;
        while (p->pos < n && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
        if (p->pos == d)
            return bad(p, "bad number");
    }
    if (p->pos < n && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < n && (s[p->pos] == '+' || s[p->pos] == '-'))
            p->pos++;
        size_t d = p->pos;
        while (p->pos < n && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
        if (p->pos == d)
            return bad(p, "bad number");
    }
    p->doc->nodes[i].str = (const char *)s + start;
    p->doc->nodes[i].len = (uint32_t)(p->pos - start);
    return IAM_OK;
}

static bool literal(parser *p, const char *word, size_t wlen)
{
    if (p->len - p->pos < wlen || memcmp(p->s + p->pos, word, wlen) != 0)
        return false;
    p->pos += wlen;
    return true;
}

/* FNV-1a of a member name: used only for large objects. */
static uint32_t name_hash(const char *str, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t j = 0; j < len; j++)
        h = (h ^ (unsigned char)str[j]) * 16777619u;
    return h;
}

/* A cheap discriminator of a member name (length, first two and last byte): names that
 * differ here differ; equal signatures are compared in full. */
static uint64_t name_signature(const char *str, size_t len)
{
    uint64_t sig = (uint64_t)len << 32;
    if (len)
        sig |= (uint64_t)(unsigned char)str[0] << 16 | (uint64_t)(unsigned char)str[len - 1];
    if (len > 1)
        sig |= (uint64_t)(unsigned char)str[1] << 8;
    return sig;
}

/* A member name: decoded bytes (in the input or the scratch) and length. */
typedef struct name_span {
    const char *str;
    uint32_t len;
} name_span;

/* Whether two of the n names are equal (n <= IAM_MAX_JSON_MEMBERS). */
static bool names_repeat(const name_span *names, size_t n)
{
    if (n < 2)
        return false;
    if (n <= 32) {
        /* The common case, a claim set: a 256-bit Bloom filter over the names' signatures;
         * only a name whose bit is already set is compared with the earlier names. */
        uint64_t sigs[32], bloom[4] = {0};
        for (size_t m = 0; m < n; m++) {
            const name_span *x = &names[m];
            uint64_t sig = sigs[m] = name_signature(x->str, x->len);
            unsigned bit = (unsigned)((sig * 0x9E3779B97F4A7C15u) >> 56);
            uint64_t mask = (uint64_t)1 << (bit & 63);
            if (bloom[bit >> 6] & mask) {
                for (size_t o = 0; o < m; o++)
                    if (sigs[o] == sig && memcmp(names[o].str, x->str, x->len) == 0)
                        return true;
            }
            bloom[bit >> 6] |= mask;
        }
        return false;
    }
    /* Open addressing: 1024 slots for at most IAM_MAX_JSON_MEMBERS names keep the load
     * at or below 1/4. A slot holds a member ordinal + 1. */
    uint16_t slots[1024];
    memset(slots, 0, sizeof slots);
    for (size_t m = 0; m < n; m++) {
        const name_span *x = &names[m];
        for (size_t slot = name_hash(x->str, x->len) & 1023;; slot = (slot + 1) & 1023) {
            if (!slots[slot]) {
                slots[slot] = (uint16_t)(m + 1);
                break;
            }
            const name_span *y = &names[slots[slot] - 1u];
            if (json_span_eq(x->str, x->len, y->str, y->len))
                return true;
        }
    }
    return false;
}

/* Duplicate member names in the object at index obj (names compared after unescaping). */
static bool has_duplicates(const json_doc *d, size_t obj)
{
    size_t n = d->nodes[obj].len;
    if (n < 2)
        return false;
    name_span names[IAM_MAX_JSON_MEMBERS];
    size_t k = obj + 1;
    for (size_t m = 0; m < n; m++) {
        names[m].str = d->nodes[k].str;
        names[m].len = d->nodes[k].len;
        k = d->nodes[k + 1].next;
    }
    return names_repeat(names, n);
}

static iam_status parse_value(parser *p, unsigned depth);

static iam_status parse_container(parser *p, unsigned depth, bool is_object)
{
    if (depth > p->lim->max_depth)
        return iam_fail(p->err, IAM_E_TOO_LARGE, "%s nests deeper than %u levels", p->what,
                        p->lim->max_depth);
    size_t i = new_node(p, is_object ? JSON_OBJECT : JSON_ARRAY);
    if (p->full)
        return IAM_E_INTERNAL;
    char close = is_object ? '}' : ']';
    uint32_t count = 0;
    p->pos++; /* the opening bracket */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            if (++count > p->lim->max_members)
                return iam_fail(p->err, IAM_E_TOO_LARGE, "%s has a container with more than %u members",
                                p->what, p->lim->max_members);
            iam_status st;
            if (is_object) {
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != '"')
                    return bad(p, "expected a member name");
                size_t key = new_node(p, JSON_STRING);
                if (p->full)
                    return IAM_E_INTERNAL;
                if ((st = parse_string(p, key)) != IAM_OK)
                    return st;
                p->doc->nodes[key].next = (uint32_t)(key + 1);
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':')
                    return bad(p, "expected ':'");
                p->pos++;
            }
            if ((st = parse_value(p, depth)) != IAM_OK)
                return st;
            skip_ws(p);
            if (p->pos >= p->len)
                return bad(p, "unterminated container");
            char c = (char)p->s[p->pos++];
            if (c == close)
                break;
            if (c != ',')
                return bad(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    p->doc->nodes[i].len = count;
    p->doc->nodes[i].next = (uint32_t)p->doc->count;
    if (is_object && has_duplicates(p->doc, i))
        return iam_fail(p->err, IAM_E_MALFORMED, "%s has a duplicate member name", p->what);
    return IAM_OK;
}

static iam_status parse_value(parser *p, unsigned depth)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return bad(p, "expected a value");
    unsigned char c = p->s[p->pos];
    size_t i;
    iam_status st = IAM_OK;
    switch (c) {
    case '{':
        return parse_container(p, depth + 1, true);
    case '[':
        return parse_container(p, depth + 1, false);
    case '"':
        i = new_node(p, JSON_STRING);
        if (p->full)
            return IAM_E_INTERNAL;
        st = parse_string(p, i);
        break;
    case 't':
        i = new_node(p, JSON_TRUE);
        if (!literal(p, "true", 4))
            return bad(p, "bad literal");
        break;
    case 'f':
        i = new_node(p, JSON_FALSE);
        if (!literal(p, "false", 5))
            return bad(p, "bad literal");
        break;
    case 'n':
        i = new_node(p, JSON_NULL);
        if (!literal(p, "null", 4))
            return bad(p, "bad literal");
        break;
    default:
        if (c != '-' && (c < '0' || c > '9'))
            return bad(p, "unexpected character");
        i = new_node(p, JSON_NUMBER);
        if (p->full)
            return IAM_E_INTERNAL;
        st = parse_number(p, i);
        break;
    }
    if (p->full)
        return IAM_E_INTERNAL;
    p->doc->nodes[i].next = (uint32_t)(i + 1);
    return st;
}

/* Storage for a parse of len bytes (caller's buffers when they are large enough). */
static iam_status doc_init(json_doc *doc, size_t len, const json_limits *lim, json_node *node_buf,
                           size_t node_cap, char *scratch_buf, size_t scratch_cap, const char *what,
                           iam_error *err)
{
    memset(doc, 0, sizeof *doc);
    if (len > UINT32_MAX / 2)
        return iam_fail(err, IAM_E_TOO_LARGE, "%s is too large", what);
    /* By induction over the grammar a value of L bytes has at most (L+1)/2 nodes (each
     * element costs its own bytes plus a separator; a member's name costs two quotes).
     * Decoded strings never outgrow their escaped text. */
    size_t need_nodes = len / 2 + 2, need_scratch = len + 1;
    if (node_buf && node_cap >= need_nodes) {
        doc->nodes = node_buf;
    } else {
        doc->nodes = malloc(need_nodes * sizeof *doc->nodes);
        doc->nodes_owned = true;
    }
    if (scratch_buf && scratch_cap >= need_scratch) {
        doc->scratch = scratch_buf;
    } else {
        doc->scratch = malloc(need_scratch);
        doc->scratch_owned = true;
    }
    doc->cap = need_nodes;
    doc->scratch_cap = need_scratch;
    if (!doc->nodes || !doc->scratch) {
        json_doc_free(doc);
        return iam_fail(err, IAM_E_NOMEM, "out of memory parsing %s", what);
    }
    if (lim->max_members > IAM_MAX_JSON_MEMBERS) {
        json_doc_free(doc);
        return iam_fail(err, IAM_E_INTERNAL, "JSON member limit above IAM_MAX_JSON_MEMBERS");
    }
    return IAM_OK;
}

/* The end of a parse: the node-capacity verdict, then nothing but whitespace may follow. */
static iam_status parse_finish(parser *p, iam_status st)
{
    if (p->full) /* valid JSON never exceeds the bound (see doc_init): this input is not JSON */
        st = iam_fail(p->err, IAM_E_MALFORMED, "%s is not valid JSON: unterminated or truncated",
                      p->what);
    if (st == IAM_OK) {
        skip_ws(p);
        if (p->pos != p->len)
            st = bad(p, "trailing bytes after the value");
    }
    if (st != IAM_OK)
        json_doc_free(p->doc);
    return st;
}

iam_status json_parse(json_doc *doc, const char *text, size_t len, const json_limits *lim,
                      json_node *node_buf, size_t node_cap, char *scratch_buf, size_t scratch_cap,
                      const char *what, iam_error *err)
{
    iam_status st = doc_init(doc, len, lim, node_buf, node_cap, scratch_buf, scratch_cap, what, err);
    if (st != IAM_OK)
        return st;
    parser p = {(const unsigned char *)text, 0, len, doc, lim, what, err, false, 0};
    return parse_finish(&p, parse_value(&p, 0));
}

/* skip_ws on a local position. */
static inline size_t ws_at(const unsigned char *s, size_t pos, size_t n)
{
    if (IAM_LIKELY(pos < n && s[pos] > ' '))
        return pos;
    while (pos < n && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r'))
        pos++;
    return pos;
}

/* The end of a number's digits from pos. */
static inline size_t digits_at(const unsigned char *s, size_t pos, size_t n)
{
    while (pos < n && (unsigned)(s[pos] - '0') <= 9)
        pos++;
    return pos;
}

/* a[0..len) == b[0..len) for 2 <= len <= 16, with two overlapping loads per side (no call,
 * no byte outside either span). */
static inline bool same_short(const char *a, const char *b, size_t len)
{
    if (len >= 8) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8), memcpy(&a1, a + len - 8, 8);
        memcpy(&b0, b, 8), memcpy(&b1, b + len - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (len >= 4) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4), memcpy(&a1, a + len - 4, 4);
        memcpy(&b0, b, 4), memcpy(&b1, b + len - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    uint16_t a0, a1, b0, b1;
    memcpy(&a0, a, 2), memcpy(&a1, a + len - 2, 2);
    memcpy(&b0, b, 2), memcpy(&b1, b + len - 2, 2);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

/* The slot of a name in a json_pick_entry table, or -1. */
static inline int pick_slot(const json_pick_entry *names, const char *name, size_t len)
{
    if (len - 3 > 13) /* 3..16 */
        return -1;
    const json_pick_entry *e = &names[JSON_PICK_HASH(len, name[len - 1])];
    if (e->len != len || !same_short(name, e->name, len))
        return -1;
    return e->slot1 - 1;
}

/*
 * The root object of json_parse_picked: parse_container(p, 1, true) and parse_value(p, 1)
 * member for member, with the same checks in the same order and the same messages, except
 * that a member name gets no node, a value is kept only when its name is in the table,
 * scalar values and arrays of plain strings are parsed in this loop (on local copies of the
 * position and counts, synced with the parser before any call), and duplicates are found
 * through the picked slots (a bit each) plus names_repeat over the other names. The
 * duplicate verdict waits for the closing brace, as in parse_container, so an error later
 * in the text is reported first by both parsers alike.
 *
 * `used` is the number of nodes json_parse would hold at the same point (member names and
 * dropped values included; p->phantom = used - kept while synced), so the capacity check
 * fails exactly where json_parse's would. Anything unusual inside an array (another type,
 * an escape, non-ASCII, a limit, a full node array) rewinds to the array's first byte and
 * parses it with parse_container, which then decides exactly as json_parse.
 */
static iam_status parse_root_picked(parser *p, const json_pick_entry *names, size_t *picked)
{
    if (1 > p->lim->max_depth)
        return iam_fail(p->err, IAM_E_TOO_LARGE, "%s nests deeper than %u levels", p->what,
                        p->lim->max_depth);
    json_doc *d = p->doc;
    json_node *nodes = d->nodes;
    const unsigned char *s = p->s;
    const size_t n = p->len, cap = d->cap;
    const unsigned max_members = p->lim->max_members;
    const bool arrays_inline = p->lim->max_depth >= 2;
    size_t root = new_node(p, JSON_OBJECT);
    if (p->full)
        return IAM_E_INTERNAL;
    size_t kept = d->count, used = kept + p->phantom;
    uint64_t seen = 0;
    size_t npicks = 0;
    name_span others[IAM_MAX_JSON_MEMBERS];
    size_t nothers = 0;
    uint32_t count = 0;
    iam_status st;
    size_t pos = ws_at(s, p->pos + 1, n); /* after the opening brace */
#define SYNC() (d->count = kept, p->phantom = used - kept, p->pos = pos)
#define FAIL_AT(why) return (SYNC(), bad(p, why))
#define FULL_UNLESS_ROOM()                                                                   \
    do {                                                                                     \
        if (IAM_UNLIKELY(used >= cap)) {                                                     \
            SYNC();                                                                          \
            p->full = true;                                                                  \
            return IAM_E_INTERNAL;                                                           \
        }                                                                                    \
    } while (0)
    if (pos < n && s[pos] == '}') {
        pos++;
    } else {
        for (;;) {
            if (IAM_UNLIKELY(++count > max_members)) {
                SYNC();
                return iam_fail(p->err, IAM_E_TOO_LARGE, "%s has a container with more than %u members",
                                p->what, max_members);
            }
            /* Tokens' JSON is compact: each separator is tested where it should be first,
             * and whitespace skipped only when it is not there. */
            if (IAM_UNLIKELY(pos >= n || s[pos] != '"')) {
                pos = ws_at(s, pos, n);
                if (pos >= n || s[pos] != '"')
                    FAIL_AT("expected a member name");
            }
            FULL_UNLESS_ROOM(); /* json_parse's node for the name */
            used++;
            const char *name;
            uint32_t name_len;
            size_t q = scan_plain(s, pos + 1, n);
            if (IAM_LIKELY(q < n && s[q] == '"')) {
                name = (const char *)s + pos + 1;
                name_len = (uint32_t)(q - pos - 1);
                pos = q + 1;
            } else {
                SYNC();
                if ((st = parse_string_span(p, &name, &name_len)) != IAM_OK)
                    return st;
                pos = p->pos;
            }
            if (IAM_UNLIKELY(pos >= n || s[pos] != ':')) {
                pos = ws_at(s, pos, n);
                if (pos >= n || s[pos] != ':')
                    FAIL_AT("expected ':'");
            }
            pos = ws_at(s, pos + 1, n);
            if (IAM_UNLIKELY(pos >= n))
                FAIL_AT("expected a value");
            int k = pick_slot(names, name, name_len);
            size_t value = kept;
            unsigned char c = s[pos];
            if (c == '"') {
                FULL_UNLESS_ROOM();
                const char *str;
                uint32_t len;
                size_t raw = pos;
                q = scan_plain(s, pos + 1, n);
                if (IAM_LIKELY(q < n && s[q] == '"')) {
                    str = (const char *)s + pos + 1;
                    len = (uint32_t)(q - pos - 1);
                    pos = q + 1;
                } else {
                    SYNC();
                    if ((st = parse_string_span(p, &str, &len)) != IAM_OK)
                        return st;
                    pos = p->pos;
                }
                used++;
                if (k >= 0) {
                    json_node *v = &nodes[kept++];
                    v->type = JSON_STRING;
                    v->raw = (uint32_t)raw;
                    v->str = str;
                    v->len = len;
                    v->next = (uint32_t)kept;
                }
            } else if (c == '{' || c == '[') {
                bool done = false;
                if (c == '[' && k >= 0 && arrays_inline && used < cap) {
                    /* An array of plain strings (roles, permissions, aud) in this loop. */
                    size_t start = pos, arr = kept++;
                    uint32_t elems = 0;
                    used++;
                    pos = ws_at(s, pos + 1, n);
                    if (pos < n && s[pos] == ']') {
                        pos++;
                        done = true;
                    } else {
                        for (;;) {
                            if (++elems > max_members)
                                break;
                            pos = ws_at(s, pos, n);
                            if (pos >= n || s[pos] != '"' || used >= cap)
                                break;
                            q = scan_plain(s, pos + 1, n);
                            if (q >= n || s[q] != '"')
                                break;
                            json_node *v = &nodes[kept++];
                            v->type = JSON_STRING;
                            v->raw = (uint32_t)pos;
                            v->str = (const char *)s + pos + 1;
                            v->len = (uint32_t)(q - pos - 1);
                            v->next = (uint32_t)kept;
                            used++;
                            pos = ws_at(s, q + 1, n);
                            if (pos >= n)
                                break;
                            unsigned char sep = s[pos++];
                            if (sep == ']') {
                                done = true;
                                break;
                            }
                            if (sep != ',')
                                break;
                        }
                    }
                    if (done) {
                        nodes[arr].type = JSON_ARRAY;
                        nodes[arr].raw = (uint32_t)start;
                        nodes[arr].str = NULL;
                        nodes[arr].len = elems;
                        nodes[arr].next = (uint32_t)kept;
                    } else { /* rewind: the general parser decides */
                        pos = start;
                        used -= kept - value;
                        kept = value;
                    }
                }
                if (!done) {
                    SYNC();
                    if ((st = parse_container(p, 2, c == '{')) != IAM_OK)
                        return st;
                    pos = p->pos;
                    used += d->count - kept;
                    kept = d->count;
                }
            } else {
                /* A literal or a number: one node (json_parse's, or ours when kept). */
                json_type type;
                size_t raw = pos;
                if (c == 't' || c == 'f' || c == 'n') {
                    static const char WORDS[3][5] = {"true", "false", "null"};
                    static const json_type TYPES[3] = {JSON_TRUE, JSON_FALSE, JSON_NULL};
                    int w = c == 't' ? 0 : c == 'f' ? 1 : 2;
                    size_t wlen = w == 1 ? 5 : 4;
                    uint32_t head = 0, want;
                    memcpy(&want, WORDS[w] + wlen - 4, 4);
                    if (n - pos >= wlen)
                        memcpy(&head, s + pos + wlen - 4, 4);
                    if (n - pos < wlen || head != want || s[pos] != (unsigned char)c) {
                        /* json_parse makes the node first: a full array wins the message */
                        p->full = used >= cap;
                        FAIL_AT("bad literal");
                    }
                    FULL_UNLESS_ROOM();
                    type = TYPES[w];
                    pos += wlen;
                } else {
                    if (c != '-' && (unsigned)(c - '0') > 9)
                        FAIL_AT("unexpected character");
                    FULL_UNLESS_ROOM();
                    type = JSON_NUMBER;
                    if (c == '-')
                        pos++;
                    if (pos >= n)
                        FAIL_AT("bad number");
                    if (s[pos] == '0')
                        pos++;
                    else if ((unsigned)(s[pos] - '1') <= 8)
                        pos = digits_at(s, pos + 1, n);
                    else
                        FAIL_AT("bad number");
                    if (pos < n && s[pos] == '.') {
                        size_t dg = ++pos;
                        if ((pos = digits_at(s, pos, n)) == dg)
                            FAIL_AT("bad number");
                    }
                    if (pos < n && (s[pos] | 0x20) == 'e') {
                        pos++;
                        if (pos < n && (s[pos] == '+' || s[pos] == '-'))
                            pos++;
                        size_t dg = pos;
                        if ((pos = digits_at(s, pos, n)) == dg)
                            FAIL_AT("bad number");
                    }
                }
                used++;
                if (k >= 0) {
                    json_node *v = &nodes[kept++];
                    v->type = (uint8_t)type;
                    v->raw = (uint32_t)raw;
                    v->str = type == JSON_NUMBER ? (const char *)s + raw : NULL;
                    v->len = type == JSON_NUMBER ? (uint32_t)(pos - raw) : 0;
                    v->next = (uint32_t)kept;
                }
            }
            if (k >= 0) {
                seen |= (uint64_t)1 << k; /* a slot seen twice: fewer bits than picks */
                npicks++;
                picked[k] = value;
            } else {
                kept = value; /* the value was checked; its nodes are not kept */
                others[nothers].str = name;
                others[nothers].len = name_len;
                nothers++;
            }
            if (IAM_UNLIKELY(pos >= n || s[pos] <= ' ')) {
                pos = ws_at(s, pos, n);
                if (pos >= n)
                    FAIL_AT("unterminated container");
            }
            c = s[pos++];
            if (c == ',')
                continue;
            if (c == '}')
                break;
            if (IAM_UNLIKELY(c != ','))
                FAIL_AT("expected ',' or '}'");
        }
    }
    SYNC();
#undef SYNC
#undef FAIL_AT
#undef FULL_UNLESS_ROOM
    nodes[root].len = count;
    nodes[root].next = (uint32_t)kept;
    if ((size_t)__builtin_popcountll(seen) != npicks || names_repeat(others, nothers))
        return iam_fail(p->err, IAM_E_MALFORMED, "%s has a duplicate member name", p->what);
    return IAM_OK;
}

iam_status json_parse_picked(json_doc *doc, const char *text, size_t len, const json_limits *lim,
                             const json_pick_entry names[64], size_t *picked, size_t npicked,
                             json_node *node_buf, size_t node_cap, char *scratch_buf,
                             size_t scratch_cap, const char *what, iam_error *err)
{
    memset(picked, 0, npicked * sizeof *picked);
    if (npicked > 64)
        return iam_fail(err, IAM_E_INTERNAL, "json_parse_picked takes at most 64 names");
    iam_status st = doc_init(doc, len, lim, node_buf, node_cap, scratch_buf, scratch_cap, what, err);
    if (st != IAM_OK)
        return st;
    parser p = {(const unsigned char *)text, 0, len, doc, lim, what, err, false, 0};
    skip_ws(&p);
    if (p.pos < len && p.s[p.pos] == '{')
        st = parse_root_picked(&p, names, picked);
    else
        st = parse_value(&p, 0); /* not an object: exactly json_parse */
    st = parse_finish(&p, st);
    if (st != IAM_OK)
        memset(picked, 0, npicked * sizeof *picked);
    return st;
}

void json_doc_free(json_doc *doc)
{
    if (doc->nodes_owned)
        free(doc->nodes);
    if (doc->scratch_owned)
        free(doc->scratch);
    memset(doc, 0, sizeof *doc);
}

size_t json_get(const json_doc *doc, size_t obj, const char *name)
{
    const json_node *o = &doc->nodes[obj];
    if (o->type != JSON_OBJECT)
        return 0;
    size_t nlen = strlen(name), k = obj + 1;
    for (uint32_t m = 0; m < o->len; m++) {
        const json_node *key = &doc->nodes[k];
        if (json_span_eq(key->str, key->len, name, nlen))
            return k + 1;
        k = doc->nodes[k + 1].next;
    }
    return 0;
}

bool json_str_eq(const json_doc *doc, size_t i, const char *s)
{
    const json_node *n = &doc->nodes[i];
    return n->type == JSON_STRING && json_span_eq(n->str, n->len, s, strlen(s));
}

bool json_number(const json_doc *doc, size_t i, double *out)
{
    const json_node *n = &doc->nodes[i];
    if (n->type != JSON_NUMBER)
        return false;
    /* Plain integers of up to 15 digits are exact in a double: convert directly. */
    size_t k = 0;
    bool neg = n->str[0] == '-';
    if (neg)
        k = 1;
    if (n->len - k <= 15) {
        int64_t v = 0;
        size_t j = k;
        for (; j < n->len && n->str[j] >= '0' && n->str[j] <= '9'; j++)
            v = v * 10 + (n->str[j] - '0');
        if (j == n->len) {
            *out = neg ? -(double)v : (double)v;
            return true;
        }
    }
    /* Anything else through strtod, with the locale's decimal point substituted so a
     * host application's setlocale() cannot change the value. */
    char buf[128];
    if (n->len >= sizeof buf)
        return false;
    const char *dp = localeconv()->decimal_point;
    size_t o = 0;
    for (size_t j = 0; j < n->len; j++) {
        if (n->str[j] == '.' && dp && dp[0] && strcmp(dp, ".") != 0) {
            size_t dl = strlen(dp);
            if (o + dl >= sizeof buf)
                return false;
            memcpy(buf + o, dp, dl);
            o += dl;
        } else {
            if (o + 1 >= sizeof buf)
                return false;
            buf[o++] = n->str[j];
        }
    }
    buf[o] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (*end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

bool json_integer(const json_doc *doc, size_t i, uint64_t max, int64_t *out)
{
    const json_node *n = &doc->nodes[i];
    if (n->type != JSON_NUMBER)
        return false;
    size_t k = n->str[0] == '-' ? 1 : 0;
    if (n->len == k || n->len - k > 19)
        return false;
    uint64_t v = 0;
    for (size_t j = k; j < n->len; j++) {
        if (n->str[j] < '0' || n->str[j] > '9')
            return false; /* a fraction or an exponent: not a plain integer */
        v = v * 10 + (uint64_t)(n->str[j] - '0'); /* <= 19 digits cannot overflow */
    }
    if (v > max || v > (uint64_t)INT64_MAX)
        return false;
    *out = k ? -(int64_t)v : (int64_t)v;
    return true;
}

bool json_member_text(const json_doc *doc, const char *text, size_t text_len, const char *name,
                      size_t *start, size_t *len)
{
    size_t v = json_get(doc, 0, name);
    if (!v)
        return false;
    /* The value runs up to the next member's name, or to the root's closing brace; trailing
     * whitespace and the separating comma are not part of it. */
    size_t end;
    if (doc->nodes[v].next < doc->count) {
        end = doc->nodes[doc->nodes[v].next].raw;
    } else {
        end = text_len;
        while (end > 0 && text[end - 1] != '}')
            end--;
        end--; /* the closing brace */
    }
    size_t b = doc->nodes[v].raw;
    while (end > b && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\n' ||
                       text[end - 1] == '\r' || text[end - 1] == ','))
        end--;
    *start = b;
    *len = end - b;
    return true;
}
