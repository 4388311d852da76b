/*
 * test_json.c — the strict JSON parser (src/jose/json.h).
 *
 * Every rule of the header comment is checked in both directions: what must parse (and
 * into exactly which nodes), and what must be refused with which status. Strings are
 * also placed at several offsets so that both the 8-bytes-at-a-time scan and the
 * byte-wise tail of the string scanner see each case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jose/json.h"

static const json_limits LIM = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};

/* A string literal with its exact length (may contain NUL bytes). */
#define S(lit) lit, sizeof(lit) - 1

#define assert_double_exact(got, want)                                                       \
    do {                                                                                     \
        double g_ = (got), w_ = (want);                                                      \
        if (!(g_ == w_))                                                                     \
            fail_msg("%s = %.17g, expected %.17g", #got, g_, w_);                            \
    } while (0)

static iam_status parse_lim(json_doc *d, const char *text, size_t len, const json_limits *lim)
{
    iam_error err;
    memset(&err, 0, sizeof err);
    iam_status st = json_parse(d, text, len, lim, NULL, 0, NULL, 0, "test", &err);
    if (st != IAM_OK) {
        /* the error record agrees with the status and carries a message */
        if (err.code != st)
            fail_msg("err.code %d differs from the returned status %d", err.code, st);
        if (err.message[0] == '\0')
            fail_msg("no error message for status %d", st);
    }
    return st;
}

static iam_status parse(json_doc *d, const char *text, size_t len)
{
    return parse_lim(d, text, len, &LIM);
}

/* Shows an input in failure messages without raw control bytes. */
static const char *shown(const char *s, size_t len)
{
    static char buf[200];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < len && n + 6 < sizeof buf; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            buf[n++] = (char)c, buf[n] = '\0';
        else
            n += (size_t)snprintf(buf + n, sizeof buf - n, "\\x%02x", c);
    }
    return buf;
}

static void expect_status(const char *text, size_t len, iam_status want)
{
    json_doc d;
    iam_status st = parse(&d, text, len);
    if (st == IAM_OK)
        json_doc_free(&d);
    if (st != want)
        fail_msg("json_parse(\"%s\") = %d (%s), expected %d (%s)", shown(text, len), st,
                 iam_status_name(st), want, iam_status_name(want));
    /* on failure the doc holds nothing (a second free is harmless) */
    if (st != IAM_OK) {
        assert_null(d.nodes);
        assert_int_equal(d.count, 0);
        json_doc_free(&d);
    }
}

#define OK(lit) expect_status(S(lit), IAM_OK)
#define MALFORMED(lit) expect_status(S(lit), IAM_E_MALFORMED)
#define TOO_LARGE(lit) expect_status(S(lit), IAM_E_TOO_LARGE)

/* Parses a document that holds one string (the root) and checks its decoded bytes. */
static void expect_json_string(const char *text, size_t len, const char *want, size_t want_len)
{
    json_doc d;
    iam_status st = parse(&d, text, len);
    if (st != IAM_OK)
        fail_msg("json_parse(\"%s\") = %s, expected ok", shown(text, len), iam_status_name(st));
    assert_int_equal(d.count, 1);
    assert_int_equal(d.nodes[0].type, JSON_STRING);
    assert_int_equal(d.nodes[0].len, want_len);
    assert_int_equal(d.nodes[0].next, 1);
    if (want_len)
        assert_memory_equal(d.nodes[0].str, want, want_len);
    json_doc_free(&d);
}
#define STR(lit, want) expect_json_string(S(lit), S(want))

/* Builds "\"" + pad(k) + middle + pad(16) + "\"" and expects status; k = 0..16, so the
 * interesting bytes land in both the word-wise and the byte-wise string scans. */
static void expect_in_string_at_offsets(const char *middle, size_t mlen, iam_status want)
{
    for (size_t k = 0; k <= 16; k++) {
        char buf[128];
        size_t n = 0;
        buf[n++] = '"';
        memset(buf + n, 'a', k);
        n += k;
        memcpy(buf + n, middle, mlen);
        n += mlen;
        memset(buf + n, 'b', 16);
        n += 16;
        buf[n++] = '"';
        expect_status(buf, n, want);
        /* and as a member name and a member value */
        char obj[160];
        size_t m = 0;
        memcpy(obj, "{", 1), m = 1;
        memcpy(obj + m, buf, n), m += n;
        memcpy(obj + m, ":", 1), m += 1;
        memcpy(obj + m, buf, n), m += n;
        memcpy(obj + m, "}", 1), m += 1;
        expect_status(obj, m, want);
    }
}

/* ---------------------------------------------------------------- accepting */

static void test_accepts_basic_documents(void **state)
{
    (void)state;
    OK("{}");
    OK("[]");
    OK("{\"a\":1}");
    OK("[1,2,3]");
    OK("{\"a\":{\"b\":{\"c\":[1,[2,[3]]]}}}");
    OK("[{},[],{\"\":[]},\"\",0,-0,true,false,null]");
    OK("{\"a\":null,\"b\":true,\"c\":false,\"d\":\"x\",\"e\":1.5e-3,\"f\":[],\"g\":{}}");
    OK("{\"\":1}");
    OK("{\"a\":1,\"A\":2}"); /* names are case-sensitive: not duplicates */
}

static void test_accepts_root_scalars(void **state)
{
    (void)state;
    /* RFC 8259: any value may be the root */
    OK("1");
    OK("-1.5");
    OK("\"x\"");
    OK("\"\"");
    OK("true");
    OK("false");
    OK("null");
}

static void test_accepts_surrounding_whitespace(void **state)
{
    (void)state;
    OK(" {} \n");
    OK("\t\r\n {}");
    OK("{}\r\n\t ");
    OK(" [ 1 , 2 ] ");
    OK("{ \"a\" : 1 , \"b\" :\n[ ] }");
    OK("\n\n\n\"s\"\n\n");
    OK(" 0 ");
}

