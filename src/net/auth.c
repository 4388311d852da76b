/* auth.c — the auth service's protocol (see auth.h). No I/O. */
#include "net/auth.h"
#include "strbuf.h"
#include "identity/identity.h"
#include "identity/peek.h"
#include "jose/b64url.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const json_limits REPLY_LIMITS = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};
static const json_limits CLAIM_LIMITS = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};

char *auth_validate_body(const char *token, size_t len, size_t *out_len, bool *oom)
{
    *oom = false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
            return NULL;
    /* Printable ASCII: only '"' and '\\' need escaping. */
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += token[i] == '"' || token[i] == '\\';
    static const char HEAD[] = "{\"token\":\"", TAIL[] = "\"}";
    char *out = malloc(sizeof HEAD - 1 + len + n + sizeof TAIL);
    if (!out) {
        *oom = true;
        return NULL;
    }
    size_t at = sizeof HEAD - 1;
    memcpy(out, HEAD, at);
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '"' || token[i] == '\\')
            out[at++] = '\\';
        out[at++] = token[i];
    }
    memcpy(out + at, TAIL, sizeof TAIL);
    *out_len = at + sizeof TAIL - 1;
    return out;
}

/* ------------------------------------------------------------ the claim set */

/* The service's identity fields: where each goes in the claim set and what it may be. */
typedef enum field_kind { F_ID, F_STRING, F_LIST } field_kind;
typedef struct field {
    const char *reply;  /* member of the reply */
    const char *claim;  /* claim written */
    field_kind kind;
} field;

static const field FIELDS[] = {
    {"user_id", "sub", F_ID},          {"email", "email", F_STRING},
    {"roles", "roles", F_LIST},        {"permissions", "permissions", F_LIST},
    {"org_id", "org_id", F_ID},        {"org_role", "org_role", F_LIST},
    {"team_id", "team_id", F_ID},      {"team_role", "team_role", F_STRING},
    {"auth_method", "auth_method", F_STRING}, {"idp_org_id", "idp_org_id", F_ID},
    {"client_id", "client_id", F_STRING}, {"scopes", "scopes", F_LIST},
};
#define NFIELDS (sizeof FIELDS / sizeof FIELDS[0])

/* Writes one field's claim (",\"claim\":value") or fails with a precise message. */
static bool put_field(strbuf *b, const json_doc *d, size_t v, const field *f, char *id_out, size_t id_cap,
                      iam_error *err)
{
    const json_node *n = v ? &d->nodes[v] : NULL;
    if (!n || n->type == JSON_NULL) {
        if (f->kind == F_LIST) { /* absent or null lists are empty */
            strbuf_put(b, ",\"", 2), strbuf_puts(b, f->claim), strbuf_put(b, "\":[]", 4);
        }
        return true; /* absent ids and strings stay absent */
    }
    char num[32];
    int64_t iv;
    switch (f->kind) {
    case F_ID:
        if (n->type == JSON_NUMBER) {
            if (!json_integer(d, v, (uint64_t)IAM_MAX_INTEGER_ID, &iv) || iv < 0) {
                iam_fail(err, IAM_E_UNAVAILABLE,
                         "the auth service's reply is not the contract: %s is not an identifier", f->reply);
                return false;
            }
            snprintf(num, sizeof num, "%" PRId64, iv);
            strbuf_put(b, ",\"", 2), strbuf_puts(b, f->claim), strbuf_put(b, "\":", 2), strbuf_json_string(b, num, strlen(num));
            if (id_out)
                snprintf(id_out, id_cap, "%s", num);
            return true;
        }
        if (n->type == JSON_STRING && n->len > 0 && n->len <= IAM_MAX_KID_BYTES) {
            strbuf_put(b, ",\"", 2), strbuf_puts(b, f->claim), strbuf_put(b, "\":", 2), strbuf_json_string(b, n->str, n->len);
            if (id_out && n->len < id_cap) {
                memcpy(id_out, n->str, n->len);
                id_out[n->len] = '\0';
            }
            return true;
        }
        break;
    case F_STRING:
        if (n->type == JSON_STRING) {
            strbuf_put(b, ",\"", 2), strbuf_puts(b, f->claim), strbuf_put(b, "\":", 2), strbuf_json_string(b, n->str, n->len);
            return true;
        }
        break;
    case F_LIST:
        if (n->type == JSON_ARRAY) {
            strbuf_put(b, ",\"", 2), strbuf_puts(b, f->claim), strbuf_put(b, "\":[", 3);
            bool first = true;
            for (size_t e = json_first_child(d, v); e && e < d->count && e < d->nodes[v].next;
                 e = json_next_sibling(d, e)) {
                if (d->nodes[e].type != JSON_STRING) {
                    iam_fail(err, IAM_E_UNAVAILABLE,
                             "the auth service's reply is not the contract: %s holds a non-string", f->reply);
                    return false;
                }
                if (!first)
                    strbuf_put(b, ",", 1);
                strbuf_json_string(b, d->nodes[e].str, d->nodes[e].len);
                first = false;
            }
            strbuf_put(b, "]", 1);
            return true;
        }
        break;
    }
    iam_fail(err, IAM_E_UNAVAILABLE, "the auth service's reply is not the contract: %s has the wrong type",
             f->reply);
    return false;
}

