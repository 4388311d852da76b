/* user.c — the immutable, reference-counted user context and its authorization helpers. */
#include "identity/identity.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct str_list {
    const char *const *items;
    size_t count;
} str_list;

struct iam_user {
    atomic_int refs;
    iam_principal_kind kind;
    const char *user_id, *client_id, *email, *org_id, *team_id, *team_role, *idp_org_id,
        *auth_method, *type, *jti, *issuer;
    int64_t token_version, expires_at;
    bool mfa_verified;
    str_list roles, permissions, org_roles, scopes;
    const char *payload;
    size_t payload_len;
    /* pointer arrays, then strings, then the payload */
    _Alignas(max_align_t) char data[];
};

/* ------------------------------------------------------------------ builder */

typedef struct arena {
    char *p;
} arena;

static const char *put_str(arena *a, const char *s, size_t n)
{
    char *dst = a->p;
    memcpy(dst, s, n);
    dst[n] = '\0';
    a->p += n + 1;
    return dst;
}

/* Identifier claim: null/absent -> NULL; integer -> decimal text; non-empty string -> as is. */
static iam_status id_size(const json_doc *d, size_t v, const char *name, size_t *bytes, iam_error *err)
{
    if (!v || d->nodes[v].type == JSON_NULL)
        return IAM_OK;
    const json_node *n = &d->nodes[v];
    if (n->type == JSON_STRING && n->len > 0) {
        *bytes += n->len + 1;
        return IAM_OK;
    }
    int64_t x;
    if (json_integer(d, v, (uint64_t)IAM_MAX_INTEGER_ID, &x)) {
        *bytes += 24;
        return IAM_OK;
    }
    return iam_fail(err, IAM_E_INVALID_CLAIM,
                    "\"%s\" must be a plain integer (|n| <= 2^53), a non-empty string or null", name);
}

static const char *put_id(arena *a, const json_doc *d, size_t v)
{
    if (!v || d->nodes[v].type == JSON_NULL)
        return NULL;
    const json_node *n = &d->nodes[v];
    if (n->type == JSON_STRING)
        return put_str(a, n->str, n->len);
    /* Decimal text of an integer of magnitude <= 2^53 (checked by id_size). */
    int64_t iv = 0;
    json_integer(d, v, (uint64_t)IAM_MAX_INTEGER_ID, &iv);
    uint64_t mag = iv < 0 ? (uint64_t)0 - (uint64_t)iv : (uint64_t)iv;
    char buf[24], *e = buf + sizeof buf, *q = e;
    do {
        *--q = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag);
    if (iv < 0)
        *--q = '-';
    return put_str(a, q, (size_t)(e - q));
}

/* Optional string claim (string or null). */
static iam_status str_size(const json_doc *d, size_t v, const char *name, size_t *bytes, iam_error *err)
{
    if (!v || d->nodes[v].type == JSON_NULL)
        return IAM_OK;
    if (d->nodes[v].type != JSON_STRING)
        return iam_fail(err, IAM_E_INVALID_CLAIM, "\"%s\" must be a string or null", name);
    *bytes += d->nodes[v].len + 1;
    return IAM_OK;
}

static const char *put_opt(arena *a, const json_doc *d, size_t v)
{
    if (!v || d->nodes[v].type == JSON_NULL)
        return NULL;
    return put_str(a, d->nodes[v].str, d->nodes[v].len);
}

/* List claim: array of strings, or null/absent (empty). With split_string, a string is
 * read as space-separated words (OAuth scopes). */
static iam_status list_size(const json_doc *d, size_t v, const char *name, bool split_string,
                            size_t *bytes, size_t *count, iam_error *err)
{
    *count = 0;
    if (!v || d->nodes[v].type == JSON_NULL)
        return IAM_OK;
    const json_node *n = &d->nodes[v];
    if (split_string && n->type == JSON_STRING) {
        for (size_t i = 0; i < n->len; i++)
            if (n->str[i] != ' ' && (i == 0 || n->str[i - 1] == ' '))
                (*count)++;
        *bytes += n->len + 1 + *count * sizeof(char *);
        return IAM_OK;
    }
    if (n->type != JSON_ARRAY)
        return iam_fail(err, IAM_E_INVALID_CLAIM, "\"%s\" must be an array of strings", name);
    for (size_t i = json_first_child(d, v), m = 0; m < n->len; m++, i = json_next_sibling(d, i)) {
        if (d->nodes[i].type != JSON_STRING)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"%s\" must be an array of strings", name);
        *bytes += d->nodes[i].len + 1;
    }
    *count = n->len;
    *bytes += n->len * sizeof(char *);
    return IAM_OK;
}