static void test_node_structure(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"a\":1,\"b\":[true,false,null,{\"c\":\"d\"}],\"e\":{\"f\":[]},\"g\":\"h\"}";
    json_doc d;
    assert_int_equal(parse(&d, S(doc)), IAM_OK);
    static const struct {
        json_type type;
        uint32_t len, next;
    } want[] = {
        {JSON_OBJECT, 4, 17}, /* 0 root */
        {JSON_STRING, 1, 2},  /* 1 "a" */
        {JSON_NUMBER, 1, 3},  /* 2 1 */
        {JSON_STRING, 1, 4},  /* 3 "b" */
        {JSON_ARRAY, 4, 11},  /* 4 [...] */
        {JSON_TRUE, 0, 6},    /* 5 */
        {JSON_FALSE, 0, 7},   /* 6 */
        {JSON_NULL, 0, 8},    /* 7 */
        {JSON_OBJECT, 1, 11}, /* 8 {"c":"d"} */
        {JSON_STRING, 1, 10}, /* 9 "c" */
        {JSON_STRING, 1, 11}, /* 10 "d" */
        {JSON_STRING, 1, 12}, /* 11 "e" */
        {JSON_OBJECT, 1, 15}, /* 12 {"f":[]} */
        {JSON_STRING, 1, 14}, /* 13 "f" */
        {JSON_ARRAY, 0, 15},  /* 14 [] */
        {JSON_STRING, 1, 16}, /* 15 "g" */
        {JSON_STRING, 1, 17}, /* 16 "h" */
    };
    assert_int_equal(d.count, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < d.count; i++) {
        if (d.nodes[i].type != want[i].type || d.nodes[i].next != want[i].next)
            fail_msg("node %zu: type %d next %u, expected type %d next %u", i, d.nodes[i].type,
                     d.nodes[i].next, want[i].type, want[i].next);
        if (want[i].type >= JSON_NUMBER)
            assert_int_equal(d.nodes[i].len, want[i].len);
    }
    /* string spans */
    assert_memory_equal(d.nodes[1].str, "a", 1);
    assert_memory_equal(d.nodes[10].str, "d", 1);
    assert_memory_equal(d.nodes[16].str, "h", 1);
    assert_memory_equal(d.nodes[2].str, "1", 1);
    /* an unescaped string is a span into the input */
    assert_ptr_equal(d.nodes[16].str, doc + strlen(doc) - 3);
    json_doc_free(&d);
}

static void test_next_skips_subtrees(void **state)
{
    (void)state;
    static const char doc[] = "[[1,[2,3]],{\"k\":[4,{\"x\":5}]},6]";
    json_doc d;
    assert_int_equal(parse(&d, S(doc)), IAM_OK);
    /* nodes: 0 [ ; 1 [ ; 2 1 ; 3 [ ; 4 2 ; 5 3 ; 6 { ; 7 "k" ; 8 [ ; 9 4 ; 10 { ; 11 "x" ;
     * 12 5 ; 13 6 */
    assert_int_equal(d.count, 14);
    assert_int_equal(d.nodes[0].len, 3);
    size_t children[3], n = 0;
    for (size_t i = json_first_child(&d, 0); n < d.nodes[0].len; i = json_next_sibling(&d, i))
        children[n++] = i;
    assert_int_equal(children[0], 1);
    assert_int_equal(children[1], 6);
    assert_int_equal(children[2], 13);
    assert_int_equal(d.nodes[1].next, 6);
    assert_int_equal(d.nodes[3].next, 6);
    assert_int_equal(d.nodes[6].next, 13);
    assert_int_equal(d.nodes[8].next, 13);
    assert_int_equal(d.nodes[10].next, 13);
    assert_int_equal(d.nodes[13].next, 14);
    assert_int_equal(d.nodes[0].next, 14);
    assert_int_equal(json_first_child(&d, 3), 4);
    json_doc_free(&d);

    assert_int_equal(parse(&d, S("[[],[]]")), IAM_OK);
    assert_int_equal(json_first_child(&d, 1), 0); /* empty */
    assert_int_equal(d.nodes[1].next, 2);
    assert_int_equal(d.nodes[2].next, 3);
    json_doc_free(&d);
}

static void test_json_get(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"a\":1,\"b\":[true,false,null,{\"c\":\"d\"}],\"e\":{\"f\":[]},\"g\":\"h\",\"\":0}";
    json_doc d;
    assert_int_equal(parse(&d, S(doc)), IAM_OK);
    assert_int_equal(json_get(&d, 0, "a"), 2);
    assert_int_equal(json_get(&d, 0, "b"), 4);
    assert_int_equal(json_get(&d, 0, "e"), 12);
    assert_int_equal(json_get(&d, 0, "g"), 16);
    assert_int_equal(json_get(&d, 0, ""), 18);
    assert_int_equal(json_get(&d, 0, "zz"), 0);
    assert_int_equal(json_get(&d, 0, "A"), 0);
    assert_int_equal(json_get(&d, 0, "aa"), 0);
    assert_int_equal(json_get(&d, 0, "c"), 0); /* nested members are not visible */
    assert_int_equal(json_get(&d, 0, "f"), 0);
    assert_int_equal(json_get(&d, 8, "c"), 10);
    assert_int_equal(json_get(&d, 12, "f"), 14);
    assert_int_equal(json_get(&d, 4, "c"), 0); /* not an object */
    assert_int_equal(json_get(&d, 2, "a"), 0); /* not an object */
    json_doc_free(&d);

    /* a name spelled with an escape is found by its decoded bytes */
    assert_int_equal(parse(&d, S("{\"x\":0,\"\\u0061b\":7}")), IAM_OK);
    assert_int_equal(json_get(&d, 0, "ab"), 4);
    json_doc_free(&d);
}

static void test_json_str_eq(void **state)
{
    (void)state;
    json_doc d;
    assert_int_equal(parse(&d, S("{\"k\":\"value\",\"n\":1,\"e\":\"\",\"u\":\"caf\\u00e9\"}")),
                     IAM_OK);
    assert_true(json_str_eq(&d, 2, "value"));
    assert_false(json_str_eq(&d, 2, "valu"));
    assert_false(json_str_eq(&d, 2, "values"));
    assert_false(json_str_eq(&d, 2, "Value"));
    assert_true(json_str_eq(&d, 1, "k"));   /* a member name is a string node */
    assert_false(json_str_eq(&d, 4, "1"));  /* a number is not a string */
    assert_true(json_str_eq(&d, 6, ""));
    assert_false(json_str_eq(&d, 6, "x"));
    assert_true(json_str_eq(&d, 8, "caf\xc3\xa9"));
    assert_false(json_str_eq(&d, 0, "")); /* an object is not a string */
    json_doc_free(&d);
}

static void test_escapes_decode(void **state)
{
    (void)state;
    STR("\"\\\"\"", "\"");
    STR("\"\\\\\"", "\\");
    STR("\"\\/\"", "/");
    STR("\"\\b\"", "\b");
    STR("\"\\f\"", "\f");
    STR("\"\\n\"", "\n");
    STR("\"\\r\"", "\r");
    STR("\"\\t\"", "\t");
    STR("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"", "a\"b\\c/d\be\ff\ng\rh\ti");
    STR("\"\\u0041\"", "A");
    STR("\"\\u0001\"", "\x01"); /* an escaped control character is fine */
    STR("\"\\u001f\"", "\x1f");
    STR("\"\\u007f\"", "\x7f");
    STR("\"\\u0080\"", "\xc2\x80");
    STR("\"\\u00e9\"", "\xc3\xa9");
    STR("\"\\u00E9\"", "\xc3\xa9");
    STR("\"\\u07ff\"", "\xdf\xbf");
    STR("\"\\u0800\"", "\xe0\xa0\x80");
    STR("\"\\u20AC\"", "\xe2\x82\xac");
    STR("\"\\ud7ff\"", "\xed\x9f\xbf");
    STR("\"\\ue000\"", "\xee\x80\x80");
    STR("\"\\uffff\"", "\xef\xbf\xbf");
    STR("\"a\\u0062c\"", "abc");
    STR("\"0123456789abcdef\\n0123456789abcdef\"", "0123456789abcdef\n0123456789abcdef");
}

