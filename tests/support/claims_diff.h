/*
 * claims_diff.h — the differential check of the claim-set fast path against the general
 * parser, shared by tests/test_claims_diff.c and fuzz/fuzz_claims.c (header-only: the fuzz
 * build has no test support library).
 *
 * For one claim-set text it runs
 *   reference: json_parse (the general parser) + "claims are not a JSON object" +
 *              claims_index (a plain scan of the claim names);
 *   fast:      claims_parse (json_parse_picked: no node per member, claims picked by a
 *              hashed name table, scalars parsed inline, duplicates by bit + names_repeat);
 * and requires the same status code, and for an accepted text the same claims present with
 * identical value subtrees (types, lengths, decoded bytes, input offsets, children). It then
 * runs the whole claims stage both ways (claims_to_user vs claims_to_user_reference: checks
 * and user context) under several policies and requires the same status and, when a user is
 * built, the same user (iam_user_to_json, the payload, every list).
 *
 * claims_diff() returns NULL when both agree, or a static description of the first
 * difference.
 */
#ifndef IAM_TEST_CLAIMS_DIFF_H
#define IAM_TEST_CLAIMS_DIFF_H

#include "identity/identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deep equality of the subtree at a in da and b in db. */
static bool claims_diff_same_tree(const json_doc *da, size_t a, const json_doc *db, size_t b)
{
    const json_node *x = &da->nodes[a], *y = &db->nodes[b];
    if (x->type != y->type || x->len != y->len || x->raw != y->raw)
        return false;
    if (x->type == JSON_STRING || x->type == JSON_NUMBER)
        return x->len == 0 || memcmp(x->str, y->str, x->len) == 0;
    if (x->type == JSON_ARRAY) {
        for (size_t i = a + 1, j = b + 1, m = 0; m < x->len; m++) {
            if (!claims_diff_same_tree(da, i, db, j))
                return false;
            i = da->nodes[i].next, j = db->nodes[j].next;
        }
        return true;
    }
    if (x->type == JSON_OBJECT) {
        for (size_t i = a + 1, j = b + 1, m = 0; m < x->len; m++) {
            if (!claims_diff_same_tree(da, i, db, j) || !claims_diff_same_tree(da, i + 1, db, j + 1))
                return false;
            i = da->nodes[i + 1].next, j = db->nodes[j + 1].next;
        }
        return true;
    }
    return true; /* literals */
}