static str_list put_list(arena *a, const char **slots, const json_doc *d, size_t v, size_t count)
{
    str_list l = {slots, count};
    if (!count)
        return l;
    const json_node *n = &d->nodes[v];
    size_t k = 0;
    if (n->type == JSON_STRING) { /* space-separated */
        for (size_t i = 0; i < n->len;) {
            while (i < n->len && n->str[i] == ' ')
                i++;
            size_t start = i;
            while (i < n->len && n->str[i] != ' ')
                i++;
            if (i > start)
                slots[k++] = put_str(a, n->str + start, i - start);
        }
        return l;
    }
    for (size_t i = json_first_child(d, v); k < count; i = json_next_sibling(d, i))
        slots[k++] = put_str(a, d->nodes[i].str, d->nodes[i].len);
    return l;
}

/* The first builder, kept as the reference user_from_claims is tested against. */
iam_status user_from_claims_reference(const json_doc *d, const claim_index *ix, const char *payload,
                                      size_t len, double exp, iam_user **out, iam_error *err)
{
    const claim_index r = *ix;

    bool service = r.auth_method && json_str_eq(d, r.auth_method, "client_credentials");
    if (service) {
        if (!r.client_id || d->nodes[r.client_id].type != JSON_STRING || !d->nodes[r.client_id].len)
            return iam_fail(err, r.client_id ? IAM_E_INVALID_CLAIM : IAM_E_MISSING_CLAIM,
                            "a client_credentials token needs a non-empty string \"client_id\"");
        if (r.sub)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "a client_credentials token must not carry \"sub\"");
    } else {
        if (!r.sub)
            return iam_fail(err, IAM_E_MISSING_CLAIM, "user token has no \"sub\" claim");
        if (d->nodes[r.sub].type != JSON_STRING || !d->nodes[r.sub].len)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"sub\" must be a non-empty string");
    }

    size_t bytes = 0, nroles, nperms, norg, nscopes;
    iam_status st;
    if ((st = str_size(d, r.sub, "sub", &bytes, err)) || (st = str_size(d, r.client_id, "client_id", &bytes, err)) ||
        (st = str_size(d, r.email, "email", &bytes, err)) || (st = id_size(d, r.org_id, "org_id", &bytes, err)) ||
        (st = id_size(d, r.team_id, "team_id", &bytes, err)) ||
        (st = str_size(d, r.team_role, "team_role", &bytes, err)) ||
        (st = id_size(d, r.idp_org_id, "idp_org_id", &bytes, err)) ||
        (st = str_size(d, r.auth_method, "auth_method", &bytes, err)) ||
        (st = str_size(d, r.type, "type", &bytes, err)) || (st = str_size(d, r.jti, "jti", &bytes, err)) ||
        (st = str_size(d, r.iss, "iss", &bytes, err)) ||
        (st = list_size(d, r.roles, "roles", false, &bytes, &nroles, err)) ||
        (st = list_size(d, r.permissions, "permissions", false, &bytes, &nperms, err)) ||
        (st = list_size(d, r.org_role, "org_role", false, &bytes, &norg, err)) ||
        (st = list_size(d, r.scopes, "scopes", true, &bytes, &nscopes, err)))
        return st;

    int64_t version = 1;
    if (r.token_version) {
        if (!json_integer(d, r.token_version, INT32_MAX, &version) || version < 0)
            return iam_fail(err, IAM_E_INVALID_CLAIM,
                            "\"token_version\" must be an integer from 0 to 2^31-1");
    }
    bool mfa = false;
    if (r.mfa_verified) {
        uint8_t t = d->nodes[r.mfa_verified].type;
        if (t != JSON_TRUE && t != JSON_FALSE)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"mfa_verified\" must be a boolean");
        mfa = t == JSON_TRUE;
    }

    iam_user *u = malloc(sizeof *u + bytes + len + 1);
    if (!u)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    atomic_init(&u->refs, 1);
    u->kind = service ? IAM_PRINCIPAL_SERVICE : IAM_PRINCIPAL_USER;
    u->token_version = version;
    u->mfa_verified = mfa;
    u->expires_at = (int64_t)floor(exp);

    const char **slots = (const char **)(void *)u->data;
    arena a = {u->data + (nroles + nperms + norg + nscopes) * sizeof(char *)};
    u->roles = put_list(&a, slots, d, r.roles, nroles);
    u->permissions = put_list(&a, slots + nroles, d, r.permissions, nperms);
    u->org_roles = put_list(&a, slots + nroles + nperms, d, r.org_role, norg);
    u->scopes = put_list(&a, slots + nroles + nperms + norg, d, r.scopes, nscopes);
    u->user_id = service ? NULL : put_opt(&a, d, r.sub);
    u->client_id = put_opt(&a, d, r.client_id);
    u->email = put_opt(&a, d, r.email);
    u->org_id = put_id(&a, d, r.org_id);
    u->team_id = put_id(&a, d, r.team_id);
    u->team_role = put_opt(&a, d, r.team_role);
    u->idp_org_id = put_id(&a, d, r.idp_org_id);
    u->auth_method = put_opt(&a, d, r.auth_method);
    u->type = put_opt(&a, d, r.type);
    u->jti = put_opt(&a, d, r.jti);
    u->issuer = put_opt(&a, d, r.iss);
    u->payload = put_str(&a, payload, len);
    u->payload_len = len;
    *out = u;
    return IAM_OK;
}