static void test_surrogate_pairs_decode(void **state)
{
    (void)state;
    STR("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");  /* U+1F600 */
    STR("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80");
    STR("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80");  /* U+10000 */
    STR("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf");  /* U+10FFFF */
    STR("\"x\\ud83d\\ude00y\\ud83d\\ude01\"", "x\xf0\x9f\x98\x80y\xf0\x9f\x98\x81");
}

static void test_raw_utf8_accepted(void **state)
{
    (void)state;
    STR("\"\xc2\x80\"", "\xc2\x80");                 /* U+0080 */
    STR("\"\xc3\xa9\"", "\xc3\xa9");                 /* é */
    STR("\"\xdf\xbf\"", "\xdf\xbf");                 /* U+07FF */
    STR("\"\xe0\xa0\x80\"", "\xe0\xa0\x80");         /* U+0800 */
    STR("\"\xe2\x82\xac\"", "\xe2\x82\xac");         /* € */
    STR("\"\xed\x9f\xbf\"", "\xed\x9f\xbf");         /* U+D7FF */
    STR("\"\xee\x80\x80\"", "\xee\x80\x80");         /* U+E000 */
    STR("\"\xef\xbf\xbf\"", "\xef\xbf\xbf");         /* U+FFFF */
    STR("\"\xf0\x90\x80\x80\"", "\xf0\x90\x80\x80"); /* U+10000 */
    STR("\"\xf0\x9f\x98\x80\"", "\xf0\x9f\x98\x80"); /* 😀 */
    STR("\"\xf4\x8f\xbf\xbf\"", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    STR("\"\x7f\"", "\x7f");                         /* DEL is not a control character in JSON */
    STR("\"Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln \xe2\x82\xac \xf0\x9f\x98\x80");
    /* raw UTF-8 next to an escape (the decoding path) */
    STR("\"\xc3\xa9\\n\xf0\x9f\x98\x80\"", "\xc3\xa9\n\xf0\x9f\x98\x80");
    /* at every offset of a long string */
    expect_in_string_at_offsets(S("\xf0\x9f\x98\x80"), IAM_OK);
    expect_in_string_at_offsets(S("\xe2\x82\xac"), IAM_OK);
    expect_in_string_at_offsets(S("\xc3\xa9"), IAM_OK);
    expect_in_string_at_offsets(S("\\u00e9"), IAM_OK);
}

static void test_string_member_names_with_utf8(void **state)
{
    (void)state;
    json_doc d;
    assert_int_equal(parse(&d, S("{\"caf\xc3\xa9\":1,\"caf\\u00e9x\":2}")), IAM_OK);
    assert_int_equal(json_get(&d, 0, "caf\xc3\xa9"), 2);
    assert_int_equal(json_get(&d, 0, "caf\xc3\xa9x"), 4);
    json_doc_free(&d);
}

/* --------------------------------------------------------------- numbers */

static void expect_number(const char *text, double want)
{
    json_doc d;
    if (parse(&d, text, strlen(text)) != IAM_OK)
        fail_msg("number \"%s\" did not parse", text);
    assert_int_equal(d.nodes[0].type, JSON_NUMBER);
    assert_int_equal(d.nodes[0].len, strlen(text));
    assert_memory_equal(d.nodes[0].str, text, strlen(text));
    double v = 12345.678;
    if (!json_number(&d, 0, &v))
        fail_msg("json_number(\"%s\") returned false", text);
    if (!(v == want) || signbit(v) != signbit(want))
        fail_msg("json_number(\"%s\") = %.17g, expected %.17g", text, v, want);
    json_doc_free(&d);
}

static void test_number_integers(void **state)
{
    (void)state;
    expect_number("0", 0.0);
    expect_number("7", 7.0);
    expect_number("123", 123.0);
    expect_number("1700000000", 1700000000.0);
    expect_number("123456789012345", 123456789012345.0);      /* 15 digits */
    expect_number("1234567890123456", 1234567890123456.0);    /* 16 digits */
    expect_number("9007199254740992", 9007199254740992.0);    /* 2^53 */
    expect_number("9007199254740993", 9007199254740992.0);    /* rounds to even */
    expect_number("253402300799", 253402300799.0);
    expect_number("100000000000000000000", 1e20);
}

static void test_number_negatives(void **state)
{
    (void)state;
    expect_number("-1", -1.0);
    expect_number("-0", -0.0);
    expect_number("-123456789012345", -123456789012345.0);
    expect_number("-9007199254740992", -9007199254740992.0);
    expect_number("-0.5", -0.5);
    expect_number("-1e3", -1000.0);
}

static void test_number_fractions_and_exponents(void **state)
{
    (void)state;
    expect_number("1900000900.5", 1900000900.5);
    expect_number("0.1", 0.1);
    expect_number("0.5", 0.5);
    expect_number("3.14159", 3.14159);
    expect_number("1e3", 1000.0);
    expect_number("1E3", 1000.0);
    expect_number("1e+3", 1000.0);
    expect_number("1e-3", 0.001);
    expect_number("1.5e2", 150.0);
    expect_number("2.5E-1", 0.25);
    expect_number("0e0", 0.0);
    expect_number("1e308", 1e308);
    expect_number("1.0", 1.0);
    expect_number("1700000000.000", 1700000000.0);
}

static void test_number_in_containers(void **state)
{
    (void)state;
    json_doc d;
    assert_int_equal(parse(&d, S("{\"exp\":1900000900.5,\"n\":[-2,3e1]}")), IAM_OK);
    double v = 0;
    size_t e = json_get(&d, 0, "exp");
    assert_int_equal(e, 2);
    assert_true(json_number(&d, e, &v));
    assert_double_exact(v, 1900000900.5);
    size_t n = json_get(&d, 0, "n");
    assert_true(json_number(&d, n + 1, &v));
    assert_double_exact(v, -2.0);
    assert_true(json_number(&d, n + 2, &v));
    assert_double_exact(v, 30.0);
    /* not a number node */
    assert_false(json_number(&d, 0, &v));
    assert_false(json_number(&d, 1, &v));
    assert_false(json_number(&d, n, &v));
    json_doc_free(&d);
}

static void test_number_out_of_range_is_unrepresentable(void **state)
{
    (void)state;
    /* json.h: "False if unrepresentable". 1e400 is beyond the largest double. */
    json_doc d;
    assert_int_equal(parse(&d, S("[1e400,-1e400]")), IAM_OK);
    double v = 0;
    bool ok1 = json_number(&d, 1, &v);
    double v1 = v;
    bool ok2 = json_number(&d, 2, &v);
    double v2 = v;
    json_doc_free(&d);
    if (ok1)
        fail_msg("json_number(\"1e400\") returned true with %g", v1);
    if (ok2)
        fail_msg("json_number(\"-1e400\") returned true with %g", v2);
}

/* Tries a few spellings of German locales; returns the name set, or NULL. */
static const char *set_comma_locale(void)
{
    static const char *const names[] = {"de_DE.UTF-8", "de_DE.utf8", "de_DE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (setlocale(LC_NUMERIC, names[i]))
            return names[i];
    return NULL;
}

static void test_number_locale_independent(void **state)
{
    (void)state;
    const char *loc = set_comma_locale();
    if (!loc) {
        print_message("de_DE locale not installed: locale assertion skipped\n");
        skip();
    }
    const char *dp = localeconv()->decimal_point;
    bool comma = dp && strcmp(dp, ",") == 0;
    json_doc d;
    iam_status st = parse(&d, S("[1900000900.5,-0.25,1.5e2,2.5E-1,0.1,1234567890123456.5]"));
    double v[6] = {0};
    bool ok[6];
    for (int i = 0; i < 6 && st == IAM_OK; i++)
        ok[i] = json_number(&d, (size_t)i + 1, &v[i]);
    if (st == IAM_OK)
        json_doc_free(&d);
    setlocale(LC_NUMERIC, "C");
    assert_true(comma); /* the locale really uses a decimal comma, so the test means something */
    assert_int_equal(st, IAM_OK);
    for (int i = 0; i < 6; i++)
        assert_true(ok[i]);
    assert_double_exact(v[0], 1900000900.5);
    assert_double_exact(v[1], -0.25);
    assert_double_exact(v[2], 150.0);
    assert_double_exact(v[3], 0.25);
    assert_double_exact(v[4], 0.1);
    assert_double_exact(v[5], 1234567890123456.5);
}

/* ------------------------------------------------------------- duplicates */

static void test_duplicates_rejected(void **state)
{
    (void)state;
    MALFORMED("{\"a\":1,\"a\":2}");
    MALFORMED("{\"a\":1,\"a\":1}");
    MALFORMED("{\"a\":1,\"b\":2,\"a\":3}");
    MALFORMED("{\"\":1,\"\":2}");
    MALFORMED("{\"same name\":{},\"same name\":[]}");
    MALFORMED("{\"a\":1,\"\\u0061\":2}");
    MALFORMED("{\"\\u0061\":1,\"a\":2}");
    MALFORMED("{\"ab\":1,\"a\\u0062\":2}");
    MALFORMED("{\"\\n\":1,\"\\u000a\":2}");
    MALFORMED("{\"\xc3\xa9\":1,\"\\u00e9\":2}");
    MALFORMED("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}");
    MALFORMED("{\"x\":{\"a\":1,\"a\":2}}");
    MALFORMED("[{\"a\":1,\"a\":2}]");
    MALFORMED("{\"x\":[1,{\"y\":{\"a\":1,\"b\":2,\"b\":3}}]}");
}

static void test_similar_names_not_duplicates(void **state)
{
    (void)state;
    /* same length, first two and last byte: compared in full */
    OK("{\"abXc\":1,\"abYc\":2}");
    OK("{\"ab\":1,\"abc\":2,\"a\":3,\"b\":4}");
    OK("{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":2}}"); /* same name in different objects */
    OK("[{\"a\":1},{\"a\":2}]");
    OK("{\"ab\":1,\"a b\":2}");
}

/* An object of n members named m0..m(n-1), with optional overrides of one name. */
static char *members_object(size_t n, size_t dup_at, const char *dup_name)
{
    size_t cap = n * 32 + 16, o = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    s[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            s[o++] = ',';
        if (dup_name && i == dup_at)
            o += (size_t)snprintf(s + o, cap - o, "\"%s\":%zu", dup_name, i);
        else
            o += (size_t)snprintf(s + o, cap - o, "\"m%zu\":%zu", i, i);
    }
    s[o++] = '}';
    s[o] = '\0';
    return s;
}

static void test_duplicates_in_large_object(void **state)
{
    (void)state;
    /* 40 members: above the pairwise limit, so the hash path runs */
    char *s = members_object(40, 0, NULL);
    expect_status(s, strlen(s), IAM_OK);
    free(s);
    s = members_object(40, 39, "m0"); /* last duplicates first */
    expect_status(s, strlen(s), IAM_E_MALFORMED);
    free(s);
    s = members_object(40, 20, "m19"); /* adjacent */
    expect_status(s, strlen(s), IAM_E_MALFORMED);
    free(s);
    s = members_object(40, 39, "\\u006d7"); /* "m7" spelled with an escape */
    expect_status(s, strlen(s), IAM_E_MALFORMED);
    free(s);
    s = members_object(40, 5, "m5x"); /* distinct: fine */
    expect_status(s, strlen(s), IAM_OK);
    free(s);
    /* IAM_MAX_JSON_MEMBERS distinct members, and one duplicate among them */
    s = members_object(IAM_MAX_JSON_MEMBERS, 0, NULL);
    expect_status(s, strlen(s), IAM_OK);
    free(s);
    s = members_object(IAM_MAX_JSON_MEMBERS, IAM_MAX_JSON_MEMBERS - 1, "m128");
    expect_status(s, strlen(s), IAM_E_MALFORMED);
    free(s);
}

static void test_duplicates_in_nested_large_object(void **state)
{
    (void)state;
    char *inner = members_object(40, 33, "m2");
    size_t cap = strlen(inner) + 32;
    char *s = malloc(cap);
    assert_non_null(s);
    snprintf(s, cap, "{\"outer\":[%s]}", inner);
    expect_status(s, strlen(s), IAM_E_MALFORMED);
    free(s);
    free(inner);
}

/* ---------------------------------------------------------- malformed: syntax */

static void test_reject_trailing_bytes(void **state)
{
    (void)state;
    MALFORMED("{\"a\":1}x");
    MALFORMED("{\"a\":1}{}");
    MALFORMED("{}{}");
    MALFORMED("{} {}");
    MALFORMED("[]]");
    MALFORMED("{}}");
    MALFORMED("[] ,");
    MALFORMED("1 2");
    MALFORMED("\"a\"\"b\"");
    MALFORMED("true false");
    MALFORMED("{\"a\":1}\0");
    MALFORMED("{\"a\":1}\n\0");
    MALFORMED("null;");
}

static void test_reject_trailing_comma(void **state)
{
    (void)state;
    MALFORMED("[1,]");
    MALFORMED("{\"a\":1,}");
    MALFORMED("[,]");
    MALFORMED("[,1]");
    MALFORMED("[1,,2]");
    MALFORMED("{,}");
    MALFORMED("{,\"a\":1}");
    MALFORMED("{\"a\":1,,\"b\":2}");
    MALFORMED("[1 , ]");
}

static void test_reject_leading_zeros(void **state)
{
    (void)state;
    MALFORMED("01");
    MALFORMED("00");
    MALFORMED("-01");
    MALFORMED("[01]");
    MALFORMED("{\"a\":01}");
    MALFORMED("007");
    MALFORMED("00.5");
    OK("0");
    OK("[0,10,100]");
    OK("0.01");
}

static void test_reject_bad_numbers(void **state)
{
    (void)state;
    MALFORMED("-");
    MALFORMED("[-]");
    MALFORMED("-a");
    MALFORMED("- 1");
    MALFORMED("--1");
    MALFORMED("1.");
    MALFORMED("[1.]");
    MALFORMED("1.e3");
    MALFORMED(".5");
    MALFORMED("[.5]");
    MALFORMED("-.5");
    MALFORMED("+1");
    MALFORMED("1e");
    MALFORMED("1e+");
    MALFORMED("1E-");
    MALFORMED("1.5e");
    MALFORMED("0x10");
    MALFORMED("1.2.3");
    MALFORMED("1e2e3");
    MALFORMED("1,5");
}

static void test_reject_nan_infinity(void **state)
{
    (void)state;
    MALFORMED("NaN");
    MALFORMED("nan");
    MALFORMED("Infinity");
    MALFORMED("-Infinity");
    MALFORMED("infinity");
    MALFORMED("inf");
    MALFORMED("[NaN]");
    MALFORMED("{\"exp\":Infinity}");
    MALFORMED("{\"exp\":-Infinity}");
}

static void test_reject_bad_literals(void **state)
{
    (void)state;
    MALFORMED("tru");
    MALFORMED("True");
    MALFORMED("TRUE");
    MALFORMED("nul");
    MALFORMED("Null");
    MALFORMED("fals");
    MALFORMED("falsey");
    MALFORMED("nulll");
    MALFORMED("[truee]");
    MALFORMED("undefined");
    MALFORMED("[t]");
    MALFORMED("{\"a\":n}");
}

static void test_reject_single_quotes(void **state)
{
    (void)state;
    MALFORMED("'a'");
    MALFORMED("{'a':1}");
    MALFORMED("['a']");
    MALFORMED("{\"a\":'b'}");
}

static void test_reject_comments(void **state)
{
    (void)state;
    MALFORMED("{} // comment");
    MALFORMED("// comment\n{}");
    MALFORMED("/* c */ {}");
    MALFORMED("{} /* c */");
    MALFORMED("{\"a\":1 /* c */}");
    MALFORMED("{\"a\":/*c*/1}");
    MALFORMED("[1, // c\n 2]");
    MALFORMED("# c\n{}");
    MALFORMED("{} #");
}

static void test_reject_structure_errors(void **state)
{
    (void)state;
    MALFORMED("");
    MALFORMED(" ");
    MALFORMED("\n\t");
    MALFORMED("{\"a\" 1}");
    MALFORMED("{\"a\"::1}");
    MALFORMED("{a:1}");
    MALFORMED("{\"a\":1 \"b\":2}");
    MALFORMED("{1:2}");
    MALFORMED("{\"a\":}");
    MALFORMED("{\"a\"}");
    MALFORMED("{:1}");
    MALFORMED("[1 2]");
    MALFORMED("[1:2]");
    MALFORMED("{\"a\":1]");
    MALFORMED("[1}");
    MALFORMED("]");
    MALFORMED("}");
    MALFORMED(",");
    MALFORMED(":");
    MALFORMED("{null:1}");
}

static void test_reject_other_whitespace(void **state)
{
    (void)state;
    /* RFC 8259 whitespace is exactly space, tab, LF, CR */
    MALFORMED("\v{}");
    MALFORMED("{}\f");
    MALFORMED("[1,\v2]");
    MALFORMED("\xc2\xa0{}");       /* NO-BREAK SPACE */
    MALFORMED("{}\xe2\x80\x83");   /* EM SPACE */
    MALFORMED("\xef\xbb\xbf{}");   /* a byte order mark is not in the grammar */
    MALFORMED("\0{}");
    MALFORMED("{\0}");
}

static void test_reject_unterminated_strings(void **state)
{
    (void)state;
    MALFORMED("\"");
    MALFORMED("\"abc");
    MALFORMED("\"abcdefghijklmnopqrstuvwxyz");
    MALFORMED("{\"a\":\"b");
    MALFORMED("{\"a");
    MALFORMED("[\"a]");
    MALFORMED("\"\\");
    MALFORMED("\"\\\"");
    MALFORMED("\"a\\u12");
    MALFORMED("\"a\\u12\"");
    MALFORMED("\"\\ud83d");
    MALFORMED("\"\\ud83d\\");
    MALFORMED("\"\\ud83d\\ude0");
    MALFORMED("\"abc\\n");
    MALFORMED("\"\xc3\xa9");
}

static void test_reject_unterminated_containers(void **state)
{
    (void)state;
    MALFORMED("{");
    MALFORMED("[");
    MALFORMED("{\"a\"");
    MALFORMED("{\"a\":");
    MALFORMED("{\"a\":1");
    MALFORMED("{\"a\":1,");
    MALFORMED("[1,2");
    MALFORMED("[1,2,");
    MALFORMED("[[]");
    MALFORMED("{\"a\":{}");
    MALFORMED("[[[[");
    MALFORMED("{\"a\":[1,{\"b\":[2,{");
}

/* Unterminated nesting shallower than the depth limit is still a syntax error: the
 * header lists MALFORMED, TOO_LARGE (depth/members) and NOMEM as the only errors. */
static void test_reject_unterminated_deep_nesting(void **state)
{
    (void)state;
    MALFORMED("[[[[[");
    MALFORMED("[[[[[[[[");
    MALFORMED("[[[[[[[[[[[[[[[[");      /* 16 opened, none closed */
    MALFORMED("[[[[[[[[[[[[[[[[1");
    MALFORMED("[[[[[[[[[[[[[[[[]]]");
    MALFORMED("[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]");  /* one bracket short */
}

static void test_reject_raw_control_characters(void **state)
{
    (void)state;
    MALFORMED("\"\x01\"");
    MALFORMED("\"\x1f\"");
    MALFORMED("\"a\nb\"");
    MALFORMED("\"\n\"");
    MALFORMED("\"\t\"");
    MALFORMED("\"\r\"");
    MALFORMED("\"\b\"");
    MALFORMED("\"\0\"");
    MALFORMED("\"a\0b\"");
    MALFORMED("{\"a\x01\":1}");
    MALFORMED("{\"a\":\"\x1f\"}");
    MALFORMED("\"\\n\x01\""); /* after an escape (the decoding path) */
    for (int c = 0; c < 0x20; c++) {
        char b[1] = {(char)c};
        expect_in_string_at_offsets(b, 1, IAM_E_MALFORMED);
    }
    /* 0x20 and 0x7f are not control characters for JSON */
    expect_in_string_at_offsets(" ", 1, IAM_OK);
    expect_in_string_at_offsets("\x7f", 1, IAM_OK);
}

static void test_reject_escaped_nul(void **state)
{
    (void)state;
    MALFORMED("\"\\u0000\"");
    MALFORMED("\"a\\u0000b\"");
    MALFORMED("{\"\\u0000\":1}");
    MALFORMED("{\"a\":\"\\u0000\"}");
    expect_in_string_at_offsets(S("\\u0000"), IAM_E_MALFORMED);
}

static void test_reject_lone_surrogates(void **state)
{
    (void)state;
    MALFORMED("\"\\ud800\"");
    MALFORMED("\"\\udc00\"");
    MALFORMED("\"\\ud800\\u0041\"");
    MALFORMED("\"\\udbff\"");
    MALFORMED("\"\\udfff\"");
    MALFORMED("\"\\ud800\\ud800\"");   /* high, high */
    MALFORMED("\"\\ude00\\ud83d\"");   /* reversed */
    MALFORMED("\"\\ud800x\"");
    MALFORMED("\"\\ud800\\n\"");
    MALFORMED("\"\\ud800\\\\udc00\""); /* an escaped backslash, not a pair */
    MALFORMED("\"\\ud800\\uffff\"");
    MALFORMED("\"\\ud800\\ue000\"");
    MALFORMED("{\"\\ud800\":1}");
    expect_in_string_at_offsets(S("\\ud83d"), IAM_E_MALFORMED);
    expect_in_string_at_offsets(S("\\ude00"), IAM_E_MALFORMED);
}

static void test_reject_bad_escapes(void **state)
{
    (void)state;
    MALFORMED("\"\\x41\"");
    MALFORMED("\"\\U0041\"");
    MALFORMED("\"\\u00g0\"");
    MALFORMED("\"\\u 041\"");
    MALFORMED("\"\\u-041\"");
    MALFORMED("\"\\'\"");
    MALFORMED("\"\\a\"");
    MALFORMED("\"\\0\"");
    MALFORMED("\"\\ \"");
    MALFORMED("\"\\\xc3\xa9\"");
}

static void test_reject_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {S("\xc0\x80")},         /* overlong NUL */
        {S("\xc1\xbf")},         /* overlong */
        {S("\xe0\x80\x80")},     /* overlong */
        {S("\xe0\x9f\xbf")},     /* overlong (U+07FF in 3 bytes) */
        {S("\xed\xa0\x80")},     /* surrogate U+D800 */
        {S("\xed\xbf\xbf")},     /* surrogate U+DFFF */
        {S("\xf0\x80\x80\x80")}, /* overlong */
        {S("\xf0\x8f\xbf\xbf")}, /* overlong (U+FFFF in 4 bytes) */
        {S("\xf4\x90\x80\x80")}, /* above U+10FFFF */
        {S("\xf5\x80\x80\x80")},
        {S("\xf8\x88\x80\x80\x80")},
        {S("\xfc\x84\x80\x80\x80\x80")},
        {S("\xfe")},
        {S("\xff")},
        {S("\x80")},             /* bare continuation */
        {S("\xbf")},
        {S("\xc2")},             /* truncated */
        {S("\xe2\x82")},
        {S("\xf0\x9f\x98")},
        {S("\xc2\x41")},         /* lead byte + non-continuation */
        {S("\xe2\x41\x82")},
        {S("\xe2\x82\x41")},
        {S("\xf0\x9f\x41\x80")},
        {S("\xf0\x9f\x98\x41")},
        {S("\xc3\xa9\x80")},     /* valid char + stray continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_in_string_at_offsets(bad[i].bytes, bad[i].len, IAM_E_MALFORMED);
        /* after an escape (the decoding path) */
        char buf[32];
        size_t n = 0;
        memcpy(buf, "\"\\n", 3), n = 3;
        memcpy(buf + n, bad[i].bytes, bad[i].len), n += bad[i].len;
        buf[n++] = '"';
        expect_status(buf, n, IAM_E_MALFORMED);
        /* at the end of the input, unterminated */
        buf[0] = '"';
        memcpy(buf + 1, bad[i].bytes, bad[i].len);
        expect_status(buf, bad[i].len + 1, IAM_E_MALFORMED);
    }
    /* every F5..FF byte and every C0/C1 lead */
    for (int b = 0xf5; b <= 0xff; b++) {
        char s[6] = {'"', (char)b, (char)0x80, (char)0x80, (char)0x80, '"'};
        expect_status(s, 6, IAM_E_MALFORMED);
    }
    for (int b = 0x80; b <= 0xc1; b++) {
        char s[4] = {'"', (char)b, (char)0x80, '"'};
        expect_status(s, 4, IAM_E_MALFORMED);
    }
}

