/*
 * test_claims_diff.c — the claim-set fast path (claims_parse, used by iam_token_verify)
 * against the general parser (json_parse + claims_index), through claims_diff.h: the same
 * status for every input, the same claim values, the same user context.
 *
 * Inputs: a list of hand-written edge cases (every rule of json.h at the root and inside
 * claim values, duplicates plain and escaped, known and unknown names, depth and member
 * limits, node-capacity edges, \u0000, surrogates, invalid UTF-8, number edges); the
 * node-capacity boundary swept exhaustively; random claim sets (known claims with valid and
 * wrong-typed values, unknown and near-miss names, escapes, nested values, whitespace); and
 * byte-level mutations of the platform's claim set and of random ones. Deterministic (fixed
 * seed); no timing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claims_diff.h"
#include "mint.h"

#ifdef IAM_SANITIZED
#define SCALE 4 /* sanitizer builds run fewer random inputs */
#else
#define SCALE 1
#endif

static void check(const char *text, size_t len)
{
    const char *why = claims_diff(text, len);
    if (why) {
        char shown[600];
        size_t n = 0;
        for (size_t i = 0; i < len && n + 5 < sizeof shown; i++) {
            unsigned char c = (unsigned char)text[i];
            n += (size_t)snprintf(shown + n, sizeof shown - n, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
        }
        fail_msg("%s\n  input (%zu bytes): %s", why, len, shown);
    }
}

static void check_str(const char *text) { check(text, strlen(text)); }

/* ------------------------------------------------------------- edge cases */

static const char *const EDGE[] = {
    /* accepted shapes */
    "{}", " {} ", "\t{\n}\r\n", "{\"sub\":\"2\"}", "{ \"sub\" : \"2\" , \"exp\" : 4102444800 }",
    "{\"a\":1}", "{\"\":1}", "{\"sub\":\"\"}",
    /* not objects at the root */
    "", " ", "[]", "[{\"sub\":\"2\"}]", "\"sub\"", "1", "null", "true", "false", "-0",
    /* duplicates: known, unknown, escaped, only after unescaping, with later errors */
    "{\"sub\":\"1\",\"sub\":\"2\"}", "{\"x\":1,\"x\":2}", "{\"s\\u0075b\":\"1\",\"sub\":\"2\"}",
    "{\"sub\":\"1\",\"s\\u0075b\":\"2\"}", "{\"\\u0078\":1,\"x\":2}", "{\"x\":1,\"y\":2,\"x\":3}",
    "{\"\":1,\"\":2}", "{\"sub\":1,\"sub\":2,", "{\"sub\":1,\"sub\":2,\"a\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}",
    "{\"sub\":1,\"sub\":2} x", "{\"x\":1,\"x\":2,\"y\":tru}", "{\"exp\":1,\"exp\":1}",
    "{\"a\":{\"b\":1,\"b\":2}}", "{\"sub\":{\"b\":1,\"b\":2}}", "{\"aud\":[{\"b\":1,\"b\":2}]}",
    /* near-miss names (same length, first and last byte as a claim) */
    "{\"sab\":1,\"sub\":\"2\"}", "{\"sub\":\"2\",\"s b\":1}", "{\"Sub\":\"2\"}", "{\"subb\":\"2\"}",
    "{\"su\":\"2\"}", "{\"ixp\":1}", "{\"exp \":1}", "{\"tokenxversion\":1}",
    "{\"permissionz\":[],\"permissions\":[\"a\"],\"permissionS\":1}",
    "{\"auth_method\":\"client_credentials\",\"authxmethod\":1,\"client_id\":\"c\"}",
    /* escapes in names and values */
    "{\"\\u0073ub\":\"\\u0032\"}", "{\"sub\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"}",
    "{\"sub\":\"\\ud83d\\ude00\"}", "{\"sub\":\"\\uD83D\\uDE00x\"}", "{\"sub\":\"\\ud83d\"}",
    "{\"sub\":\"\\ude00\"}", "{\"sub\":\"\\ud83d\\u0041\"}", "{\"sub\":\"\\u0000\"}",
    "{\"s\\u0000b\":1}", "{\"sub\":\"\\u00\"}", "{\"sub\":\"\\uZZZZ\"}", "{\"sub\":\"\\x41\"}",
    "{\"sub\":\"\\\"}", "{\"sub\":\"\\", "{\"sub\":\"\\u", "{\"sub\":\"\\ud83d\\u",
    /* raw bytes */
    "{\"sub\":\"\x01\"}", "{\"sub\":\"\x1f\"}", "{\"sub\":\"\x7f\"}", "{\"sub\":\"\xc3\xa9\"}",
    "{\"sub\":\"\xc3\"}", "{\"sub\":\"\xc0\xaf\"}", "{\"sub\":\"\xe0\x80\xaf\"}",
    "{\"sub\":\"\xed\xa0\x80\"}", "{\"sub\":\"\xf4\x90\x80\x80\"}", "{\"sub\":\"\xf0\x9f\x98\x80\"}",
    "{\"\xc3\xa9\":1}", "{\"\xff\":1}", "{\xc3\xa9:1}", "\xef\xbb\xbf{}",
    /* numbers */
    "{\"exp\":0}", "{\"exp\":-0}", "{\"exp\":-0.0}", "{\"exp\":01}", "{\"exp\":1.}", "{\"exp\":.5}",
    "{\"exp\":-}", "{\"exp\":-a}", "{\"exp\":1e}", "{\"exp\":1e+}", "{\"exp\":1E-2}", "{\"exp\":1e+2}",
    "{\"exp\":1.5e3}", "{\"exp\":+1}", "{\"exp\":0x10}", "{\"exp\":NaN}", "{\"exp\":Infinity}",
    "{\"exp\":-Infinity}", "{\"exp\":1e400}", "{\"exp\":4102444800.5}", "{\"exp\":253402300799}",
    "{\"exp\":253402300800}", "{\"org_id\":9007199254740992}", "{\"org_id\":9007199254740993}",
    "{\"org_id\":-9007199254740992}", "{\"org_id\":1.0}", "{\"org_id\":1e2}",
    "{\"token_version\":2147483647}", "{\"token_version\":2147483648}", "{\"token_version\":-1}",
    "{\"exp\":123456789012345678901234567890}", "{\"exp\":1", "{\"exp\":-", "{\"exp\":1.",
    "{\"exp\":1e", "{\"exp\":00}", "{\"exp\":-01}", "{\"exp\":1.e5}",
    /* literals */
    "{\"mfa_verified\":true}", "{\"mfa_verified\":false}", "{\"mfa_verified\":null}",
    "{\"mfa_verified\":tru}", "{\"mfa_verified\":True}", "{\"mfa_verified\":nul}", "{\"x\":fals}",
    "{\"x\":truex}", "{\"x\":true", "{\"x\":t", "{\"x\":n", "{\"x\":f",
    /* structure */
    "{", "{\"", "{\"sub\"", "{\"sub\":", "{\"sub\":\"2\"", "{\"sub\":\"2\",", "{\"sub\":\"2\",}",
    "{,}", "{\"sub\" \"2\"}", "{\"sub\":\"2\";}", "{sub:\"2\"}", "{'sub':'2'}", "{\"sub\":\"2\"}}",
    "{\"sub\":\"2\"}{}", "{\"sub\":\"2\"} ,", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":{,}}",
    "{\"a\":[1 2]}", "{\"a\":{\"b\" 1}}", "{\"a\":]}", "{\"a\":}", "{\"a\"::1}", "{\"a\":1,,\"b\":2}",
    "{/*c*/}", "{\"a\":1}//", "{\"a\":\v1}", "{\"a\":\f1}", "{\"a\":\xc2\xa0\x31}", "{\"a\":1}\x00",
    /* claim values of every type in every claim */
    "{\"roles\":[\"a\",\"b\"],\"permissions\":[],\"org_role\":null,\"scopes\":\"a  b c \"}",
    "{\"roles\":\"a\"}", "{\"roles\":[1]}", "{\"roles\":[\"a\",null]}", "{\"scopes\":[\"x\"]}",
    "{\"aud\":[]}", "{\"aud\":[\"omnibioai-platform\",1]}", "{\"aud\":{\"x\":1}}",
    "{\"iss\":null}", "{\"type\":[\"access\"]}", "{\"sub\":2}", "{\"sub\":{}}", "{\"email\":[]}",
    "{\"org_id\":\"7\",\"team_id\":7,\"idp_org_id\":null}", "{\"org_id\":\"\"}", "{\"org_id\":true}",
    /* limits: depth 16 is the limit (the root is 1) */
    "{\"a\":[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}", "{\"a\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}",
    "{\"roles\":[[[[[[[[[[[[[[[\"a\"]]]]]]]]]]]]]]]}", "{\"roles\":[[[[[[[[[[[[[[[[\"a\"]]]]]]]]]]]]]]]]}",
    "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}}}}}}",
    "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}}}}}}}",
    /* node capacity: json_parse sizes its nodes to len/2 + 2; a deep prefix can fill them */
    "{\"\":[[[[[[[[[[[[[[[[xxxxxxxx", "{\"\":[[[[[[[[[[[[[[[[xxxxxxxxx", "{\"\":[[[[[[[[[[[[[[[[xxxxxxx",
    "{\"a\":1,\"\":[[[[[[[[[[[[[[[[xxxxxxxx", "{\"sub\":1,\"\":[[[[[[[[[[[[[[[[xxxxxx",
    "{\"\":tru", "{\"\":[t", "{\"\":[[[[[[[[[[tru", "{\"\":[[[[[[[[[[[[[[[[[[",
};