/* ------------------------------------------------------------ fast builder */

/*
 * user_from_claims: the reference's checks in the reference's order with its messages (the
 * differential test compares both on every input), in two passes: one over a table of the
 * scalar claims and the lists that validates, sizes and keeps each value's span (an integer
 * id is formatted once, here), then one allocation and the copies.
 */
enum { F_STR, F_ID };
#define IX(field) offsetof(claim_index, field)
#define UF(field) offsetof(struct iam_user, field)
static const struct {
    size_t ix, user;
    uint8_t kind;
    const char *name;
} SCALARS[] = {
    {IX(sub), UF(user_id), F_STR, "sub"},
    {IX(client_id), UF(client_id), F_STR, "client_id"},
    {IX(email), UF(email), F_STR, "email"},
    {IX(org_id), UF(org_id), F_ID, "org_id"},
    {IX(team_id), UF(team_id), F_ID, "team_id"},
    {IX(team_role), UF(team_role), F_STR, "team_role"},
    {IX(idp_org_id), UF(idp_org_id), F_ID, "idp_org_id"},
    {IX(auth_method), UF(auth_method), F_STR, "auth_method"},
    {IX(type), UF(type), F_STR, "type"},
    {IX(jti), UF(jti), F_STR, "jti"},
    {IX(iss), UF(issuer), F_STR, "iss"},
};
static const struct {
    size_t ix, user;
    bool split;
    const char *name;
} LISTS[] = {
    {IX(roles), UF(roles), false, "roles"},
    {IX(permissions), UF(permissions), false, "permissions"},
    {IX(org_role), UF(org_roles), false, "org_role"},
    {IX(scopes), UF(scopes), true, "scopes"},
};
#undef IX
#undef UF
#define NSCALARS (sizeof SCALARS / sizeof SCALARS[0])
#define NLISTS (sizeof LISTS / sizeof LISTS[0])

static inline size_t ix_at(const claim_index *ix, size_t off)
{
    size_t v;
    memcpy(&v, (const char *)ix + off, sizeof v);
    return v;
}

/* Copies s[0..n) and a NUL to *at. Claim strings are mostly short: up to 16 bytes move as
 * two overlapping words (never reading outside s[0..n)), longer ones through memcpy. */
