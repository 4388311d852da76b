/* alg.c — the JWS algorithms this library verifies (RFC 7518 §3, RFC 8037). */
#include "jose/jose.h"

#include <openssl/obj_mac.h>
#include <string.h>

static const alg_info ALGS[] = {
    {ALG_HS256, "HS256", KEY_HMAC, HASH_SHA256, false, 0, 32, 32},
    {ALG_HS384, "HS384", KEY_HMAC, HASH_SHA384, false, 0, 48, 48},
    {ALG_HS512, "HS512", KEY_HMAC, HASH_SHA512, false, 0, 64, 64},
    {ALG_RS256, "RS256", KEY_RSA, HASH_SHA256, false, 0, 0, 0},
    {ALG_RS384, "RS384", KEY_RSA, HASH_SHA384, false, 0, 0, 0},
    {ALG_RS512, "RS512", KEY_RSA, HASH_SHA512, false, 0, 0, 0},
    {ALG_PS256, "PS256", KEY_RSA, HASH_SHA256, true, 0, 0, 0},
    {ALG_PS384, "PS384", KEY_RSA, HASH_SHA384, true, 0, 0, 0},
    {ALG_PS512, "PS512", KEY_RSA, HASH_SHA512, true, 0, 0, 0},
    {ALG_ES256, "ES256", KEY_EC, HASH_SHA256, false, NID_X9_62_prime256v1, 64, 0},
    {ALG_ES384, "ES384", KEY_EC, HASH_SHA384, false, NID_secp384r1, 96, 0},
    {ALG_ES512, "ES512", KEY_EC, HASH_SHA512, false, NID_secp521r1, 132, 0},
    {ALG_EDDSA, "EdDSA", KEY_ED25519, HASH_NONE, false, 0, 64, 0},
    /* RFC 9864's fully-specified name for the same algorithm with an Ed25519 key. */
    {ALG_EDDSA, "Ed25519", KEY_ED25519, HASH_NONE, false, 0, 64, 0},
};

const alg_info *alg_find(const char *name, size_t len)
{
    /* Exact, case-sensitive match (RFC 7515 §4.1.1): "none", "nOnE", "hs256" are unknown. */
    for (size_t i = 0; i < sizeof ALGS / sizeof ALGS[0]; i++)
        if (json_span_eq(name, len, ALGS[i].name, strlen(ALGS[i].name)))
            return &ALGS[i];
    return NULL;
}

const char *key_type_name(key_type t)
{
    switch (t) {
    case KEY_HMAC: return "HMAC";
    case KEY_RSA: return "RSA";
    case KEY_EC: return "EC";
    case KEY_ED25519: return "Ed25519";
    }
    return "?";
}
