/* b64url.c — strict base64url. Table-driven; rejects rather than repairs. */
#include "jose/b64url.h"

#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define B64_SSSE3 1
#endif

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

/* Generated from the alphabet: QUANTUM[k][c] is character c's six bits shifted into
 * position k of a 24-bit quantum, or BAD (bit 31 set) outside the alphabet, so a quantum
 * decodes and validates with one OR of four loads. */
#define BAD 0x80000000u
static const uint32_t QUANTUM[4][256] = {
    {
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, 0x00f80000, BAD, BAD,
        0x00d00000, 0x00d40000, 0x00d80000, 0x00dc0000, 0x00e00000, 0x00e40000, 0x00e80000, 0x00ec0000,
        0x00f00000, 0x00f40000, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, 0x00000000, 0x00040000, 0x00080000, 0x000c0000, 0x00100000, 0x00140000, 0x00180000,
        0x001c0000, 0x00200000, 0x00240000, 0x00280000, 0x002c0000, 0x00300000, 0x00340000, 0x00380000,
        0x003c0000, 0x00400000, 0x00440000, 0x00480000, 0x004c0000, 0x00500000, 0x00540000, 0x00580000,
        0x005c0000, 0x00600000, 0x00640000, BAD, BAD, BAD, BAD, 0x00fc0000,
        BAD, 0x00680000, 0x006c0000, 0x00700000, 0x00740000, 0x00780000, 0x007c0000, 0x00800000,
        0x00840000, 0x00880000, 0x008c0000, 0x00900000, 0x00940000, 0x00980000, 0x009c0000, 0x00a00000,
        0x00a40000, 0x00a80000, 0x00ac0000, 0x00b00000, 0x00b40000, 0x00b80000, 0x00bc0000, 0x00c00000,
        0x00c40000, 0x00c80000, 0x00cc0000, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    },
    {
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, 0x0003e000, BAD, BAD,
        0x00034000, 0x00035000, 0x00036000, 0x00037000, 0x00038000, 0x00039000, 0x0003a000, 0x0003b000,
        0x0003c000, 0x0003d000, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, 0x00000000, 0x00001000, 0x00002000, 0x00003000, 0x00004000, 0x00005000, 0x00006000,
        0x00007000, 0x00008000, 0x00009000, 0x0000a000, 0x0000b000, 0x0000c000, 0x0000d000, 0x0000e000,
        0x0000f000, 0x00010000, 0x00011000, 0x00012000, 0x00013000, 0x00014000, 0x00015000, 0x00016000,
        0x00017000, 0x00018000, 0x00019000, BAD, BAD, BAD, BAD, 0x0003f000,
        BAD, 0x0001a000, 0x0001b000, 0x0001c000, 0x0001d000, 0x0001e000, 0x0001f000, 0x00020000,
        0x00021000, 0x00022000, 0x00023000, 0x00024000, 0x00025000, 0x00026000, 0x00027000, 0x00028000,
        0x00029000, 0x0002a000, 0x0002b000, 0x0002c000, 0x0002d000, 0x0002e000, 0x0002f000, 0x00030000,
        0x00031000, 0x00032000, 0x00033000, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    },
    {
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, 0x00000f80, BAD, BAD,
        0x00000d00, 0x00000d40, 0x00000d80, 0x00000dc0, 0x00000e00, 0x00000e40, 0x00000e80, 0x00000ec0,
        0x00000f00, 0x00000f40, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, 0x00000000, 0x00000040, 0x00000080, 0x000000c0, 0x00000100, 0x00000140, 0x00000180,
        0x000001c0, 0x00000200, 0x00000240, 0x00000280, 0x000002c0, 0x00000300, 0x00000340, 0x00000380,
        0x000003c0, 0x00000400, 0x00000440, 0x00000480, 0x000004c0, 0x00000500, 0x00000540, 0x00000580,
        0x000005c0, 0x00000600, 0x00000640, BAD, BAD, BAD, BAD, 0x00000fc0,
        BAD, 0x00000680, 0x000006c0, 0x00000700, 0x00000740, 0x00000780, 0x000007c0, 0x00000800,
        0x00000840, 0x00000880, 0x000008c0, 0x00000900, 0x00000940, 0x00000980, 0x000009c0, 0x00000a00,
        0x00000a40, 0x00000a80, 0x00000ac0, 0x00000b00, 0x00000b40, 0x00000b80, 0x00000bc0, 0x00000c00,
        0x00000c40, 0x00000c80, 0x00000cc0, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    },
    {
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, 0x0000003e, BAD, BAD,
        0x00000034, 0x00000035, 0x00000036, 0x00000037, 0x00000038, 0x00000039, 0x0000003a, 0x0000003b,
        0x0000003c, 0x0000003d, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, 0x00000000, 0x00000001, 0x00000002, 0x00000003, 0x00000004, 0x00000005, 0x00000006,
        0x00000007, 0x00000008, 0x00000009, 0x0000000a, 0x0000000b, 0x0000000c, 0x0000000d, 0x0000000e,
        0x0000000f, 0x00000010, 0x00000011, 0x00000012, 0x00000013, 0x00000014, 0x00000015, 0x00000016,
        0x00000017, 0x00000018, 0x00000019, BAD, BAD, BAD, BAD, 0x0000003f,
        BAD, 0x0000001a, 0x0000001b, 0x0000001c, 0x0000001d, 0x0000001e, 0x0000001f, 0x00000020,
        0x00000021, 0x00000022, 0x00000023, 0x00000024, 0x00000025, 0x00000026, 0x00000027, 0x00000028,
        0x00000029, 0x0000002a, 0x0000002b, 0x0000002c, 0x0000002d, 0x0000002e, 0x0000002f, 0x00000030,
        0x00000031, 0x00000032, 0x00000033, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
        BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    },
};
#undef BAD