static void test_edge_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof EDGE / sizeof EDGE[0]; i++)
        check_str(EDGE[i]);
    /* with an embedded NUL (lengths given explicitly) */
    check("{\"sub\":\"a\0b\"}", 13);
    check("{\"s\0b\":1}", 9);
    check("{\"sub\":1}\0", 10);
    check("\0{}", 3);
}

/* Every claim name the library reads, alone and with each kind of value: the name table of
 * the fast path must find each (and only each) of them. */
static const char *const NAMES[] = {
    "sub", "exp", "type", "iss", "aud", "jti", "email", "roles", "permissions", "org_id",
    "org_role", "team_id", "team_role", "auth_method", "idp_org_id", "token_version",
    "mfa_verified", "nbf", "iat", "client_id", "scopes",
};

static void test_every_claim_name(void **state)
{
    (void)state;
    static const char *const VALUES[] = {"\"x\"", "1", "[\"a\"]", "null", "true", "{}", "[]", "1.5"};
    char buf[1024];
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        for (size_t v = 0; v < sizeof VALUES / sizeof VALUES[0]; v++) {
            snprintf(buf, sizeof buf, "{\"%s\":%s}", NAMES[i], VALUES[v]);
            check_str(buf);
            snprintf(buf, sizeof buf, "{\"%s\":%s,\"%s\":%s}", NAMES[i], VALUES[v], NAMES[i], VALUES[v]);
            check_str(buf);
            /* near misses: last byte changed, first byte changed, one byte longer/shorter */
            size_t n = strlen(NAMES[i]);
            char name[32];
            memcpy(name, NAMES[i], n + 1);
            name[n - 1] ^= 1;
            snprintf(buf, sizeof buf, "{\"%s\":%s,\"%s\":%s}", name, VALUES[v], NAMES[i], VALUES[v]);
            check_str(buf);
            name[n - 1] ^= 1, name[0] ^= 0x20;
            snprintf(buf, sizeof buf, "{\"%s\":%s}", name, VALUES[v]);
            check_str(buf);
            name[0] ^= 0x20;
            snprintf(buf, sizeof buf, "{\"%sx\":%s,\"%.*s\":1}", name, VALUES[v], (int)(n - 1), name);
            check_str(buf);
        }
    }
    /* all of them at once, in both orders */
    size_t o = 0;
    buf[o++] = '{';
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s\"%s\":1", i ? "," : "", NAMES[i]);
    buf[o++] = '}';
    check(buf, o);
    o = 0;
    buf[o++] = '{';
    for (size_t i = sizeof NAMES / sizeof NAMES[0]; i-- > 0;)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s\"%s\":null", o > 1 ? "," : "", NAMES[i]);
    buf[o++] = '}';
    check(buf, o);
}