static void test_reject_non_ascii_outside_strings(void **state)
{
    (void)state;
    MALFORMED("\xc3\xa9");
    MALFORMED("[\xc3\xa9]");
    MALFORMED("{\"a\":\xe2\x82\xac}");
    MALFORMED("{\xc3\xa9:1}");
    MALFORMED("{\"a\":1}\xc2\xa0");
    MALFORMED("\x80");
    MALFORMED("[1,\xff]");
    MALFORMED("\xe2\x80\x9c" "a" "\xe2\x80\x9d"); /* curly quotes */
}

/* ------------------------------------------------------------------ limits */

static char *nested(const char *open, const char *close, size_t depth, const char *inner)
{
    size_t ol = strlen(open), cl = strlen(close), il = strlen(inner);
    char *s = malloc(depth * (ol + cl) + il + 1);
    assert_non_null(s);
    size_t o = 0;
    for (size_t i = 0; i < depth; i++)
        memcpy(s + o, open, ol), o += ol;
    memcpy(s + o, inner, il), o += il;
    for (size_t i = 0; i < depth; i++)
        memcpy(s + o, close, cl), o += cl;
    s[o] = '\0';
    return s;
}

static void expect_nested(const char *open, const char *close, size_t depth, const char *inner,
                          iam_status want)
{
    char *s = nested(open, close, depth, inner);
    expect_status(s, strlen(s), want);
    free(s);
}