static inline char *copy_str(char **at, const char *s, size_t n)
{
    char *dst = *at;
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++)
            dst[i] = s[i];
    } else {
        memcpy(dst, s, n);
    }
    dst[n] = '\0';
    *at += n + 1;
    return dst;
}

iam_status user_from_claims(const json_doc *d, const claim_index *ix, const char *payload,
                            size_t len, double exp, iam_user **out, iam_error *err)
{
    const json_node *N = d->nodes;
    size_t am = ix->auth_method, cid = ix->client_id, sub = ix->sub;
    bool service = am && N[am].type == JSON_STRING &&
                   json_span_eq(N[am].str, N[am].len, "client_credentials", 18);
    if (service) {
        if (!cid || N[cid].type != JSON_STRING || !N[cid].len)
            return iam_fail(err, cid ? IAM_E_INVALID_CLAIM : IAM_E_MISSING_CLAIM,
                            "a client_credentials token needs a non-empty string \"client_id\"");
        if (sub)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "a client_credentials token must not carry \"sub\"");
    } else {
        if (!sub)
            return iam_fail(err, IAM_E_MISSING_CLAIM, "user token has no \"sub\" claim");
        if (N[sub].type != JSON_STRING || !N[sub].len)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"sub\" must be a non-empty string");
    }

    /* Pass 1: validate and size. */
    const char *str[NSCALARS];
    uint32_t slen[NSCALARS];
    char ids[3][24];
    size_t nids = 0, bytes = len + 1;
    for (size_t f = 0; f < NSCALARS; f++) {
        size_t v = ix_at(ix, SCALARS[f].ix);
        str[f] = NULL;
        if (!v || N[v].type == JSON_NULL)
            continue;
        const json_node *x = &N[v];
        if (x->type == JSON_STRING && (SCALARS[f].kind == F_STR || x->len > 0)) {
            str[f] = x->str;
            slen[f] = x->len;
        } else if (SCALARS[f].kind == F_STR) {
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"%s\" must be a string or null", SCALARS[f].name);
        } else {
            int64_t iv;
            if (!json_integer(d, v, (uint64_t)IAM_MAX_INTEGER_ID, &iv))
                return iam_fail(err, IAM_E_INVALID_CLAIM,
                                "\"%s\" must be a plain integer (|n| <= 2^53), a non-empty string or null",
                                SCALARS[f].name);
            uint64_t mag = iv < 0 ? (uint64_t)0 - (uint64_t)iv : (uint64_t)iv;
            char *e = ids[nids] + sizeof ids[nids], *q = e;
            do {
                *--q = (char)('0' + mag % 10);
                mag /= 10;
            } while (mag);
            if (iv < 0)
                *--q = '-';
            nids++;
            str[f] = q;
            slen[f] = (uint32_t)(e - q);
        }
        bytes += slen[f] + 1;
    }
    size_t count[NLISTS], slots = 0;
    for (size_t l = 0; l < NLISTS; l++) {
        size_t v = ix_at(ix, LISTS[l].ix);
        count[l] = 0;
        if (!v || N[v].type == JSON_NULL)
            continue;
        const json_node *x = &N[v];
        if (LISTS[l].split && x->type == JSON_STRING) {
            for (size_t i = 0; i < x->len; i++)
                if (x->str[i] != ' ' && (i == 0 || x->str[i - 1] == ' '))
                    count[l]++;
            bytes += x->len + 1;
        } else {
            if (x->type != JSON_ARRAY)
                return iam_fail(err, IAM_E_INVALID_CLAIM, "\"%s\" must be an array of strings", LISTS[l].name);
            for (size_t i = v + 1, m = 0; m < x->len; m++, i = N[i].next) {
                if (N[i].type != JSON_STRING)
                    return iam_fail(err, IAM_E_INVALID_CLAIM, "\"%s\" must be an array of strings",
                                    LISTS[l].name);
                bytes += N[i].len + 1;
            }
            count[l] = x->len;
        }
        slots += count[l];
    }
    int64_t version = 1;
    if (ix->token_version) {
        if (!json_integer(d, ix->token_version, INT32_MAX, &version) || version < 0)
            return iam_fail(err, IAM_E_INVALID_CLAIM,
                            "\"token_version\" must be an integer from 0 to 2^31-1");
    }
    bool mfa = false;
    if (ix->mfa_verified) {
        uint8_t t = N[ix->mfa_verified].type;
        if (t != JSON_TRUE && t != JSON_FALSE)
            return iam_fail(err, IAM_E_INVALID_CLAIM, "\"mfa_verified\" must be a boolean");
        mfa = t == JSON_TRUE;
    }

    /* Pass 2: one allocation (pointer arrays, strings, the payload), then the copies. */
    iam_user *u = malloc(sizeof *u + slots * sizeof(char *) + bytes);
    if (!u)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    atomic_init(&u->refs, 1);
    u->kind = service ? IAM_PRINCIPAL_SERVICE : IAM_PRINCIPAL_USER;
    u->token_version = version;
    u->mfa_verified = mfa;
    u->expires_at = (int64_t)floor(exp);
    const char **slot = (const char **)(void *)u->data;
    char *heap = u->data + slots * sizeof(char *);
    for (size_t l = 0; l < NLISTS; l++) {
        str_list list = {slot, count[l]};
        if (count[l]) {
            size_t v = ix_at(ix, LISTS[l].ix);
            const json_node *x = &N[v];
            if (x->type == JSON_STRING) { /* space-separated */
                for (size_t i = 0; i < x->len;) {
                    while (i < x->len && x->str[i] == ' ')
                        i++;
                    size_t start = i;
                    while (i < x->len && x->str[i] != ' ')
                        i++;
                    if (i > start)
                        *slot++ = copy_str(&heap, x->str + start, i - start);
                }
            } else {
                for (size_t i = v + 1, m = 0; m < count[l]; m++, i = N[i].next)
                    *slot++ = copy_str(&heap, N[i].str, N[i].len);
            }
        }
        memcpy((char *)u + LISTS[l].user, &list, sizeof list);
    }
    for (size_t f = 0; f < NSCALARS; f++) {
        const char *p = str[f] ? copy_str(&heap, str[f], slen[f]) : NULL;
        memcpy((char *)u + SCALARS[f].user, &p, sizeof p);
    }
    if (service)
        u->user_id = NULL;
    u->payload = copy_str(&heap, payload, len);
    u->payload_len = len;
    *out = u;
    return IAM_OK;
}