/* The node-capacity boundary: a prefix of members, then a chain of '[' deeper than the depth
 * limit or not, then filler; every combination around the point where json_parse's nodes run
 * out (its name nodes and the values the fast path drops count there, not in the fast path). */
static void test_node_capacity_sweep(void **state)
{
    (void)state;
    static const char *const PREFIX[] = {"", "\"sub\":1,", "\"x\":1,", "\"x\":[1,2],", "\"roles\":[\"a\"],",
                                         "\"a\":{\"b\":1},", "\"sub\":\"2\",\"x\":null,"};
    static const char *const LEAF[] = {"", "1", "tru", "true", "\"", "\"a\"", "{", "{\"a\":", "]", "x"};
    char buf[256];
    for (size_t p = 0; p < sizeof PREFIX / sizeof PREFIX[0]; p++)
        for (int name_known = 0; name_known < 2; name_known++)
            for (size_t depth = 0; depth <= 19; depth++)
                for (size_t l = 0; l < sizeof LEAF / sizeof LEAF[0]; l++)
                    for (size_t fill = 0; fill <= 24; fill++) {
                        size_t o = (size_t)snprintf(buf, sizeof buf, "{%s\"%s\":", PREFIX[p],
                                                    name_known ? "roles" : "");
                        for (size_t d = 0; d < depth; d++)
                            buf[o++] = '[';
                        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s", LEAF[l]);
                        for (size_t f = 0; f < fill; f++)
                            buf[o++] = f % 3 ? ' ' : 'x';
                        check(buf, o);
                        /* the same closed properly */
                        size_t c = o - fill;
                        for (size_t d = 0; d < depth; d++)
                            buf[c++] = ']';
                        buf[c++] = '}';
                        check(buf, c);
                    }
}

