/* jose.h — internal interfaces of the jose/ layer: algorithms, keys, JWS. */
#ifndef IAM_JOSE_JOSE_H
#define IAM_JOSE_JOSE_H

#include "internal.h"
#include "jose/json.h"

#include <openssl/evp.h>
#include <stdatomic.h>

typedef enum key_type { KEY_HMAC = 1, KEY_RSA, KEY_EC, KEY_ED25519 } key_type;
typedef enum hash_id { HASH_NONE = -1, HASH_SHA256 = 0, HASH_SHA384 = 1, HASH_SHA512 = 2 } hash_id;

typedef enum alg_id {
    ALG_HS256 = 1, ALG_HS384, ALG_HS512,
    ALG_RS256, ALG_RS384, ALG_RS512,
    ALG_PS256, ALG_PS384, ALG_PS512,
    ALG_ES256, ALG_ES384, ALG_ES512,
    ALG_EDDSA
} alg_id;

typedef struct alg_info {
    alg_id id;
    const char *name;
    key_type key;
    hash_id hash;
    bool pss;
    int curve_nid;     /* EC: the only curve this alg may use */
    size_t sig_bytes;  /* fixed signature size (EC raw r||s, EdDSA, HMAC), 0 = key-dependent */
    size_t min_secret; /* HMAC: RFC 7518 §3.2 minimum key size */
} alg_info;

/** The algorithm named by the exact (case-sensitive) string, or NULL. */
const alg_info *alg_find(const char *name, size_t len);
const char *key_type_name(key_type t);

/* HMAC key material: the inner and outer hash states after absorbing the padded key,
 * for each hash, so that a verification costs only the message blocks (see hmac.c). */
typedef struct hmac_states hmac_states;

typedef struct iam_key {
    key_type type;
    const alg_info *alg; /* restricted to this alg (JWK "alg"), or NULL */
    char *kid;           /* NULL: added without a kid */
    size_t kid_len;
    EVP_PKEY *pkey;      /* RSA, EC, Ed25519 */
    int curve_nid;       /* EC */
    size_t coord_bytes;  /* EC */
    int rsa_bits;
    size_t secret_len;   /* HMAC */
    hmac_states *hmac;   /* HMAC */
    /* Verification contexts initialised once (EVP_DigestVerifyInit costs ~3 µs per call);
     * each verification copies one. Index: hash * 2 + pss for RSA, [0] for EC/Ed25519.
     * Only ever read after the key is added, so concurrent copies are safe. */
    EVP_MD_CTX *verify_tmpl[6];
} iam_key;

struct iam_keyset {
    atomic_int refs;
    size_t count;
    iam_key keys[IAM_MAX_KEYS];
    EVP_MD *md[3]; /* fetched once per keyset: OpenSSL 3 fetches are slow per call */
};

/* hmac.c */
hmac_states *hmac_states_new(const unsigned char *secret, size_t len);
void hmac_states_free(hmac_states *s);
hmac_states *hmac_states_dup(const hmac_states *s);
/** Constant-time check that sig is the HMAC of msg under the states, for hash h. */
bool hmac_verify(const hmac_states *s, hash_id h, const unsigned char *msg, size_t len,
                 const unsigned char *sig, size_t sig_len);
/** Computes the HMAC (out must hold 64 bytes); returns its length. */
size_t hmac_compute(const hmac_states *s, hash_id h, const unsigned char *msg, size_t len,
                    unsigned char *out);

/* keyset.c: signature check over input with one key (the key's type fits alg). */
iam_status key_verify(const iam_keyset *ks, const iam_key *k, const alg_info *alg,
                      const unsigned char *input, size_t input_len, const unsigned char *sig,
                      size_t sig_len);
/** Appends copies of src's keys to dst (sharing the parsed public keys). */
iam_status keyset_merge(iam_keyset *dst, const iam_keyset *src, iam_error *err);
/** Whether key k may verify alg (type, curve, JWK alg restriction, HMAC size). */
bool key_fits_alg(const iam_key *k, const alg_info *alg);

/* jws.c */
#define JOSE_MAX_SIG_BYTES (IAM_MAX_RSA_BITS / 8)

/* Header segments that platforms emit byte for byte ({"alg":"HS256","typ":"JWT"} and its
 * siblings): recognising the exact base64url text skips a decode and a parse and decides
 * exactly what the general path decides (alg, typ JWT, no kid, no crit). */
typedef struct canonical_header {
    const char *segment;
    size_t segment_len;
    const char *alg;
} canonical_header;
extern const canonical_header JOSE_CANONICAL_HEADERS[];
extern const size_t JOSE_CANONICAL_HEADER_COUNT;

typedef struct jws_verified {
    const alg_info *alg;
    bool typ_is_jwt; /* header typ absent, "JWT" or "at+jwt" (media types compare case-insensitively) */
    unsigned char *payload; /* points into the caller's buffer */
    size_t payload_len;
} jws_verified;

/**
 * Strict compact parse + header checks + signature verification. payload_buf must hold
 * b64url_decoded_max(len) bytes. Errors carry precise codes; nothing from the token is
 * copied into messages.
 */
iam_status jws_verify_compact(const char *jws, size_t len, const iam_keyset *ks,
                              unsigned char *payload_buf, jws_verified *out, iam_error *err);

/* claims.c: the claims this library reads, located in one pass over the claim set
 * (root object at index 0). Each field is the value's node index, 0 when absent. */
typedef struct claim_index {
    /* registered (RFC 7519) */
    size_t exp, nbf, iat, iss, aud, sub, jti;
    /* the platform's (CONTRACT.md) */
    size_t type, client_id, email, org_id, team_id, team_role, idp_org_id, auth_method,
        token_version, mfa_verified, roles, permissions, org_role, scopes;
} claim_index;

void claims_index(const json_doc *doc, claim_index *ix);

/* The claim set's parse for verification: json_parse_picked with the claims above picked
 * (the same inputs accepted, the same codes, the same value subtrees as json_parse +
 * claims_index), then "claims are not a JSON object" for any other root. The doc holds only
 * the picked values: read it through ix. On failure nothing is held. */
iam_status claims_parse(json_doc *doc, claim_index *ix, const char *text, size_t len,
                        json_node *node_buf, size_t node_cap, char *scratch_buf, size_t scratch_cap,
                        iam_error *err);

/* The registered-claim checks (exp, nbf, iat, iss, aud, type) under a policy. */
iam_status claims_check(const json_doc *doc, const claim_index *ix, const iam_verify_options *opts,
                        int64_t now_s, double *exp_out, iam_error *err);

#endif