static const char ENCODE[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Decodes from character `from` (a multiple of 4) on; o is where byte from/4*3 goes. */
static bool decode_tail(const unsigned char *s, size_t from, size_t len, unsigned char *out,
                        unsigned char *o, size_t *out_len)
{
    size_t rem = len % 4, full = len - rem;
    for (size_t i = from; i < full; i += 4) {
        uint32_t v = QUANTUM[0][s[i]] | QUANTUM[1][s[i + 1]] | QUANTUM[2][s[i + 2]] |
                     QUANTUM[3][s[i + 3]];
        if (v & 0x80000000u)
            return false;
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

bool b64url_decode_portable(const char *in, size_t len, unsigned char *out, size_t *out_len)
{
    if (len % 4 == 1)
        return false;
    return decode_tail((const unsigned char *)in, 0, len, out, out, out_len);
}

#if B64_SSSE3
/*
 * Sixteen characters to twelve bytes per step with SSSE3 (x86-64 has only SSE2 for sure,
 * so this is chosen at run time). Validation: a character is in the alphabet unless
 * LO[low nibble] & HI[high nibble] != 0, where HI gives each high nibble 2..7 its own bit
 * (bit 7 for every other one, bytes >= 0x80 included) and LO sets, for each low nibble,
 * the bits of the high nibbles in which it is not in the alphabet ('-' 0x2D; '0'-'9'
 * 0x30-0x39; 'A'-'Z' 0x41-0x5A; '_' 0x5F; 'a'-'z' 0x61-0x7A). Translation: a per-high-nibble
 * offset (+17 '-', +4 digits, -65 upper case, -71 lower case), corrected for '_' (-32).
 * Packing: pmaddubsw joins pairs of sextets, pmaddwd pairs of pairs, pshufb gathers the
 * 24-bit groups' bytes in order; 12 bytes are stored (8 + 4: nothing past them).
 */
__attribute__((target("ssse3"))) static bool decode_ssse3(const unsigned char *s, size_t len,
                                                          unsigned char *out, size_t *out_len)
{
    const __m128i lut_lo = _mm_setr_epi8((char)0x95, (char)0x81, (char)0x81, (char)0x81,
                                         (char)0x81, (char)0x81, (char)0x81, (char)0x81,
                                         (char)0x81, (char)0x81, (char)0x83, (char)0xAB,
                                         (char)0xAB, (char)0xAA, (char)0xAB, (char)0xA3);
    const __m128i lut_hi = _mm_setr_epi8((char)0x80, (char)0x80, 0x01, 0x02, 0x04, 0x08, 0x10,
                                         0x20, (char)0x80, (char)0x80, (char)0x80, (char)0x80,
                                         (char)0x80, (char)0x80, (char)0x80, (char)0x80);
    const __m128i lut_off = _mm_setr_epi8(0, 0, 17, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128i nibble = _mm_set1_epi8(0x0F), under = _mm_set1_epi8('_');
    const __m128i under_fix = _mm_set1_epi8(33); /* '_' - 65 + 33 = 63 */
    const __m128i pair = _mm_set1_epi32(0x01400140), quad = _mm_set1_epi32(0x00011000);
    const __m128i gather = _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    size_t i = 0;
    unsigned char *o = out;
    for (; i + 16 <= len; i += 16, o += 12) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hi = _mm_and_si128(_mm_srli_epi32(v, 4), nibble);
        __m128i lo = _mm_and_si128(v, nibble);
        __m128i bad = _mm_and_si128(_mm_shuffle_epi8(lut_lo, lo), _mm_shuffle_epi8(lut_hi, hi));
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(bad, _mm_setzero_si128())) != 0xFFFF)
            return false;
        __m128i off = _mm_add_epi8(_mm_shuffle_epi8(lut_off, hi),
                                   _mm_and_si128(_mm_cmpeq_epi8(v, under), under_fix));
        __m128i sextets = _mm_add_epi8(v, off);
        __m128i words = _mm_madd_epi16(_mm_maddubs_epi16(sextets, pair), quad);
        __m128i bytes = _mm_shuffle_epi8(words, gather);
        _mm_storel_epi64((__m128i *)(void *)o, bytes);
        uint32_t last = (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(bytes, 8));
        memcpy(o + 8, &last, 4);
    }
    return decode_tail(s, i, len, out, o, out_len);
}

/*
 * The same steps on 32 characters with AVX2 (pshufb works within each 128-bit lane, so the
 * tables are repeated in both; the two lanes' 12 bytes are joined by a dword permutation
 * and 24 bytes stored). The rest (under 32 characters) goes through decode_ssse3.
 */
__attribute__((target("avx2"))) static bool decode_avx2(const unsigned char *s, size_t len,
                                                        unsigned char *out, size_t *out_len)
{
    const __m256i lut_lo = _mm256_setr_epi8(
        (char)0x95, (char)0x81, (char)0x81, (char)0x81, (char)0x81, (char)0x81, (char)0x81,
        (char)0x81, (char)0x81, (char)0x81, (char)0x83, (char)0xAB, (char)0xAB, (char)0xAA,
        (char)0xAB, (char)0xA3, (char)0x95, (char)0x81, (char)0x81, (char)0x81, (char)0x81,
        (char)0x81, (char)0x81, (char)0x81, (char)0x81, (char)0x81, (char)0x83, (char)0xAB,
        (char)0xAB, (char)0xAA, (char)0xAB, (char)0xA3);
    const __m256i lut_hi = _mm256_setr_epi8(
        (char)0x80, (char)0x80, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, (char)0x80, (char)0x80,
        (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80,
        (char)0x80, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, (char)0x80, (char)0x80, (char)0x80,
        (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80);
    const __m256i lut_off = _mm256_setr_epi8(0, 0, 17, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0,
                                             0, 0, 0, 0, 17, 4, -65, -65, -71, -71, 0, 0, 0, 0,
                                             0, 0, 0, 0);
    const __m256i nibble = _mm256_set1_epi8(0x0F), under = _mm256_set1_epi8('_');
    const __m256i under_fix = _mm256_set1_epi8(33);
    const __m256i pair = _mm256_set1_epi32(0x01400140), quad = _mm256_set1_epi32(0x00011000);
    const __m256i gather = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1,
                                            -1, 2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1,
                                            -1, -1);
    const __m256i join = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
    size_t i = 0;
    unsigned char *o = out;
    for (; i + 32 <= len; i += 32, o += 24) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(s + i));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi32(v, 4), nibble);
        __m256i lo = _mm256_and_si256(v, nibble);
        __m256i bad = _mm256_and_si256(_mm256_shuffle_epi8(lut_lo, lo), _mm256_shuffle_epi8(lut_hi, hi));
        if ((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(bad, _mm256_setzero_si256())) != 0xFFFFFFFFu)
            return false;
        __m256i off = _mm256_add_epi8(_mm256_shuffle_epi8(lut_off, hi),
                                      _mm256_and_si256(_mm256_cmpeq_epi8(v, under), under_fix));
        __m256i words = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_add_epi8(v, off), pair), quad);
        __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(words, gather), join);
        _mm_storeu_si128((__m128i *)(void *)o, _mm256_castsi256_si128(bytes));
        _mm_storel_epi64((__m128i *)(void *)(o + 16), _mm256_extracti128_si256(bytes, 1));
    }
    /* Clean upper halves before any legacy-SSE code runs (decode_ssse3, the JSON scanner):
     * the compiler does not always put this before the call, and dirty upper state makes
     * every later SSE instruction slow (measured: the whole verification 25% slower). */
    _mm256_zeroupper();
    size_t rest;
    if (!decode_ssse3(s + i, len - i, o, &rest))
        return false;
    *out_len = (size_t)(o - out) + rest;
    return true;
}