/* -------------------------------------------------------------- lifecycle */

iam_user *iam_user_retain(iam_user *u)
{
    if (u)
        atomic_fetch_add_explicit(&u->refs, 1, memory_order_relaxed);
    return u;
}

void iam_user_release(iam_user *u)
{
    if (u && atomic_fetch_sub_explicit(&u->refs, 1, memory_order_acq_rel) == 1)
        free(u);
}

/* --------------------------------------------------------------- accessors */

iam_principal_kind iam_user_kind(const iam_user *u) { return u->kind; }
const char *iam_user_id(const iam_user *u) { return u->user_id; }
const char *iam_user_client_id(const iam_user *u) { return u->client_id; }
const char *iam_user_email(const iam_user *u) { return u->email; }
const char *iam_user_org_id(const iam_user *u) { return u->org_id; }
const char *iam_user_team_id(const iam_user *u) { return u->team_id; }
const char *iam_user_team_role(const iam_user *u) { return u->team_role; }
const char *iam_user_idp_org_id(const iam_user *u) { return u->idp_org_id; }
const char *iam_user_auth_method(const iam_user *u) { return u->auth_method; }
const char *iam_user_token_type(const iam_user *u) { return u->type; }
const char *iam_user_jti(const iam_user *u) { return u->jti; }
const char *iam_user_issuer(const iam_user *u) { return u->issuer; }
int64_t iam_user_token_version(const iam_user *u) { return u->token_version; }
bool iam_user_mfa_verified(const iam_user *u) { return u->mfa_verified; }
int64_t iam_user_expires_at(const iam_user *u) { return u->expires_at; }

static const char *const *list_out(const str_list *l, size_t *n)
{
    if (n)
        *n = l->count;
    return l->items;
}

