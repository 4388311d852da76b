/*
 * test_b64url.c — strict base64url (src/jose/b64url.h).
 *
 * Expected values are computed here from first principles (our own alphabet table),
 * never by asking the library: RFC 4648 §10 vectors in the URL alphabet, exhaustive
 * checks of every byte value in every position, every 2- and 3-character tail, and
 * random round trips of every length 0..64.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jose/b64url.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Value of c in the URL alphabet, or -1. Independent of the library's table. */
static int sextet(unsigned char c)
{
    if (c == '\0')
        return -1;
    const char *p = memchr(ALPHABET, c, 64);
    return p ? (int)(p - ALPHABET) : -1;
}

/* Deterministic PRNG (xorshift64*), so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Du;
}

#define SENTINEL 0xA5
#define BUF 256

/* Decodes s[0..len) and requires success with exactly the expected bytes, and that
 * nothing past the decoded bytes was written. */
static void expect_decode(const char *s, size_t len, const void *want, size_t want_len)
{
    unsigned char out[BUF];
    assert_true(b64url_decoded_max(len) <= BUF);
    memset(out, SENTINEL, sizeof out);
    size_t out_len = (size_t)-1;
    if (!b64url_decode(s, len, out, &out_len))
        fail_msg("decode of a valid input (len %zu) failed", len);
    assert_int_equal(out_len, want_len);
    assert_true(out_len <= b64url_decoded_max(len));
    if (want_len)
        assert_memory_equal(out, want, want_len);
    for (size_t i = want_len; i < sizeof out; i++)
        if (out[i] != SENTINEL)
            fail_msg("decode wrote past its output at byte %zu", i);
}

static void expect_reject(const char *s, size_t len)
{
    unsigned char out[BUF];
    assert_true(b64url_decoded_max(len) <= BUF);
    size_t out_len = 0;
    if (b64url_decode(s, len, out, &out_len)) {
        char shown[64] = "";
        size_t n = 0;
        for (size_t i = 0; i < len && n + 5 < sizeof shown; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c >= 0x21 && c < 0x7f)
                shown[n++] = (char)c, shown[n] = '\0';
            else
                n += (size_t)snprintf(shown + n, sizeof shown - n, "\\x%02x", c);
        }
        fail_msg("decode accepted an invalid input \"%s\" (len %zu)", shown, len);
    }
}

static void expect_encode(const void *in, size_t len, const char *want)
{
    char out[BUF];
    memset(out, SENTINEL, sizeof out);
    size_t n = b64url_encode(in, len, out);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
    for (size_t i = n + 1; i < sizeof out; i++)
        if ((unsigned char)out[i] != SENTINEL)
            fail_msg("encode wrote past its terminator at byte %zu", i);
}

/* ---------------------------------------------------------------- vectors */

/* RFC 4648 §10 (the base64 vectors; no character of them differs in the URL alphabet,
 * padding removed). */
static const struct {
    const char *plain, *enc;
} RFC4648[] = {
    {"", ""},          {"f", "Zg"},          {"fo", "Zm8"},        {"foo", "Zm9v"},
    {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_encode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof RFC4648 / sizeof RFC4648[0]; i++)
        expect_encode(RFC4648[i].plain, strlen(RFC4648[i].plain), RFC4648[i].enc);
}

static void test_rfc4648_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof RFC4648 / sizeof RFC4648[0]; i++)
        expect_decode(RFC4648[i].enc, strlen(RFC4648[i].enc), RFC4648[i].plain,
                      strlen(RFC4648[i].plain));
}

/* The two characters where the URL alphabet differs: '-' (62) and '_' (63). */
static void test_url_alphabet_62_63(void **state)
{
    (void)state;
    static const unsigned char fb_ff[] = {0xfb, 0xff};       /* base64 "+/8=" */
    static const unsigned char ff3[] = {0xff, 0xff, 0xff};   /* base64 "////" */
    static const unsigned char fb_ef_be[] = {0xfb, 0xef, 0xbe}; /* base64 "++++" */
    static const unsigned char f8[] = {0xf8};                /* base64 "+A==" */
    expect_encode(fb_ff, 2, "-_8");
    expect_encode(ff3, 3, "____");
    expect_encode(fb_ef_be, 3, "----");
    expect_encode(f8, 1, "-A");
    expect_decode("-_8", 3, fb_ff, 2);
    expect_decode("____", 4, ff3, 3);
    expect_decode("----", 4, fb_ef_be, 3);
    expect_decode("-A", 2, f8, 1);
}

