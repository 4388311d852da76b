/*
 * test_b64url_long.c — long inputs (tokens are hundreds of characters): b64url_decode
 * compared with an independent decoder (OpenSSL's EVP_DecodeBlock over the standard
 * alphabet) for every length 24..300, a character outside the alphabet at every position
 * refused, and non-canonical trailing bits refused; b64url_decode at each vector level the
 * CPU has (32 characters per step with AVX2, 16 with SSSE3) against b64url_decode_portable
 * (4 at a time) on valid and corrupted inputs of every length 0..300.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "jose/b64url.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

static const char ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Reference: translate to the standard alphabet, pad, EVP_DecodeBlock, trim the padding. */
static size_t reference(const char *s, size_t len, unsigned char *out)
{
    char *std = malloc(len + 4);
    for (size_t i = 0; i < len; i++)
        std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    size_t padded = len;
    while (padded % 4)
        std[padded++] = '=';
    int n = EVP_DecodeBlock(out, (unsigned char *)std, (int)padded);
    free(std);
    assert_true(n >= 0);
    return (size_t)n - (padded - len == 2 ? 2 : padded - len == 1 ? 1 : 0);
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)(rng >> 32);
}

/* A random canonical base64url string of length len (len % 4 != 1). */
static void random_b64(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        s[i] = ALPHA[next_rand() % 64];
    if (len % 4 == 2)
        s[len - 1] = ALPHA[(strchr(ALPHA, s[len - 1]) - ALPHA) & 0x30];
    if (len % 4 == 3)
        s[len - 1] = ALPHA[(strchr(ALPHA, s[len - 1]) - ALPHA) & 0x3c];
}

static void test_matches_reference(void **state)
{
    (void)state;
    char s[400];
    unsigned char got[400], want[400];
    for (size_t len = 24; len <= 300; len++) {
        if (len % 4 == 1)
            continue;
        for (int round = 0; round < 20; round++) {
            random_b64(s, len);
            size_t n = 0;
            /* the buffer is exactly b64url_decoded_max(len): ASan catches a store past it */
            unsigned char *buf = malloc(b64url_decoded_max(len));
            assert_true(b64url_decode(s, len, buf, &n));
            size_t m = reference(s, len, want);
            assert_int_equal(n, m);
            assert_memory_equal(buf, want, n);
            memcpy(got, buf, n);
            free(buf);
        }
    }
}

static void test_invalid_character_anywhere(void **state)
{
    (void)state;
    char s[200];
    unsigned char *buf = malloc(b64url_decoded_max(sizeof s));
    for (size_t len = 24; len <= 120; len += 4) {
        random_b64(s, len);
        for (size_t pos = 0; pos < len; pos++) {
            char keep = s[pos];
            for (int c = 0; c < 256; c++) {
                if (c && strchr(ALPHA, c))
                    continue; /* in the alphabet */
                s[pos] = (char)c;
                size_t n;
                if (b64url_decode(s, len, buf, &n))
                    fail_msg("byte 0x%02x at %zu of %zu accepted", c, pos, len);
            }
            s[pos] = keep;
        }
    }
    free(buf);
}

static void test_long_non_canonical_tail(void **state)
{
    (void)state;
    char s[64];
    unsigned char buf[64];
    size_t n;
    random_b64(s, 42); /* 42 % 4 == 2: the last character carries 4 discarded bits */
    assert_true(b64url_decode(s, 42, buf, &n));
    s[41] = ALPHA[(strchr(ALPHA, s[41]) - ALPHA) | 1];
    assert_false(b64url_decode(s, 42, buf, &n));
}

/* The vector path and the portable one agree on every length, valid or not (a corrupted
 * byte at a random place, any of the 256 values). */
static void check_against_portable(void)
{
    char s[320];
    unsigned char a[320], b[320];
    for (size_t len = 0; len <= 300; len++) {
        for (int round = 0; round < 40; round++) {
            if (len % 4 == 1)
                for (size_t i = 0; i < len; i++)
                    s[i] = ALPHA[next_rand() % 64];
            else
                random_b64(s, len);
            if (round % 2 && len)
                s[next_rand() % len] = (char)(next_rand() & 0xFF);
            size_t na = 0, nb = 0;
            bool ra = b64url_decode(s, len, a, &na), rb = b64url_decode_portable(s, len, b, &nb);
            assert_int_equal(ra, rb);
            if (ra) {
                assert_int_equal(na, nb);
                assert_memory_equal(a, b, na);
            }
        }
    }
}

static void test_vector_matches_portable(void **state)
{
    (void)state;
    for (int want = 2; want >= 0; want--)
        if (b64url_vector_level(want) == want) /* else this CPU lacks that level */
            check_against_portable();
    b64url_vector_level(-1);
}

/*
 * After a decode on the AVX2 path, the upper halves of the vector registers are clean
 * (XINUSE bit 2, read with XGETBV(1), is 0). Dirty upper state makes every later legacy-SSE
 * instruction slow — the JSON scanner, the SSSE3 tail — and did: the compiler left it dirty
 * after the AVX2 loop, and a whole verification ran 25% slower. A state check, not a timing.
 */
static void test_avx2_path_leaves_upper_state_clean(void **state)
{
    (void)state;
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(0xD, 1, &a, &b, &c, &d) || !(a & (1u << 2)))
        skip(); /* no XGETBV with ECX=1 */
    if (b64url_vector_level(2) != 2) {
        b64url_vector_level(-1);
        skip(); /* no AVX2 */
    }
    char s[200];
    unsigned char out[200];
    size_t n;
    for (size_t len = 32; len <= 120; len += 1) { /* every tail length after 32-char steps */
        if (len % 4 == 1)
            continue;
        random_b64(s, len);
        bool ok = b64url_decode(s, len, out, &n);
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
        assert_true(ok);
        if (lo & (1u << 2))
            fail_msg("upper vector state left dirty after decoding %zu characters", len);
    }
    b64url_vector_level(-1);
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_invalid_character_anywhere),
        cmocka_unit_test(test_long_non_canonical_tail),
        cmocka_unit_test(test_vector_matches_portable),
        cmocka_unit_test(test_avx2_path_leaves_upper_state_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