static void test_depth_limit_arrays(void **state)
{
    (void)state;
    expect_nested("[", "]", IAM_MAX_JSON_DEPTH, "", IAM_OK);
    expect_nested("[", "]", IAM_MAX_JSON_DEPTH, "1", IAM_OK);
    expect_nested("[", "]", IAM_MAX_JSON_DEPTH + 1, "", IAM_E_TOO_LARGE);
    expect_nested("[", "]", IAM_MAX_JSON_DEPTH + 1, "1", IAM_E_TOO_LARGE);
    expect_nested("[", "]", 1000, "", IAM_E_TOO_LARGE);
}

static void test_depth_limit_objects(void **state)
{
    (void)state;
    expect_nested("{\"a\":", "}", IAM_MAX_JSON_DEPTH, "1", IAM_OK);
    expect_nested("{\"a\":", "}", IAM_MAX_JSON_DEPTH - 1, "{}", IAM_OK);
    expect_nested("{\"a\":", "}", IAM_MAX_JSON_DEPTH, "{}", IAM_E_TOO_LARGE);
    expect_nested("{\"a\":", "}", IAM_MAX_JSON_DEPTH + 1, "1", IAM_E_TOO_LARGE);
    /* mixed */
    expect_nested("{\"a\":[", "]}", IAM_MAX_JSON_DEPTH / 2, "", IAM_OK);
    expect_nested("{\"a\":[", "]}", IAM_MAX_JSON_DEPTH / 2, "[]", IAM_E_TOO_LARGE);
    expect_nested("[{\"a\":", "}]", IAM_MAX_JSON_DEPTH / 2, "1", IAM_OK);
    expect_nested("[{\"a\":", "}]", IAM_MAX_JSON_DEPTH / 2, "{}", IAM_E_TOO_LARGE);
}