/* 0 portable, 1 SSSE3, 2 AVX2; -1 until first asked (a benign race: every writer agrees). */
static int vector_level = -1;
#endif

int b64url_vector_level(int want)
{
#if B64_SSSE3
    __builtin_cpu_init();
    int have = __builtin_cpu_supports("avx2") ? 2 : __builtin_cpu_supports("ssse3") ? 1 : 0;
    int level = want < 0 || want > have ? have : want;
    __atomic_store_n(&vector_level, level, __ATOMIC_RELAXED);
    return level;
#else
    (void)want;
    return 0;
#endif
}

bool b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len)
{
    if (len % 4 == 1)
        return false;
#if B64_SSSE3
    if (len >= 16) {
        int level = __atomic_load_n(&vector_level, __ATOMIC_RELAXED);
        if (level < 0) {
            __builtin_cpu_init();
            level = __builtin_cpu_supports("avx2") ? 2 : __builtin_cpu_supports("ssse3") ? 1 : 0;
            __atomic_store_n(&vector_level, level, __ATOMIC_RELAXED);
        }
        if (level == 2)
            return decode_avx2((const unsigned char *)in, len, out, out_len);
        if (level == 1)
            return decode_ssse3((const unsigned char *)in, len, out, out_len);
    }
#endif
    return decode_tail((const unsigned char *)in, 0, len, out, out, out_len);
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