/* 48 bytes whose encoding is the whole alphabet in order. */
static void test_whole_alphabet(void **state)
{
    (void)state;
    unsigned char bytes[48];
    for (int g = 0; g < 16; g++) {
        uint32_t v = (uint32_t)(4 * g) << 18 | (uint32_t)(4 * g + 1) << 12 |
                     (uint32_t)(4 * g + 2) << 6 | (uint32_t)(4 * g + 3);
        bytes[3 * g] = (unsigned char)(v >> 16);
        bytes[3 * g + 1] = (unsigned char)(v >> 8);
        bytes[3 * g + 2] = (unsigned char)v;
    }
    expect_encode(bytes, sizeof bytes, ALPHABET);
    expect_decode(ALPHABET, 64, bytes, sizeof bytes);
}

static void test_empty(void **state)
{
    (void)state;
    unsigned char out[4] = {SENTINEL, SENTINEL, SENTINEL, SENTINEL};
    size_t out_len = 99;
    assert_true(b64url_decode("", 0, out, &out_len));
    assert_int_equal(out_len, 0);
    assert_int_equal(out[0], SENTINEL);
    char enc[2] = {'x', 'x'};
    assert_int_equal(b64url_encode((const unsigned char *)"", 0, enc), 0);
    assert_int_equal(enc[0], '\0');
    assert_int_equal(enc[1], 'x');
}

static void test_decoded_max_bound(void **state)
{
    (void)state;
    for (size_t len = 0; len <= 200; len++) {
        size_t exact = len / 4 * 3 + (len % 4 == 2 ? 1 : len % 4 == 3 ? 2 : 0);
        assert_true(b64url_decoded_max(len) >= exact);
    }
}

/* -------------------------------------------------------------- round trips */

static void test_round_trip_random_lengths_0_to_64(void **state)
{
    (void)state;
    for (size_t len = 0; len <= 64; len++) {
        for (int rep = 0; rep < 64; rep++) {
            unsigned char in[64];
            for (size_t i = 0; i < len; i++)
                in[i] = (unsigned char)rng_next();
            char enc[BUF];
            memset(enc, SENTINEL, sizeof enc);
            size_t n = b64url_encode(in, len, enc);
            size_t want_n = len / 3 * 4 + (len % 3 == 1 ? 2 : len % 3 == 2 ? 3 : 0);
            assert_int_equal(n, want_n);
            assert_int_equal(enc[n], '\0');
            assert_int_equal((unsigned char)enc[n + 1], SENTINEL);
            /* Our own decoding of the encoder's output. */
            unsigned char mine[64];
            size_t m = 0;
            uint32_t acc = 0;
            int bits = 0;
            for (size_t i = 0; i < n; i++) {
                int v = sextet((unsigned char)enc[i]);
                if (v < 0)
                    fail_msg("encoder produced a character outside the URL alphabet");
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    mine[m++] = (unsigned char)(acc >> bits);
                    acc &= (1u << bits) - 1;
                }
            }
            assert_int_equal(acc, 0); /* canonical: discarded bits are zero */
            assert_int_equal(m, len);
            if (len)
                assert_memory_equal(mine, in, len);
            /* And the library's decoder. */
            expect_decode(enc, n, in, len);
        }
    }
}

/* Every byte value 0..255 in every position of a four-character group, after a valid
 * group: accepted exactly when it is in the URL alphabet. Covers '=', '+', '/', NUL,
 * whitespace and all bytes >= 0x80 at once. */
static void test_every_byte_every_position(void **state)
{
    (void)state;
    for (int pos = 0; pos < 8; pos++) {
        for (int b = 0; b < 256; b++) {
            char s[8];
            memcpy(s, "Zm9vYmFy", 8);
            s[pos] = (char)b;
            int v = sextet((unsigned char)b);
            if (v < 0) {
                expect_reject(s, 8);
            } else {
                unsigned char want[6];
                /* decode by hand */
                uint32_t g0 = 0, g1 = 0;
                for (int i = 0; i < 4; i++)
                    g0 = g0 << 6 | (uint32_t)sextet((unsigned char)s[i]);
                for (int i = 4; i < 8; i++)
                    g1 = g1 << 6 | (uint32_t)sextet((unsigned char)s[i]);
                want[0] = (unsigned char)(g0 >> 16), want[1] = (unsigned char)(g0 >> 8),
                want[2] = (unsigned char)g0;
                want[3] = (unsigned char)(g1 >> 16), want[4] = (unsigned char)(g1 >> 8),
                want[5] = (unsigned char)g1;
                expect_decode(s, 8, want, 6);
            }
        }
    }
}