static void test_depth_limit_deep_in_a_sibling(void **state)
{
    (void)state;
    /* depth counts the path, not the first branch: the deep branch is the second */
    char *deep;
    size_t cap;
    char *s;
    /* [1,[[...16 deep...]]] is 17 levels */
    deep = nested("[", "]", IAM_MAX_JSON_DEPTH, "");
    cap = strlen(deep) + 16;
    s = malloc(cap);
    assert_non_null(s);
    snprintf(s, cap, "[1,%s]", deep);
    expect_status(s, strlen(s), IAM_E_TOO_LARGE);
    free(s);
    free(deep);
    /* [1,[[...15 deep...]]] is exactly 16 */
    deep = nested("[", "]", IAM_MAX_JSON_DEPTH - 1, "");
    cap = strlen(deep) + 16;
    s = malloc(cap);
    assert_non_null(s);
    snprintf(s, cap, "[1,%s]", deep);
    expect_status(s, strlen(s), IAM_OK);
    free(s);
    free(deep);
}

static char *array_of(size_t n)
{
    char *s = malloc(n * 2 + 3);
    assert_non_null(s);
    size_t o = 0;
    s[o++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            s[o++] = ',';
        s[o++] = '0';
    }
    s[o++] = ']';
    s[o] = '\0';
    return s;
}

