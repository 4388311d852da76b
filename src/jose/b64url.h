/* b64url.h — strict base64url (RFC 4648 §5): no padding, no whitespace, no standard
 * alphabet, canonical trailing bits. No I/O, no allocation. */
#ifndef IAM_JOSE_B64URL_H
#define IAM_JOSE_B64URL_H

#include <stdbool.h>
#include <stddef.h>

/** Upper bound of the decoded size of len characters. */
static inline size_t b64url_decoded_max(size_t len) { return len / 4 * 3 + 2; }

/**
 * Decodes in[0..len) into out (room for b64url_decoded_max(len) bytes). Returns false
 * on any character outside [A-Za-z0-9_-], on a length that is 1 mod 4, or on
 * non-zero discarded trailing bits. *out_len receives the decoded length.
 */
bool b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len);

/** The same decoder without the vector path (the reference for its test). */
bool b64url_decode_portable(const char *in, size_t len, unsigned char *out, size_t *out_len);

/** Tests only: makes b64url_decode use vector level `want` (0 portable, 1 SSSE3, 2 AVX2;
 * -1 or more than the CPU has: the best it has). Returns the level now in use. */
int b64url_vector_level(int want);

/** Encodes (no padding) into out (room for 4*ceil(len/3) + 1); NUL-terminates; returns length. */
size_t b64url_encode(const unsigned char *in, size_t len, char *out);

#endif