/* ---------------------------------------------------------------- rejection */

static void test_reject_padding(void **state)
{
    (void)state;
    expect_reject("Zg==", 4);
    expect_reject("Zm8=", 4);
    expect_reject("Zg=", 3);
    expect_reject("Zm9vYg==", 8);
    expect_reject("Zm9vYmE=", 8);
    expect_reject("=Zm9v", 5);
    expect_reject("=Zm9vY", 6);
    expect_reject("Zm=v", 4);
    expect_reject("Z=9v", 4);
    expect_reject("Zm9v====", 8);
    expect_reject("====", 4);
    expect_reject("==", 2);
    /* '=' in every position of a valid 8-character string */
    for (int i = 0; i < 8; i++) {
        char s[9];
        memcpy(s, "Zm9vYmFy", 9);
        s[i] = '=';
        expect_reject(s, 8);
    }
}

static void test_reject_standard_alphabet(void **state)
{
    (void)state;
    expect_reject("+_8", 3);
    expect_reject("-/8", 3);
    expect_reject("+/8", 3);
    expect_reject("++++", 4);
    expect_reject("////", 4);
    expect_reject("Zm9v+A", 6);
    expect_reject("Zm9v/w", 6);
    for (int i = 0; i < 8; i++) {
        char s[9];
        memcpy(s, "Zm9vYmFy", 9);
        s[i] = '+';
        expect_reject(s, 8);
        s[i] = '/';
        expect_reject(s, 8);
    }
}

static void test_reject_whitespace(void **state)
{
    (void)state;
    expect_reject(" Zm9vYg", 7);
    expect_reject("Zm9v Yg", 7);
    expect_reject("Zm9vYg ", 7);
    expect_reject("Zm9v\nYg", 7);
    expect_reject("Zm9vYg\n", 7);
    expect_reject("\nZm9vYg", 7);
    expect_reject("Zm9v\tYg", 7);
    expect_reject("Zm9v\r\nYg", 8);
    expect_reject("Zm9vYmF\n", 8);
    expect_reject("Zm 9", 4);
    expect_reject("Zm9\t", 4);
    static const char ws[] = {' ', '\n', '\t', '\r', '\v', '\f'};
    for (size_t w = 0; w < sizeof ws; w++)
        for (int i = 0; i < 8; i++) {
            char s[9];
            memcpy(s, "Zm9vYmFy", 9);
            s[i] = ws[w];
            expect_reject(s, 8);
        }
}

static void test_reject_nul_inside_length(void **state)
{
    (void)state;
    expect_reject("Zm9v\0mFy", 8);
    expect_reject("\0m9v", 4);
    expect_reject("Zm9vYg\0\0", 8);  /* "Zm9vYg" followed by two NULs within len */
    expect_reject("Zm9vY\0", 6);
    expect_reject("Zg\0", 3);
    expect_reject("Z\0", 2);
    expect_reject("\0\0\0\0", 4);
}

static void test_reject_length_1_mod_4(void **state)
{
    (void)state;
    expect_reject("Z", 1);
    expect_reject("A", 1);
    expect_reject("Zm9vY", 5);
    expect_reject("Zm9vYmFyZ", 9);
    /* all-'A' strings (otherwise always valid) of every length 1 mod 4 up to 129 */
    char s[130];
    memset(s, 'A', sizeof s);
    for (size_t len = 1; len <= 129; len += 4)
        expect_reject(s, len);
    /* and the neighbours are accepted */
    unsigned char zeros[BUF] = {0};
    for (size_t len = 0; len <= 128; len++) {
        if (len % 4 == 1)
            continue;
        size_t n = len / 4 * 3 + (len % 4 == 2 ? 1 : len % 4 == 3 ? 2 : 0);
        expect_decode(s, len, zeros, n);
    }
}

static void test_reject_high_bytes(void **state)
{
    (void)state;
    expect_reject("\x80" "AAA", 4);
    expect_reject("A\xff" "AA", 4);
    expect_reject("AA\xc3\xa9", 4);   /* "é" in UTF-8 */
    expect_reject("Zm9vYmF\xc0", 8);
    expect_reject("Zg\xe2", 3);
    /* Every byte >= 0x80 in each position of a 2-, 3- and 4-character input. */
    for (int b = 0x80; b <= 0xff; b++)
        for (size_t len = 2; len <= 4; len++)
            for (size_t i = 0; i < len; i++) {
                char s[4] = {'A', 'A', 'A', 'A'};
                s[i] = (char)b;
                expect_reject(s, len);
            }
}