/* 256 members is the limit: known and unknown names, at and over it, with a duplicate. */
static void test_member_limit(void **state)
{
    (void)state;
    size_t cap = 300 * 24;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (size_t members = 250; members <= 258; members++) {
        for (int shape = 0; shape < 4; shape++) {
            size_t o = 0;
            buf[o++] = '{';
            for (size_t m = 0; m < members; m++) {
                if (m)
                    buf[o++] = ',';
                if (shape == 1 && m < 21)
                    o += (size_t)snprintf(buf + o, cap - o, "\"%s\":1", NAMES[m]);
                else if (shape == 2 && m == members - 1)
                    o += (size_t)snprintf(buf + o, cap - o, "\"n%zu\":1", (size_t)0);
                else if (shape == 3 && m == members - 1)
                    o += (size_t)snprintf(buf + o, cap - o, "\"sub\":1,\"sub\":2");
                else
                    o += (size_t)snprintf(buf + o, cap - o, "\"n%zu\":%s", m, m % 2 ? "[1]" : "1");
            }
            buf[o++] = '}';
            check(buf, o);
        }
    }
    free(buf);
}

/* ------------------------------------------------------- random claim sets */

static uint64_t rng = 0x243F6A8885A308D3ULL;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)((rng >> 33) % n);
}

typedef struct buf {
    char *s;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Plain sets: compact ASCII with no escapes (the layout of real tokens, which
 * claims_parse reads through its quote-indexed path); the others mix in whitespace,
 * escapes and non-ASCII (its general loop). */
static bool g_plain;

static void ws(buf *b)
{
    static const char *const W[] = {" ", "\t", "\n", "\r\n", "  "};
    if (!g_plain && rnd(8) == 0)
        puts_(b, W[rnd(5)]);
}

static void rand_string(buf *b)
{
    static const char *const PIECES[] = {
        "a", "b", "z", "sub", "exp", "omnibioai-platform", "omnibioai-auth", "access", "2", " ",
        "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u0041", "\\u00e9", "\\u20ac", "\\ud83d\\ude00",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "client_credentials", "dataset.read",
        "0123456789abcdef", "-", "_", ".",
    };
    static const char *const PLAIN_PIECES[] = {
        "a", "b", "z", "sub", "exp", "omnibioai-platform", "omnibioai-auth", "access", "2", " ",
        "client_credentials", "dataset.read", "0123456789abcdef", "-", "_", ".", "/", "~",
    };
    puts_(b, "\"");
    for (unsigned n = rnd(6); n > 0; n--)
        puts_(b, g_plain ? PLAIN_PIECES[rnd(sizeof PLAIN_PIECES / sizeof PLAIN_PIECES[0])]
                         : PIECES[rnd(sizeof PIECES / sizeof PIECES[0])]);
    puts_(b, "\"");
}

static void rand_number(buf *b)
{
    static const char *const NUMS[] = {
        "0", "-0", "1", "2", "7", "-1", "1.5", "1e3", "1E+2", "2.5e-3", "4102444800", "1700000000",
        "253402300799", "253402300800", "9007199254740992", "9007199254740993", "2147483647",
        "2147483648", "0.0", "1700000000.999", "123456789012345678901234", "-9007199254740992",
    };
    puts_(b, NUMS[rnd(sizeof NUMS / sizeof NUMS[0])]);
}

static void rand_value(buf *b, unsigned depth);

static void rand_container(buf *b, unsigned depth, bool object)
{
    puts_(b, object ? "{" : "[");
    unsigned n = depth > 17 ? 0 : rnd(depth > 4 ? 2 : 4);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            puts_(b, ",");
        ws(b);
        if (object) {
            static const char *const K[] = {"\"a\"", "\"b\"", "\"sub\"", "\"\"", "\"\\u0061\""};
            puts_(b, K[rnd(5)]);
            ws(b);
            puts_(b, ":");
            ws(b);
        }
        rand_value(b, depth + 1);
        ws(b);
    }
    puts_(b, object ? "}" : "]");
}