static void test_members_limit_arrays(void **state)
{
    (void)state;
    char *s = array_of(IAM_MAX_JSON_MEMBERS);
    json_doc d;
    assert_int_equal(parse(&d, s, strlen(s)), IAM_OK);
    assert_int_equal(d.nodes[0].len, IAM_MAX_JSON_MEMBERS);
    assert_int_equal(d.count, IAM_MAX_JSON_MEMBERS + 1);
    json_doc_free(&d);
    free(s);
    s = array_of(IAM_MAX_JSON_MEMBERS + 1);
    expect_status(s, strlen(s), IAM_E_TOO_LARGE);
    free(s);
    s = array_of(5000);
    expect_status(s, strlen(s), IAM_E_TOO_LARGE);
    free(s);
    /* nested: the inner array is over the limit */
    char *inner = array_of(IAM_MAX_JSON_MEMBERS + 1);
    size_t cap = strlen(inner) + 16;
    s = malloc(cap);
    assert_non_null(s);
    snprintf(s, cap, "{\"a\":[%s]}", inner);
    expect_status(s, strlen(s), IAM_E_TOO_LARGE);
    free(s);
    free(inner);
}

static void test_members_limit_objects(void **state)
{
    (void)state;
    char *s = members_object(IAM_MAX_JSON_MEMBERS, 0, NULL);
    json_doc d;
    assert_int_equal(parse(&d, s, strlen(s)), IAM_OK);
    assert_int_equal(d.nodes[0].len, IAM_MAX_JSON_MEMBERS);
    assert_int_equal(d.count, 2 * IAM_MAX_JSON_MEMBERS + 1);
    assert_int_equal(json_get(&d, 0, "m255"), 2 * 255 + 2);
    json_doc_free(&d);
    free(s);
    s = members_object(IAM_MAX_JSON_MEMBERS + 1, 0, NULL);
    expect_status(s, strlen(s), IAM_E_TOO_LARGE);
    free(s);
}

static void test_custom_limits(void **state)
{
    (void)state;
    const json_limits small = {2, 3};
    json_doc d;
    assert_int_equal(parse_lim(&d, S("[[1,2,3]]"), &small), IAM_OK);
    json_doc_free(&d);
    assert_int_equal(parse_lim(&d, S("[[[]]]"), &small), IAM_E_TOO_LARGE);
    assert_int_equal(parse_lim(&d, S("[1,2,3,4]"), &small), IAM_E_TOO_LARGE);
    assert_int_equal(parse_lim(&d, S("{\"a\":1,\"b\":2,\"c\":3}"), &small), IAM_OK);
    json_doc_free(&d);
    assert_int_equal(parse_lim(&d, S("{\"a\":1,\"b\":2,\"c\":3,\"d\":4}"), &small), IAM_E_TOO_LARGE);
}

/* ---------------------------------------------------------------- buffers */

static void test_caller_buffers_used_when_large_enough(void **state)
{
    (void)state;
    static const char doc[] = "{\"a\":\"x\\ny\",\"b\":[1,2]}";
    json_node nodes[64];
    char scratch[256];
    json_doc d;
    iam_error err;
    assert_int_equal(json_parse(&d, S(doc), &LIM, nodes, 64, scratch, sizeof scratch, "t", &err),
                     IAM_OK);
    assert_ptr_equal(d.nodes, nodes);
    assert_int_equal(d.count, 7);
    size_t a = json_get(&d, 0, "a");
    assert_int_equal(a, 2);
    assert_int_equal(d.nodes[a].len, 3);
    assert_memory_equal(d.nodes[a].str, "x\ny", 3);
    /* the escaped string was decoded into the caller's scratch */
    assert_true(d.nodes[a].str >= scratch && d.nodes[a].str < scratch + sizeof scratch);
    json_doc_free(&d); /* must not free the caller's storage (ASan would notice) */
    assert_null(d.nodes);
    assert_int_equal(d.count, 0);
}

/* A large document: an object of 200 members whose values are escaped strings and arrays. */
static char *large_document(size_t *len)
{
    size_t cap = 200 * 64 + 16, o = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    s[o++] = '{';
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s\"k%d\":[\"v\\u00e9%d\\n\",%d,{\"z\":true}]",
                              i ? "," : "", i, i, i);
    s[o++] = '}';
    s[o] = '\0';
    *len = o;
    return s;
}