/* Non-canonical trailing bits: for every first character (and every first two),
 * exactly the final characters whose discarded bits are zero are accepted, and they
 * decode to the right bytes. */
static void test_canonical_two_char_tail(void **state)
{
    (void)state;
    expect_decode("QQ", 2, "A", 1);
    expect_reject("QR", 2);
    expect_reject("QB", 2);
    expect_reject("Qh", 2);
    expect_reject("Q_", 2);
    for (int a = 0; a < 64; a++) {
        int accepted = 0;
        for (int b = 0; b < 64; b++) {
            char s[6] = {'Z', 'm', '9', 'v', ALPHABET[a], ALPHABET[b]};
            unsigned char want[4] = {'f', 'o', 'o', (unsigned char)(a << 2 | b >> 4)};
            if ((b & 0x0f) == 0) {
                expect_decode(s + 4, 2, want + 3, 1); /* alone */
                expect_decode(s, 6, want, 4);         /* after a full group */
                accepted++;
            } else {
                expect_reject(s + 4, 2);
                expect_reject(s, 6);
            }
        }
        assert_int_equal(accepted, 4); /* A, Q, g, w */
    }
}

static void test_canonical_three_char_tail(void **state)
{
    (void)state;
    expect_decode("QUE", 3, "AA", 2);
    expect_reject("QUF", 3);
    expect_reject("QUH", 3);
    expect_reject("QU_", 3);
    for (int a = 0; a < 64; a++)
        for (int b = 0; b < 64; b++)
            for (int c = 0; c < 64; c++) {
                char s[7] = {'Z', 'm', '9', 'v', ALPHABET[a], ALPHABET[b], ALPHABET[c]};
                uint32_t v = (uint32_t)a << 12 | (uint32_t)b << 6 | (uint32_t)c;
                unsigned char want[5] = {'f', 'o', 'o', (unsigned char)(v >> 10),
                                         (unsigned char)(v >> 2)};
                if ((c & 3) == 0) {
                    expect_decode(s + 4, 3, want + 3, 2);
                    if (a == 0 || b == 0) /* with a full group before (sampled) */
                        expect_decode(s, 7, want, 5);
                } else {
                    expect_reject(s + 4, 3);
                    if (a == 0 || b == 0)
                        expect_reject(s, 7);
                }
            }
}

/* A decode of a canonical string followed by re-encoding gives back the same text. */
static void test_decode_encode_is_identity_on_canonical(void **state)
{
    (void)state;
    for (int rep = 0; rep < 2000; rep++) {
        size_t len = (size_t)(rng_next() % 90);
        if (len % 4 == 1)
            len++;
        char s[96];
        for (size_t i = 0; i < len; i++)
            s[i] = ALPHABET[rng_next() % 64];
        /* make the tail canonical */
        if (len % 4 == 2)
            s[len - 1] = ALPHABET[sextet((unsigned char)s[len - 1]) & 0x30];
        else if (len % 4 == 3)
            s[len - 1] = ALPHABET[sextet((unsigned char)s[len - 1]) & 0x3c];
        unsigned char out[BUF];
        size_t out_len = 0;
        assert_true(b64url_decode(s, len, out, &out_len));
        char back[BUF];
        size_t n = b64url_encode(out, out_len, back);
        assert_int_equal(n, len);
        assert_memory_equal(back, s, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_encode),
        cmocka_unit_test(test_rfc4648_decode),
        cmocka_unit_test(test_url_alphabet_62_63),
        cmocka_unit_test(test_whole_alphabet),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_decoded_max_bound),
        cmocka_unit_test(test_round_trip_random_lengths_0_to_64),
        cmocka_unit_test(test_every_byte_every_position),
        cmocka_unit_test(test_reject_padding),
        cmocka_unit_test(test_reject_standard_alphabet),
        cmocka_unit_test(test_reject_whitespace),
        cmocka_unit_test(test_reject_nul_inside_length),
        cmocka_unit_test(test_reject_length_1_mod_4),
        cmocka_unit_test(test_reject_high_bytes),
        cmocka_unit_test(test_canonical_two_char_tail),
        cmocka_unit_test(test_canonical_three_char_tail),
        cmocka_unit_test(test_decode_encode_is_identity_on_canonical),
    };
    return cmocka_run_group_tests_name("b64url", tests, NULL, NULL);
}