static void rand_value(buf *b, unsigned depth)
{
    switch (rnd(depth > 14 ? 7 : 9)) {
    case 0: case 1: case 2: rand_string(b); break;
    case 3: case 4: rand_number(b); break;
    case 5: puts_(b, "true"); break;
    case 6: puts_(b, rnd(2) ? "false" : "null"); break;
    case 7: rand_container(b, depth, false); break;
    default: rand_container(b, depth, true); break;
    }
}

/* A plausible value for a known claim (so claim checks and user building are reached). */
static void claim_value(buf *b, const char *name)
{
    if (rnd(6) == 0) {
        rand_value(b, 1);
        return;
    }
    char tmp[64];
    if (!strcmp(name, "exp")) {
        snprintf(tmp, sizeof tmp, "%u%s", 1700000000u + rnd(2) * 2000000000u, rnd(4) ? "" : ".5");
        puts_(b, tmp);
    } else if (!strcmp(name, "nbf") || !strcmp(name, "iat")) {
        puts_(b, rnd(2) ? "1600000000" : "1700000001");
    } else if (!strcmp(name, "iss")) {
        puts_(b, rnd(4) ? "\"omnibioai-auth\"" : "\"omnibioai-\\u0061uth\"");
    } else if (!strcmp(name, "aud")) {
        puts_(b, rnd(2) ? "\"omnibioai-platform\"" : "[\"x\",\"omnibioai-platform\"]");
    } else if (!strcmp(name, "type")) {
        puts_(b, rnd(4) ? "\"access\"" : "\"refresh\"");
    } else if (!strcmp(name, "auth_method")) {
        puts_(b, rnd(2) ? "\"password\"" : "\"client_credentials\"");
    } else if (!strcmp(name, "org_id") || !strcmp(name, "team_id") || !strcmp(name, "idp_org_id")) {
        puts_(b, rnd(3) == 0 ? "null" : rnd(2) ? "\"7\"" : "-42");
    } else if (!strcmp(name, "roles") || !strcmp(name, "permissions") || !strcmp(name, "org_role")) {
        puts_(b, "[");
        for (unsigned n = rnd(4), i = 0; i < n; i++) {
            if (i)
                puts_(b, ",");
            rand_string(b);
        }
        puts_(b, "]");
    } else if (!strcmp(name, "scopes")) {
        puts_(b, rnd(2) ? "\"read  write \"" : "[\"read\"]");
    } else if (!strcmp(name, "token_version")) {
        puts_(b, rnd(2) ? "2" : "0");
    } else if (!strcmp(name, "mfa_verified")) {
        puts_(b, rnd(2) ? "true" : "false");
    } else {
        rand_string(b);
    }
}

