/*
 * mint.h — test-only token minting, written independently of the library (its own
 * base64url, OpenSSL signing directly), so tokens in tests are an outside opinion.
 * Not installed, not part of the public API. All returned strings are malloc'd:
 * free() them. Functions abort() on internal failure (tests only).
 */
#ifndef IAM_TEST_MINT_H
#define IAM_TEST_MINT_H

#include <stddef.h>
#include <stdint.h>

typedef struct mint_key mint_key;

/** HMAC secret (copied). */
mint_key *mint_key_hmac(const void *secret, size_t len);
/** Private key from a PEM file (PKCS#8 "PRIVATE KEY": RSA, EC, Ed25519). */
mint_key *mint_key_pem_file(const char *path);
/** Fresh key: "rsa2048", "rsa1024" (for size-limit tests), "p256", "p384", "p521", "ed25519". */
mint_key *mint_key_generate(const char *type);
void mint_key_free(mint_key *k);

/** SubjectPublicKeyInfo PEM of an asymmetric key. */
char *mint_key_public_pem(const mint_key *k);
/** Public JWK of an asymmetric key (or oct JWK of an HMAC key); kid/alg may be NULL. */
char *mint_key_public_jwk(const mint_key *k, const char *kid, const char *alg);

/** base64url without padding. */
char *mint_b64url(const void *data, size_t len);

/**
 * Compact JWS: b64url(header_json) "." b64url(payload) "." b64url(signature), signed with
 * alg ("HS256/384/512", "RS256/384/512", "PS256/384/512", "ES256/384/512" as raw r||s,
 * "EdDSA"). The header is used verbatim: it should name the same alg.
 */
char *mint_sign(const char *header_json, const void *payload, size_t payload_len,
                const char *alg, const mint_key *key);

/** Convenience: header {"alg":alg,"typ":"JWT"} (+ "kid" when kid != NULL) over payload_json. */
char *mint_token(const char *alg, const char *kid, const char *payload_json, const mint_key *key);

/**
 * The platform's real access-token claim set (CONTRACT.md) for user `sub` expiring at exp:
 * sub, email, roles, permissions, org_id 7, org_role, team_id null, team_role null,
 * auth_method password, idp_org_id null, token_version 2, mfa_verified, exp, type access,
 * jti (derived from sub and exp, uuid-shaped), iss omnibioai-auth, aud omnibioai-platform.
 * About 400 bytes.
 */
char *mint_platform_claims(const char *sub, int64_t exp);

#endif