static bool is_service_field(const char *name, size_t len)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (json_span_eq(name, len, FIELDS[i].claim, strlen(FIELDS[i].claim)))
            return true;
    return false;
}

iam_status auth_reply_user(const char *body, size_t body_len, const char *token, size_t token_len,
                           const iam_verify_options *vo, int64_t now_s, iam_user **out, iam_error *err)
{
    *out = NULL;
    json_doc d;
    if (json_parse(&d, body, body_len, &REPLY_LIMITS, NULL, 0, NULL, 0, "reply", NULL) != IAM_OK)
        return iam_fail(err, IAM_E_UNAVAILABLE, "the auth service's reply is not strict JSON");
    if (d.nodes[0].type != JSON_OBJECT) {
        json_doc_free(&d);
        return iam_fail(err, IAM_E_UNAVAILABLE, "the auth service's reply is not a JSON object");
    }
    size_t valid = json_get(&d, 0, "valid");
    if (!valid || (d.nodes[valid].type != JSON_TRUE && d.nodes[valid].type != JSON_FALSE)) {
        json_doc_free(&d);
        return iam_fail(err, IAM_E_UNAVAILABLE,
                        "the auth service's reply is not the contract: \"valid\" is not a boolean");
    }
    if (d.nodes[valid].type == JSON_FALSE) {
        json_doc_free(&d);
        return iam_fail(err, IAM_E_DENIED, "the auth service refused the token");
    }
    /* The token's own payload: its claims other than the service's fields. */
    unsigned char payload[IAM_MAX_TOKEN_BYTES / 4 * 3 + 2];
    size_t plen = 0;
    json_doc td;
    iam_status st = token_peek_payload(token, token_len, payload, &plen, err);
    if (st == IAM_OK)
        st = json_parse(&td, (const char *)payload, plen, &CLAIM_LIMITS, NULL, 0, NULL, 0, "claims", err);
    if (st != IAM_OK) {
        json_doc_free(&d);
        return st;
    }
    if (td.nodes[0].type != JSON_OBJECT) {
        json_doc_free(&d);
        json_doc_free(&td);
        return iam_fail(err, IAM_E_MALFORMED, "claims are not a JSON object");
    }
    strbuf b = {0};
    strbuf_put(&b, "{", 1);
    bool ok = true;
    char user_id[IAM_MAX_KID_BYTES + 1] = "";
    size_t uid = json_get(&d, 0, "user_id"), cid = json_get(&d, 0, "client_id");
    bool has_user = uid && d.nodes[uid].type != JSON_NULL;
    bool has_client = cid && d.nodes[cid].type == JSON_STRING && d.nodes[cid].len > 0;
    if (!has_user && !has_client)
        ok = !iam_fail(err, IAM_E_UNAVAILABLE,
                       "the auth service's reply is not the contract: no user_id (nor a service's client_id)");
    for (size_t i = 0; ok && i < NFIELDS; i++) {
        size_t v = json_get(&d, 0, FIELDS[i].reply);
        bool service_only = strcmp(FIELDS[i].reply, "client_id") == 0 || strcmp(FIELDS[i].reply, "scopes") == 0;
        if (i == 0 && v && d.nodes[v].type == JSON_STRING && d.nodes[v].len == 0)
            ok = !iam_fail(err, IAM_E_UNAVAILABLE, "the auth service's reply is not the contract: empty user_id");
        else if (service_only && !has_client)
            continue; /* a user: client_id and scopes belong to service identities */
        else
            ok = put_field(&b, &d, v, &FIELDS[i], i == 0 ? user_id : NULL, sizeof user_id, err);
    }
    /* The service must answer for this token's subject. */
    size_t tsub = json_get(&td, 0, "sub");
    if (ok && has_user && tsub) {
        char sub[IAM_MAX_KID_BYTES + 1] = "";
        int64_t iv;
        const json_node *n = &td.nodes[tsub];
        if (n->type == JSON_STRING && n->len < sizeof sub) {
            memcpy(sub, n->str, n->len);
            sub[n->len] = '\0';
        } else if (n->type == JSON_NUMBER && json_integer(&td, tsub, (uint64_t)IAM_MAX_INTEGER_ID, &iv)) {
            snprintf(sub, sizeof sub, "%" PRId64, iv);
        }
        if (strcmp(sub, user_id) != 0)
            ok = !iam_fail(err, IAM_E_UNAVAILABLE,
                           "the auth service's reply is not the contract: it names another subject than the token");
    }
    if (ok && !has_user && tsub && td.nodes[tsub].type != JSON_NULL)
        ok = !iam_fail(err, IAM_E_UNAVAILABLE,
                       "the auth service's reply is not the contract: a service identity for a user's token");
    /* Every other claim of the token, verbatim. */
    size_t k = 1;
    for (uint32_t m = 0; ok && m < td.nodes[0].len; m++) {
        const json_node *key = &td.nodes[k];
        if (!is_service_field(key->str, key->len)) {
            char name[IAM_MAX_KID_BYTES + 1];
            size_t start, len;
            if (key->len < sizeof name) {
                memcpy(name, key->str, key->len);
                name[key->len] = '\0';
                if (json_member_text(&td, (const char *)payload, plen, name, &start, &len)) {
                    strbuf_put(&b, ",", 1);
                    strbuf_json_string(&b, key->str, key->len);
                    strbuf_put(&b, ":", 1);
                    strbuf_put(&b, (const char *)payload + start, len);
                }
            }
        }
        k = td.nodes[k + 1].next;
    }
    strbuf_put(&b, "}", 1);
    if (!b.failed && b.len > 2 && b.p[1] == ',') /* the first member's separator */
        memmove(b.p + 1, b.p + 2, b.len-- - 1);
    json_doc_free(&d);
    json_doc_free(&td);
    if (!ok) {
        free(b.p);
        return err ? err->code : IAM_E_UNAVAILABLE;
    }
    if (b.failed) {
        free(b.p);
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    }
    /* The same claims stage as a token verified here. */
    st = claims_to_user(b.p, b.len, vo, now_s, out, err);
    free(b.p);
    if (st == IAM_E_MALFORMED || st == IAM_E_TOO_LARGE) /* e.g. over the member limit once merged */
        return iam_fail(err, IAM_E_UNAVAILABLE, "the auth service's reply does not make a valid claim set");
    return st;
}

/* ------------------------------------------------------------ circuit breaker */

bool auth_breaker_allow(auth_breaker *b, int64_t now_ms, bool *probe)
{
    *probe = false;
    switch (b->state) {
    case BREAKER_CLOSED:
        return true;
    case BREAKER_OPEN:
        if (now_ms < b->open_until)
            return false;
        b->state = BREAKER_HALF_OPEN;
        *probe = true;
        return true;
    case BREAKER_HALF_OPEN:
    default:
        return false; /* the probe is out */
    }
}

void auth_breaker_record(auth_breaker *b, int64_t now_ms, bool ok, bool probe)
{
    if (ok) {
        if (b->state == BREAKER_CLOSED || probe) {
            b->state = BREAKER_CLOSED;
            b->failures = 0;
        }
        return;
    }
    if (probe || (b->state == BREAKER_CLOSED && ++b->failures >= AUTH_BREAKER_FAILURES)) {
        b->state = BREAKER_OPEN;
        b->open_until = now_ms + AUTH_BREAKER_COOLDOWN_MS;
        b->failures = 0;
        b->opened++;
    }
}