static void rand_claims(buf *b)
{
    b->len = 0;
    ws(b);
    puts_(b, "{");
    unsigned n = rnd(24);
    bool used[21] = {false};
    bool first = true;
    if (rnd(4)) { /* most sets carry a principal and a far expiry, so users get built */
        if (rnd(3)) {
            puts_(b, "\"sub\":");
            rand_string(b);
            used[0] = true;
        } else {
            puts_(b, "\"auth_method\":\"client_credentials\",\"client_id\":");
            rand_string(b);
            used[13] = used[19] = true;
        }
        puts_(b, ",\"exp\":4102444800");
        used[1] = true;
        first = false;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!first)
            puts_(b, ",");
        first = false;
        ws(b);
        unsigned pick = rnd(10);
        const char *name = NULL;
        char tmp[64];
        if (pick < 7) {
            unsigned k = rnd(21);
            if (used[k] && rnd(8)) /* mostly distinct names, sometimes a duplicate */
                continue;
            used[k] = true;
            name = NAMES[k];
            snprintf(tmp, sizeof tmp, "\"%s\"", name);
            if (!g_plain && rnd(16) == 0) /* the same name with its first letter escaped */
                snprintf(tmp, sizeof tmp, "\"\\u%04x%s\"", (unsigned char)name[0], name + 1);
        } else if (pick < 9) {
            snprintf(tmp, sizeof tmp, "\"x%u\"", rnd(6));
        } else {
            static const char *const NEAR[] = {"su", "subb", "Sub", "sab", "ex", "expp", "auds",
                                               "roles ", "tokenversion", "", "\\u0000"};
            snprintf(tmp, sizeof tmp, "\"%s\"", NEAR[rnd(g_plain ? 10 : 11)]);
        }
        puts_(b, tmp);
        ws(b);
        puts_(b, ":");
        ws(b);
        if (name)
            claim_value(b, name);
        else
            rand_value(b, 1);
        ws(b);
    }
    puts_(b, "}");
    ws(b);
}

static void test_random_claim_sets(void **state)
{
    (void)state;
    buf b = {0};
    unsigned long users_before = claims_diff_seen.users;
    for (int i = 0; i < 40000 / SCALE; i++) {
        g_plain = i % 2;
        rand_claims(&b);
        check(b.s, b.len);
    }
    g_plain = false;
    /* the generator must reach the user context often, or the comparison would be shallow */
    unsigned long users = claims_diff_seen.users - users_before;
    if (users < 2000 / SCALE)
        fail_msg("only %lu users built from random claim sets", users);
    free(b.s);
}

/* ------------------------------------------------------------- mutations */

static void mutate(buf *b)
{
    static const char INTERESTING[] = "\"\\{}[],: 0-e.utfn\x00\x80\xc3\xff\x01\t";
    unsigned times = 1 + rnd(3);
    for (unsigned t = 0; t < times && b->len > 0; t++) {
        size_t at = rnd((unsigned)b->len);
        switch (rnd(6)) {
        case 0: /* replace a byte */
            b->s[at] = INTERESTING[rnd(sizeof INTERESTING - 1)];
            break;
        case 1: /* delete a byte */
            memmove(b->s + at, b->s + at + 1, b->len - at - 1);
            b->len--;
            break;
        case 2: { /* insert a byte */
            char c = INTERESTING[rnd(sizeof INTERESTING - 1)];
            put(b, " ", 1); /* room */
            memmove(b->s + at + 1, b->s + at, b->len - 1 - at);
            b->s[at] = c;
            break;
        }
        case 3: { /* duplicate a slice (often a whole member) */
            size_t n = 1 + rnd(40);
            if (at + n > b->len)
                n = b->len - at;
            char tmp[64];
            memcpy(tmp, b->s + at, n);
            size_t where = rnd((unsigned)b->len + 1);
            size_t old = b->len;
            put(b, tmp, n); /* grow */
            memmove(b->s + where + n, b->s + where, old - where);
            memcpy(b->s + where, tmp, n);
            break;
        }
        case 4: /* truncate */
            b->len = at;
            break;
        default: /* flip a bit */
            b->s[at] ^= (char)(1u << rnd(8));
            break;
        }
    }
}

static void test_mutated_claim_sets(void **state)
{
    (void)state;
    char *platform = mint_platform_claims("2", INT64_C(4102444800));
    char *service = strdup("{\"auth_method\":\"client_credentials\",\"client_id\":\"svc-a\","
                           "\"scopes\":\"read write\",\"exp\":4102444800,\"type\":\"access\","
                           "\"iss\":\"omnibioai-auth\",\"aud\":[\"omnibioai-platform\"]}");
    assert_non_null(service);
    check_str(platform);
    check_str(service);
    buf b = {0};
    for (int i = 0; i < 60000 / SCALE; i++) {
        b.len = 0;
        g_plain = i % 6 == 5;
        if (i % 3 == 2)
            rand_claims(&b);
        else
            puts_(&b, i % 3 ? service : platform);
        mutate(&b);
        check(b.s, b.len);
    }
    g_plain = false;
    free(b.s);
    free(platform);
    free(service);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_every_claim_name),
        cmocka_unit_test(test_node_capacity_sweep),
        cmocka_unit_test(test_member_limit),
        cmocka_unit_test(test_random_claim_sets),
        cmocka_unit_test(test_mutated_claim_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