static void check_large_document(const json_doc *d)
{
    assert_int_equal(d->nodes[0].type, JSON_OBJECT);
    assert_int_equal(d->nodes[0].len, 200);
    assert_int_equal(d->count, 1 + 200 * 7);
    for (int i = 0; i < 200; i += 37) {
        char name[16], want[32];
        snprintf(name, sizeof name, "k%d", i);
        int wl = snprintf(want, sizeof want, "v\xc3\xa9%d\n", i);
        size_t v = json_get(d, 0, name);
        assert_int_not_equal(v, 0);
        assert_int_equal(d->nodes[v].type, JSON_ARRAY);
        assert_int_equal(d->nodes[v].len, 3);
        assert_int_equal(d->nodes[v + 1].len, (uint32_t)wl);
        assert_memory_equal(d->nodes[v + 1].str, want, (size_t)wl);
        double x = -1;
        assert_true(json_number(d, v + 2, &x));
        assert_double_exact(x, (double)i);
        assert_int_equal(d->nodes[v].next, v + 6);
    }
}

static void test_small_caller_buffers_fall_back_to_allocation(void **state)
{
    (void)state;
    size_t len;
    char *s = large_document(&len);
    json_node nodes[2];
    char scratch[4];
    memset(nodes, 0x5a, sizeof nodes);
    memset(scratch, 0x5a, sizeof scratch);
    json_doc d;
    iam_error err;
    assert_int_equal(json_parse(&d, s, len, &LIM, nodes, 2, scratch, sizeof scratch, "t", &err),
                     IAM_OK);
    assert_ptr_not_equal(d.nodes, nodes);
    check_large_document(&d);
    /* the caller's small buffers were left alone */
    for (size_t i = 0; i < sizeof scratch; i++)
        assert_int_equal((unsigned char)scratch[i], 0x5a);
    const unsigned char *nb = (const unsigned char *)nodes;
    for (size_t i = 0; i < sizeof nodes; i++)
        assert_int_equal(nb[i], 0x5a);
    json_doc_free(&d); /* LSan: the allocations must be released here */
    assert_null(d.nodes);
    free(s);
}

static void test_small_node_buffer_large_scratch(void **state)
{
    (void)state;
    size_t len;
    char *s = large_document(&len);
    json_node nodes[3];
    char *scratch = malloc(len + 1);
    assert_non_null(scratch);
    json_doc d;
    iam_error err;
    assert_int_equal(json_parse(&d, s, len, &LIM, nodes, 3, scratch, len + 1, "t", &err), IAM_OK);
    assert_ptr_not_equal(d.nodes, nodes);
    check_large_document(&d);
    json_doc_free(&d);
    free(scratch);
    free(s);
}

static void test_null_buffers_allocate(void **state)
{
    (void)state;
    size_t len;
    char *s = large_document(&len);
    json_doc d;
    assert_int_equal(parse(&d, s, len), IAM_OK);
    check_large_document(&d);
    json_doc_free(&d);
    free(s);
}

static void test_failed_parse_releases_allocation(void **state)
{
    (void)state;
    size_t len;
    char *s = large_document(&len);
    s[len - 1] = ','; /* unterminated at the very end */
    json_node nodes[2];
    char scratch[4];
    json_doc d;
    iam_error err;
    assert_int_equal(json_parse(&d, s, len, &LIM, nodes, 2, scratch, sizeof scratch, "t", &err),
                     IAM_E_MALFORMED);
    assert_int_equal(err.code, IAM_E_MALFORMED);
    assert_null(d.nodes); /* released by json_parse; LSan checks */
    free(s);
}

int main(void)
{
    setlocale(LC_ALL, "C");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_basic_documents),
        cmocka_unit_test(test_accepts_root_scalars),
        cmocka_unit_test(test_accepts_surrounding_whitespace),
        cmocka_unit_test(test_node_structure),
        cmocka_unit_test(test_next_skips_subtrees),
        cmocka_unit_test(test_json_get),
        cmocka_unit_test(test_json_str_eq),
        cmocka_unit_test(test_escapes_decode),
        cmocka_unit_test(test_surrogate_pairs_decode),
        cmocka_unit_test(test_raw_utf8_accepted),
        cmocka_unit_test(test_string_member_names_with_utf8),
        cmocka_unit_test(test_number_integers),
        cmocka_unit_test(test_number_negatives),
        cmocka_unit_test(test_number_fractions_and_exponents),
        cmocka_unit_test(test_number_in_containers),
        cmocka_unit_test(test_number_out_of_range_is_unrepresentable),
        cmocka_unit_test(test_number_locale_independent),
        cmocka_unit_test(test_duplicates_rejected),
        cmocka_unit_test(test_similar_names_not_duplicates),
        cmocka_unit_test(test_duplicates_in_large_object),
        cmocka_unit_test(test_duplicates_in_nested_large_object),
        cmocka_unit_test(test_reject_trailing_bytes),
        cmocka_unit_test(test_reject_trailing_comma),
        cmocka_unit_test(test_reject_leading_zeros),
        cmocka_unit_test(test_reject_bad_numbers),
        cmocka_unit_test(test_reject_nan_infinity),
        cmocka_unit_test(test_reject_bad_literals),
        cmocka_unit_test(test_reject_single_quotes),
        cmocka_unit_test(test_reject_comments),
        cmocka_unit_test(test_reject_structure_errors),
        cmocka_unit_test(test_reject_other_whitespace),
        cmocka_unit_test(test_reject_unterminated_strings),
        cmocka_unit_test(test_reject_unterminated_containers),
        cmocka_unit_test(test_reject_unterminated_deep_nesting),
        cmocka_unit_test(test_reject_raw_control_characters),
        cmocka_unit_test(test_reject_escaped_nul),
        cmocka_unit_test(test_reject_lone_surrogates),
        cmocka_unit_test(test_reject_bad_escapes),
        cmocka_unit_test(test_reject_invalid_utf8),
        cmocka_unit_test(test_reject_non_ascii_outside_strings),
        cmocka_unit_test(test_depth_limit_arrays),
        cmocka_unit_test(test_depth_limit_objects),
        cmocka_unit_test(test_depth_limit_deep_in_a_sibling),
        cmocka_unit_test(test_members_limit_arrays),
        cmocka_unit_test(test_members_limit_objects),
        cmocka_unit_test(test_custom_limits),
        cmocka_unit_test(test_caller_buffers_used_when_large_enough),
        cmocka_unit_test(test_small_caller_buffers_fall_back_to_allocation),
        cmocka_unit_test(test_small_node_buffer_large_scratch),
        cmocka_unit_test(test_null_buffers_allocate),
        cmocka_unit_test(test_failed_parse_releases_allocation),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