static bool claims_diff_same_list(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool claims_diff_same_user(const iam_user *a, const iam_user *b)
{
    char *ja = iam_user_to_json(a), *jb = iam_user_to_json(b);
    bool same = ja && jb && strcmp(ja, jb) == 0;
    iam_free(ja);
    iam_free(jb);
    size_t pa, pb, na, nb;
    const char *xa = iam_user_payload(a, &pa), *xb = iam_user_payload(b, &pb);
    same = same && pa == pb && memcmp(xa, xb, pa) == 0;
    same = same && iam_user_kind(a) == iam_user_kind(b) &&
           iam_user_token_version(a) == iam_user_token_version(b) &&
           iam_user_expires_at(a) == iam_user_expires_at(b) &&
           iam_user_mfa_verified(a) == iam_user_mfa_verified(b);
    const char *const *la, *const *lb;
    la = iam_user_roles(a, &na), lb = iam_user_roles(b, &nb);
    same = same && claims_diff_same_list(la, na, lb, nb);
    la = iam_user_permissions(a, &na), lb = iam_user_permissions(b, &nb);
    same = same && claims_diff_same_list(la, na, lb, nb);
    la = iam_user_org_roles(a, &na), lb = iam_user_org_roles(b, &nb);
    same = same && claims_diff_same_list(la, na, lb, nb);
    la = iam_user_scopes(a, &na), lb = iam_user_scopes(b, &nb);
    same = same && claims_diff_same_list(la, na, lb, nb);
    return same;
}

/* Counters a caller may read (how much of the comparison an input reached). */
typedef struct claims_diff_stats {
    unsigned long inputs, parsed, users;
} claims_diff_stats;
static claims_diff_stats claims_diff_seen;

static const char *claims_diff(const char *text, size_t len)
{
    static const json_limits limits = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};
    static char why[400];
    claims_diff_seen.inputs++;

    /* 1. The parse: status, and the picked value subtrees. The fast path runs twice: with
     *    caller buffers as iam_token_verify gives them, and with none (allocation). */
    json_doc g, f;
    claim_index gi, fi;
    iam_error ge, fe;
    iam_status gs = json_parse(&g, text, len, &limits, NULL, 0, NULL, 0, "claims", &ge);
    if (gs == IAM_OK && g.nodes[0].type != JSON_OBJECT) {
        json_doc_free(&g);
        gs = IAM_E_MALFORMED;
    }
    if (gs == IAM_OK)
        claims_index(&g, &gi);
    for (int variant = 0; variant < 2; variant++) {
        json_node nodes[256];
        char scratch[1024];
        iam_status fs = variant == 0 ? claims_parse(&f, &fi, text, len, nodes, 256, scratch,
                                                    sizeof scratch, &fe)
                                     : claims_parse(&f, &fi, text, len, NULL, 0, NULL, 0, &fe);
        if (fs != gs) {
            snprintf(why, sizeof why, "parse status: general %s (%.150s), claims_parse %s (%.150s)",
                     iam_status_name(gs), gs != IAM_OK ? ge.message : "", iam_status_name(fs),
                     fs != IAM_OK ? fe.message : "");
            if (gs == IAM_OK)
                json_doc_free(&g);
            if (fs == IAM_OK)
                json_doc_free(&f);
            return why;
        }
        if (fs != IAM_OK) {
            if (fe.code != fs || fe.message[0] == '\0') {
                snprintf(why, sizeof why, "claims_parse error record disagrees with its status");
                return why;
            }
            continue;
        }
        const char *bad = NULL;
        if (f.nodes[0].type != JSON_OBJECT || f.nodes[0].len != g.nodes[0].len)
            bad = "root object or member count differs";
        for (size_t k = 0; !bad && k < sizeof gi / sizeof(size_t); k++) {
            size_t a, b;
            memcpy(&a, (const char *)&gi + k * sizeof(size_t), sizeof a);
            memcpy(&b, (const char *)&fi + k * sizeof(size_t), sizeof b);
            if (!a != !b)
                bad = "a claim is present in one parse only";
            else if (a && !claims_diff_same_tree(&g, a, &f, b))
                bad = "a claim's value differs";
        }
        json_doc_free(&f);
        if (bad) {
            json_doc_free(&g);
            return bad;
        }
    }
    if (gs == IAM_OK) {
        json_doc_free(&g);
        claims_diff_seen.parsed++;
    }

    /* 2. The whole claims stage under several policies. */
    static const iam_verify_options policies[] = {
        {NULL, NULL, NULL, 0, 0},
        {NULL, NULL, NULL, 86400, IAM_VERIFY_SKIP_AUDIENCE | IAM_VERIFY_SKIP_ISSUER | IAM_VERIFY_ANY_TYPE},
        {"other-aud", "other-iss", "refresh", 5, 0},
        {NULL, NULL, NULL, -1, 0}, /* invalid leeway */
    };
    static const int64_t nows[] = {1700000000, 0, 4102444800};
    for (size_t pi = 0; pi < sizeof policies / sizeof policies[0]; pi++) {
        for (size_t ni = 0; ni < sizeof nows / sizeof nows[0]; ni++) {
            iam_user *ua = NULL, *ub = NULL;
            iam_error ea, eb;
            iam_status sa = claims_to_user_reference(text, len, &policies[pi], nows[ni], &ua, &ea);
            iam_status sb = claims_to_user(text, len, &policies[pi], nows[ni], &ub, &eb);
            bool same = sa == sb && !ua == !ub && (sa != IAM_OK) == !ua;
            if (same && sa != IAM_OK)
                same = strcmp(ea.message, eb.message) == 0 || sa == IAM_E_MALFORMED ||
                       sa == IAM_E_TOO_LARGE;
            if (same && ua) {
                same = claims_diff_same_user(ua, ub);
                claims_diff_seen.users++;
            }
            iam_user_release(ua);
            iam_user_release(ub);
            if (!same) {
                snprintf(why, sizeof why, "claims stage (policy %zu, now %lld): reference %s, fast %s",
                         pi, (long long)nows[ni], iam_status_name(sa), iam_status_name(sb));
                return why;
            }
        }
    }
    return NULL;
}

#endif
