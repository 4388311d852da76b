/*
 * record.h — the shared cache's records: keys derived from the token by HMAC (the token is
 * never stored, in a key or a value), bodies authenticated by a MAC over key and body. No
 * I/O: the Redis tier moves the bytes, this decides what they mean.
 *
 *   key   = "iam:v1:cache:" hex(HMAC-SHA256(K_key, context || 0x00 || token))
 *   value = "v1." hex(HMAC-SHA256(K_mac, key || "\n" || body)) "." body
 *   body  = {"v":1,"ctx":"<16 hex: the context's id>","claims":{…}}
 *
 * The claims are the verified claim set with identifiers (org_id, team_id, idp_org_id) as
 * strings, so every consumer reads one shape. K_key and K_mac are derived from the cache
 * secret under distinct labels. A value that is malformed, fails its MAC, or names another
 * context is never trusted (RECORD_BAD).
 */
#ifndef IAM_CACHE_RECORD_H
#define IAM_CACHE_RECORD_H

#include "internal.h"

#define RECORD_KEY_PREFIX IAM_REDIS_KEY_PREFIX "cache:"
#define RECORD_KEY_LEN (sizeof RECORD_KEY_PREFIX - 1 + 64)

typedef struct record_keys {
    struct hmac_states *key_mac, *body_mac;
} record_keys;

/** Derives the two keys from the cache secret. False on OOM. */
bool record_keys_init(record_keys *rk, const unsigned char *secret, size_t len);
void record_keys_free(record_keys *rk);

/** The validation context an entry belongs to: audience and issuer (NULL and "" differ). */
typedef struct record_ctx {
    char label[2 * IAM_MAX_URL_BYTES + 16];
    size_t label_len;
    char id[17]; /* 16 hex digits, NUL-terminated */
} record_ctx;

void record_ctx_init(record_ctx *ctx, const record_keys *rk, const char *audience, const char *issuer);

/** The record key of a token in a context (NUL-terminated, RECORD_KEY_LEN chars). */
void record_key(const record_keys *rk, const record_ctx *ctx, const char *token, size_t len,
                char out[RECORD_KEY_LEN + 1]);

#define RECORD_USER_KEY_PREFIX IAM_REDIS_KEY_PREFIX "user:"
#define RECORD_USER_KEY_LEN (sizeof RECORD_USER_KEY_PREFIX - 1 + 64)

/** The key of a user's index: the set of that user's record keys, so that invalidating a
 *  user can delete them (NUL-terminated). The user id is hashed like a token. */
void record_user_key(const record_keys *rk, const char *user_id, char out[RECORD_USER_KEY_LEN + 1]);

/** Encodes a verified user's record under key. Caller frees. NULL on OOM or a claim set
 *  that cannot be normalised. */
char *record_encode(const record_keys *rk, const record_ctx *ctx, const char *key, const iam_user *u,
                    size_t *out_len);

typedef enum record_result {
    RECORD_OK,      /* *out holds the user; the claims passed the checks of vo at now_s */
    RECORD_BAD,     /* malformed, wrong MAC, other context: tampered or foreign, remove it */
    RECORD_REFUSED  /* authentic, but the claims no longer pass (expired…): *st says why */
} record_result;

record_result record_decode(const record_keys *rk, const record_ctx *ctx, const char *key,
                            const char *value, size_t len, const iam_verify_options *vo,
                            int64_t now_s, iam_user **out, iam_status *st, iam_error *err);

#endif