const char *const *iam_user_roles(const iam_user *u, size_t *n) { return list_out(&u->roles, n); }
const char *const *iam_user_permissions(const iam_user *u, size_t *n) { return list_out(&u->permissions, n); }
const char *const *iam_user_org_roles(const iam_user *u, size_t *n) { return list_out(&u->org_roles, n); }
const char *const *iam_user_scopes(const iam_user *u, size_t *n) { return list_out(&u->scopes, n); }

const char *iam_user_payload(const iam_user *u, size_t *len)
{
    if (len)
        *len = u->payload_len;
    return u->payload;
}

/* ---------------------------------------------------------- authorization */

static bool list_has(const str_list *l, const char *s)
{
    if (!s)
        return false;
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

bool iam_user_has_role(const iam_user *u, const char *role) { return u && list_has(&u->roles, role); }

bool iam_user_has_permission(const iam_user *u, const char *permission)
{
    return u && list_has(&u->permissions, permission);
}

bool iam_user_has_any_role(const iam_user *u, const char *const *roles, size_t n)
{
    for (size_t i = 0; u && roles && i < n; i++)
        if (list_has(&u->roles, roles[i]))
            return true;
    return false;
}

bool iam_user_has_any_permission(const iam_user *u, const char *const *perms, size_t n)
{
    for (size_t i = 0; u && perms && i < n; i++)
        if (list_has(&u->permissions, perms[i]))
            return true;
    return false;
}

bool iam_user_in_org(const iam_user *u, const char *org_id)
{
    return u && org_id && u->org_id && strcmp(u->org_id, org_id) == 0;
}

/* ------------------------------------------------------------------ export */

char *iam_user_claim_json(const iam_user *u, const char *name)
{
    if (!u || !name)
        return NULL;
    /* The claim's exact bytes from the verified payload (a re-printed number could change:
     * cJSON prints 15 significant digits). The payload parsed once already, so it parses. */
    static const json_limits limits = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};
    json_doc d;
    if (json_parse(&d, u->payload, u->payload_len, &limits, NULL, 0, NULL, 0, "claims", NULL) != IAM_OK)
        return NULL;
    size_t start, len;
    char *copy = NULL;
    if (json_member_text(&d, u->payload, u->payload_len, name, &start, &len) &&
        (copy = malloc(len + 1)) != NULL) {
        memcpy(copy, u->payload + start, len);
        copy[len] = '\0';
    }
    json_doc_free(&d);
    return copy;
}

static bool add_str(cJSON *o, const char *name, const char *v)
{
    return (v ? cJSON_AddStringToObject(o, name, v) : cJSON_AddNullToObject(o, name)) != NULL;
}

static bool add_list(cJSON *o, const char *name, const str_list *l)
{
    cJSON *a = cJSON_AddArrayToObject(o, name);
    for (size_t i = 0; a && i < l->count; i++) {
        cJSON *s = cJSON_CreateString(l->items[i]);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            return false;
        }
    }
    return a != NULL;
}

char *iam_user_to_json(const iam_user *u)
{
    if (!u)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "kind", u->kind == IAM_PRINCIPAL_SERVICE ? "service" : "user") &&
              add_str(o, "user_id", u->user_id) && add_str(o, "client_id", u->client_id) &&
              add_str(o, "email", u->email) && add_list(o, "roles", &u->roles) &&
              add_list(o, "permissions", &u->permissions) && add_str(o, "org_id", u->org_id) &&
              add_list(o, "org_role", &u->org_roles) && add_str(o, "team_id", u->team_id) &&
              add_str(o, "team_role", u->team_role) && add_str(o, "idp_org_id", u->idp_org_id) &&
              add_str(o, "auth_method", u->auth_method) && add_list(o, "scopes", &u->scopes) &&
              cJSON_AddNumberToObject(o, "token_version", (double)u->token_version) &&
              cJSON_AddBoolToObject(o, "mfa_verified", u->mfa_verified) &&
              add_str(o, "type", u->type) && add_str(o, "jti", u->jti) &&
              add_str(o, "issuer", u->issuer) &&
              cJSON_AddNumberToObject(o, "expires_at", (double)u->expires_at);
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return NULL;
    char *copy = strdup(text);
    cJSON_free(text);
    return copy;
}
