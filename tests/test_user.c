/*
 * test_user.c — the verified user context: accessors over the platform's claim set,
 * identifier normalisation, lists, the authorization helpers, JSON export, reference
 * counting, and sharing one keyset and contexts across threads.
 *
 * Tokens are minted by tests/support/mint.c (HS256, a 64-byte secret) at a fixed clock.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "iamclient.h"
#include "mint.h"

#define NOW INT64_C(1900000000)
#define EXP (NOW + 900)

static const char SECRET64[] = "u53r-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW";

static mint_key *hs;
static iam_keyset *ks;

static int group_setup(void **state)
{
    (void)state;
    hs = mint_key_hmac(SECRET64, 64);
    ks = iam_keyset_new();
    if (!ks || iam_keyset_add_hmac(ks, SECRET64, 64, NULL, NULL) != IAM_OK)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mint_key_free(hs);
    iam_keyset_release(ks);
    return 0;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* The registered claims every test token needs, then `members` (raw JSON members). */
static char *claims_with(const char *members)
{
    return xprintf("{\"sub\":\"2\",\"exp\":%lld,\"type\":\"access\",\"iss\":\"omnibioai-auth\","
                   "\"aud\":\"omnibioai-platform\"%s%s}",
                   (long long)EXP, members && *members ? "," : "", members ? members : "");
}

/* Verifies `claims` (HS256); returns the status, the user in *out on success. */
static iam_status verify_claims(const char *claims, iam_user **out, iam_error *e)
{
    char *tok = mint_token("HS256", NULL, claims, hs);
    iam_status st = iam_token_verify(tok, strlen(tok), ks, NULL, NOW, out, e);
    free(tok);
    return st;
}

static iam_user *user_of_(const char *claims, const char *file, int line)
{
    iam_user *u = NULL;
    iam_error e;
    memset(&e, 0, sizeof e);
    iam_status st = verify_claims(claims, &u, &e);
    if (st != IAM_OK || !u) {
        print_error("%s:%d: verify(%s) = %s (%s)\n", file, line, claims, iam_status_name(st),
                    e.message);
        _fail(file, line);
    }
    return u;
}
#define USER_OF(claims) user_of_((claims), __FILE__, __LINE__)

/* A user from the base claims plus members; caller releases. */
static iam_user *user_with_(const char *members, const char *file, int line)
{
    char *c = claims_with(members);
    iam_user *u = user_of_(c, file, line);
    free(c);
    return u;
}
#define USER_WITH(members) user_with_((members), __FILE__, __LINE__)

static void expect_status_(const char *members, iam_status want, const char *file, int line)
{
    char *c = claims_with(members);
    iam_user *u = NULL;
    iam_error e;
    memset(&e, 0, sizeof e);
    iam_status st = verify_claims(c, &u, &e);
    if (st != want) {
        print_error("%s:%d: verify(%s) = %s (%s), want %s\n", file, line, c, iam_status_name(st),
                    st == IAM_OK ? "" : e.message, iam_status_name(want));
        iam_user_release(u);
        free(c);
        _fail(file, line);
    }
    if (st != IAM_OK) {
        if (u || e.code != st || e.message[0] == '\0') {
            print_error("%s:%d: failure without NULL user / code / message\n", file, line);
            free(c);
            _fail(file, line);
        }
    }
    iam_user_release(u);
    free(c);
}
#define EXPECT_STATUS(members, want) expect_status_((members), (want), __FILE__, __LINE__)

/* items is evaluated (and *n filled) before this body runs. */
static void assert_list(const char *const *items, const size_t *n, const char *const *want, size_t wn)
{
    assert_int_equal(*n, wn);
    for (size_t i = 0; i < wn; i++) {
        assert_non_null(items[i]);
        assert_string_equal(items[i], want[i]);
    }
}

/* ------------------------------------------------------------------------- */
/* The platform's claim set                                                  */
/* ------------------------------------------------------------------------- */

static void test_platform_accessors(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    iam_user *u = USER_OF(claims);

    assert_int_equal(iam_user_kind(u), IAM_PRINCIPAL_USER);
    assert_string_equal(iam_user_id(u), "2");
    assert_null(iam_user_client_id(u));
    assert_string_equal(iam_user_email(u), "user@example.org");
    assert_string_equal(iam_user_org_id(u), "7");
    assert_null(iam_user_team_id(u));
    assert_null(iam_user_team_role(u));
    assert_null(iam_user_idp_org_id(u));
    assert_string_equal(iam_user_auth_method(u), "password");
    assert_string_equal(iam_user_token_type(u), "access");
    assert_string_equal(iam_user_issuer(u), "omnibioai-auth");
    assert_int_equal(iam_user_token_version(u), 2);
    assert_true(iam_user_mfa_verified(u));
    assert_int_equal(iam_user_expires_at(u), EXP);

    /* The jti is the one in the claim set, verbatim. */
    const char *j = strstr(claims, "\"jti\":\"");
    assert_non_null(j);
    j += 7;
    const char *q = strchr(j, '"');
    assert_non_null(iam_user_jti(u));
    assert_int_equal(strlen(iam_user_jti(u)), (size_t)(q - j));
    assert_memory_equal(iam_user_jti(u), j, (size_t)(q - j));
    assert_int_equal(strlen(iam_user_jti(u)), 36);

    size_t n = 99;
    const char *roles[] = {"user", "scientist"};
    assert_list(iam_user_roles(u, &n), &n, roles, 2);
    const char *perms[] = {"dataset.read", "model.use", "workflow.execute"};
    assert_list(iam_user_permissions(u, &n), &n, perms, 3);
    const char *org_roles[] = {"member"};
    assert_list(iam_user_org_roles(u, &n), &n, org_roles, 1);
    n = 99;
    iam_user_scopes(u, &n);
    assert_int_equal(n, 0);
    /* n may be NULL. */
    assert_non_null(iam_user_roles(u, NULL));

    /* Strings live as long as the context: the same pointers on every call. */
    assert_ptr_equal(iam_user_id(u), iam_user_id(u));

    iam_user_release(u);
    free(claims);
}

/* The contract's example user (integers for ids in the token body). */
static void test_contract_example(void **state)
{
    (void)state;
    iam_user *u = USER_WITH("\"email\":\"user@example.org\",\"roles\":[\"researcher\"],"
                            "\"permissions\":[\"dataset.read\",\"workflow.execute\"],"
                            "\"org_id\":7,\"org_role\":[\"member\"],\"team_id\":null,"
                            "\"team_role\":null,\"auth_method\":\"password\",\"idp_org_id\":null,"
                            "\"token_version\":2,\"mfa_verified\":false,"
                            "\"jti\":\"0b7f4d1e-6a2c-4e59-9b1a-2c3d4e5f6a7b\"");
    assert_string_equal(iam_user_org_id(u), "7");
    assert_false(iam_user_mfa_verified(u));
    assert_string_equal(iam_user_jti(u), "0b7f4d1e-6a2c-4e59-9b1a-2c3d4e5f6a7b");
    iam_user_release(u);

    /* A freshly registered user. */
    u = USER_WITH("\"roles\":[\"user\"],\"permissions\":[],\"org_id\":null");
    size_t n = 9;
    iam_user_permissions(u, &n);
    assert_int_equal(n, 0);
    assert_null(iam_user_org_id(u));
    assert_false(iam_user_in_org(u, "7"));
    assert_false(iam_user_has_permission(u, "dataset.read"));
    iam_user_release(u);
}

/* ------------------------------------------------------------------------- */
/* Identifiers                                                               */
/* ------------------------------------------------------------------------- */

static void test_identifiers(void **state)
{
    (void)state;
    struct {
        const char *json;
        const char *want; /* NULL: absent */
    } ok[] = {
        {"7", "7"},
        {"\"lab-7\"", "lab-7"},
        {"\"7\"", "7"},
        {"null", NULL},
        {"-3", "-3"},
        {"0", "0"},
        {"9007199254740992", "9007199254740992"},   /* 2^53 */
        {"-9007199254740992", "-9007199254740992"},
        {"123456789012345", "123456789012345"},
        {"\"0042\"", "0042"},                        /* strings are kept as given */
    };
    const char *fields[] = {"org_id", "team_id", "idp_org_id"};
    for (size_t f = 0; f < 3; f++) {
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
            char *m = xprintf("\"%s\":%s", fields[f], ok[i].json);
            print_message("%s\n", m);
            iam_user *u = USER_WITH(m);
            const char *got = f == 0 ? iam_user_org_id(u) : f == 1 ? iam_user_team_id(u)
                                                                   : iam_user_idp_org_id(u);
            if (ok[i].want)
                assert_string_equal(got, ok[i].want);
            else
                assert_null(got);
            iam_user_release(u);
            free(m);
        }
    }
    /* Absent. */
    iam_user *u = USER_WITH(NULL);
    assert_null(iam_user_org_id(u));
    assert_null(iam_user_team_id(u));
    assert_null(iam_user_idp_org_id(u));
    assert_null(iam_user_email(u));
    assert_null(iam_user_team_role(u));
    assert_null(iam_user_auth_method(u));
    assert_null(iam_user_jti(u));
    iam_user_release(u);

    const char *bad[] = {"1.5", "9007199254740994", "-9007199254740994", "18014398509481984",
                         "1e300", "true", "false", "[7]", "{\"id\":7}", "7.5e0"};
    for (size_t f = 0; f < 3; f++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char *m = xprintf("\"%s\":%s", fields[f], bad[i]);
            print_message("%s\n", m);
            EXPECT_STATUS(m, IAM_E_INVALID_CLAIM);
            free(m);
        }
    }
}

/* IAM_MAX_INTEGER_ID is 2^53. 2^53 + 1 is not representable in a double: read through
 * strtod it rounds to 2^53 and would pass the bound, and the context would then carry a
 * different id ("9007199254740992") than the token did. It must be refused. */
static void test_identifiers_beyond_2_53(void **state)
{
    (void)state;
    const char *fields[] = {"org_id", "team_id", "idp_org_id"};
    const char *bad[] = {"9007199254740993", "-9007199254740993"};
    int failures = 0;
    for (size_t f = 0; f < 3; f++) {
        for (size_t i = 0; i < 2; i++) {
            char *m = xprintf("\"%s\":%s", fields[f], bad[i]);
            char *c = claims_with(m);
            iam_user *u = NULL;
            iam_status st = verify_claims(c, &u, NULL);
            if (st != IAM_E_INVALID_CLAIM) {
                const char *got = !u ? "(none)" : f == 0 ? iam_user_org_id(u)
                                              : f == 1 ? iam_user_team_id(u)
                                                       : iam_user_idp_org_id(u);
                print_error("%s: got %s with id \"%s\", want invalid_claim\n", m,
                            iam_status_name(st), got);
                failures++;
            }
            iam_user_release(u);
            free(c);
            free(m);
        }
    }
    assert_int_equal(failures, 0);
}

static void test_strings(void **state)
{
    (void)state;
    iam_user *u = USER_WITH("\"email\":\"a@b.example\",\"team_role\":\"admin\","
                            "\"auth_method\":\"sso\",\"team_id\":12");
    assert_string_equal(iam_user_email(u), "a@b.example");
    assert_string_equal(iam_user_team_role(u), "admin");
    assert_string_equal(iam_user_auth_method(u), "sso");
    assert_string_equal(iam_user_team_id(u), "12");
    iam_user_release(u);
    /* Escapes are decoded. */
    u = USER_WITH("\"email\":\"caf\\u00e9@lab.example\",\"team_role\":\"a\\\"b\"");
    assert_string_equal(iam_user_email(u), "caf\xc3\xa9@lab.example");
    assert_string_equal(iam_user_team_role(u), "a\"b");
    iam_user_release(u);
    /* Sub with escapes too. */
    char *c = xprintf("{\"sub\":\"u\\u002f1\",\"exp\":%lld,\"type\":\"access\","
                      "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\"}",
                      (long long)EXP);
    u = USER_OF(c);
    assert_string_equal(iam_user_id(u), "u/1");
    iam_user_release(u);
    free(c);

    EXPECT_STATUS("\"email\":5", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"email\":[\"a@b\"]", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"team_role\":true", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"auth_method\":1", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"jti\":7", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"email\":null", IAM_OK);
}

/* ------------------------------------------------------------------------- */
/* Lists, version, mfa, expiry                                               */
/* ------------------------------------------------------------------------- */

static void test_lists(void **state)
{
    (void)state;
    iam_user *u = USER_WITH("\"roles\":[\"admin\",\"user\",\"admin\"],"
                            "\"permissions\":[\"manage_all_orgs\"],"
                            "\"org_role\":[\"org_admin\",\"member\"]");
    size_t n;
    const char *roles[] = {"admin", "user", "admin"};
    assert_list(iam_user_roles(u, &n), &n, roles, 3);
    const char *perms[] = {"manage_all_orgs"};
    assert_list(iam_user_permissions(u, &n), &n, perms, 1);
    const char *org[] = {"org_admin", "member"};
    assert_list(iam_user_org_roles(u, &n), &n, org, 2);
    iam_user_release(u);

    /* Empty, null and absent lists are empty. */
    u = USER_WITH("\"roles\":[],\"permissions\":null");
    n = 5;
    iam_user_roles(u, &n);
    assert_int_equal(n, 0);
    n = 5;
    iam_user_permissions(u, &n);
    assert_int_equal(n, 0);
    n = 5;
    iam_user_org_roles(u, &n);
    assert_int_equal(n, 0);
    iam_user_release(u);

    /* A string with spaces is one role (only scopes split). */
    u = USER_WITH("\"roles\":[\"lab admin\"]");
    assert_true(iam_user_has_role(u, "lab admin"));
    assert_false(iam_user_has_role(u, "lab"));
    iam_user_release(u);

    EXPECT_STATUS("\"roles\":\"admin\"", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"roles\":\"admin user\"", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"roles\":{\"admin\":true}", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"roles\":7", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"roles\":[\"admin\",1]", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"roles\":[null]", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"roles\":[[\"admin\"]]", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"permissions\":[true]", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"permissions\":\"dataset.read\"", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"org_role\":\"member\"", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"org_role\":[1]", IAM_E_INVALID_CLAIM);
}

static void test_version_mfa_expiry(void **state)
{
    (void)state;
    iam_user *u = USER_WITH(NULL);
    assert_int_equal(iam_user_token_version(u), 1);
    assert_false(iam_user_mfa_verified(u));
    assert_int_equal(iam_user_expires_at(u), EXP);
    iam_user_release(u);

    u = USER_WITH("\"token_version\":3,\"mfa_verified\":false");
    assert_int_equal(iam_user_token_version(u), 3);
    assert_false(iam_user_mfa_verified(u));
    iam_user_release(u);
    u = USER_WITH("\"token_version\":1,\"mfa_verified\":true");
    assert_int_equal(iam_user_token_version(u), 1);
    assert_true(iam_user_mfa_verified(u));
    iam_user_release(u);

    EXPECT_STATUS("\"mfa_verified\":\"yes\"", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"mfa_verified\":1", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"mfa_verified\":\"true\"", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"token_version\":\"2\"", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"token_version\":1.5", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"token_version\":true", IAM_E_INVALID_CLAIM);
    EXPECT_STATUS("\"token_version\":-1", IAM_E_INVALID_CLAIM);

    /* expires_at is exp rounded down. */
    char *c = xprintf("{\"sub\":\"2\",\"exp\":1900000900.5,\"type\":\"access\","
                      "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\"}");
    u = USER_OF(c);
    assert_int_equal(iam_user_expires_at(u), INT64_C(1900000900));
    iam_user_release(u);
    free(c);
    c = xprintf("{\"sub\":\"2\",\"exp\":1900000000.999,\"type\":\"access\","
                "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\"}");
    u = USER_OF(c);
    assert_int_equal(iam_user_expires_at(u), INT64_C(1900000000));
    iam_user_release(u);
    free(c);
    /* The latest NumericDate accepted. */
    c = xprintf("{\"sub\":\"2\",\"exp\":253402300799,\"type\":\"access\","
                "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\"}");
    u = USER_OF(c);
    assert_int_equal(iam_user_expires_at(u), INT64_C(253402300799));
    iam_user_release(u);
    free(c);
}

/* ------------------------------------------------------------------------- */
/* Authorization helpers                                                     */
/* ------------------------------------------------------------------------- */

static void test_membership(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    iam_user *u = USER_OF(claims);
    free(claims);

    assert_true(iam_user_has_role(u, "user"));
    assert_true(iam_user_has_role(u, "scientist"));
    assert_false(iam_user_has_role(u, "User"));
    assert_false(iam_user_has_role(u, "use"));
    assert_false(iam_user_has_role(u, "users"));
    assert_false(iam_user_has_role(u, ""));
    assert_false(iam_user_has_role(u, "admin"));
    assert_false(iam_user_has_role(u, NULL));
    assert_false(iam_user_has_role(NULL, "user"));

    assert_true(iam_user_has_permission(u, "dataset.read"));
    assert_true(iam_user_has_permission(u, "workflow.execute"));
    assert_false(iam_user_has_permission(u, "dataset.write"));
    assert_false(iam_user_has_permission(u, "dataset"));
    assert_false(iam_user_has_permission(u, "dataset.*"));
    assert_false(iam_user_has_permission(u, "DATASET.READ"));
    assert_false(iam_user_has_permission(u, NULL));
    assert_false(iam_user_has_permission(NULL, "dataset.read"));
    /* Roles and permissions are separate lists. */
    assert_false(iam_user_has_permission(u, "user"));
    assert_false(iam_user_has_role(u, "dataset.read"));

    const char *any1[] = {"admin", "scientist"};
    const char *any2[] = {"admin", "owner"};
    const char *with_null[] = {NULL, "user"};
    assert_true(iam_user_has_any_role(u, any1, 2));
    assert_false(iam_user_has_any_role(u, any1, 1));
    assert_false(iam_user_has_any_role(u, any2, 2));
    assert_false(iam_user_has_any_role(u, any1, 0));
    assert_false(iam_user_has_any_role(u, NULL, 2));
    assert_false(iam_user_has_any_role(NULL, any1, 2));
    assert_true(iam_user_has_any_role(u, with_null, 2));

    const char *p1[] = {"model.train", "model.use"};
    const char *p2[] = {"model.train", "dataset.delete"};
    assert_true(iam_user_has_any_permission(u, p1, 2));
    assert_false(iam_user_has_any_permission(u, p2, 2));
    assert_false(iam_user_has_any_permission(u, p1, 0));
    assert_false(iam_user_has_any_permission(u, NULL, 1));
    assert_false(iam_user_has_any_permission(NULL, p1, 2));

    assert_true(iam_user_in_org(u, "7"));
    assert_false(iam_user_in_org(u, "07"));
    assert_false(iam_user_in_org(u, "7 "));
    assert_false(iam_user_in_org(u, "70"));
    assert_false(iam_user_in_org(u, ""));
    assert_false(iam_user_in_org(u, NULL));
    assert_false(iam_user_in_org(NULL, "7"));
    iam_user_release(u);

    /* String org ids compare exactly too. */
    u = USER_WITH("\"org_id\":\"lab-7\"");
    assert_true(iam_user_in_org(u, "lab-7"));
    assert_false(iam_user_in_org(u, "LAB-7"));
    assert_false(iam_user_in_org(u, "7"));
    iam_user_release(u);
}

/* ------------------------------------------------------------------------- */
/* JSON                                                                      */
/* ------------------------------------------------------------------------- */

static void test_claim_json(void **state)
{
    (void)state;
    iam_user *u = USER_WITH("\"custom\":{\"a\":[1,2]},\"flag\":true,\"name\":\"x\",\"nothing\":null");
    char *j = iam_user_claim_json(u, "custom");
    assert_non_null(j);
    assert_string_equal(j, "{\"a\":[1,2]}");
    iam_free(j);
    j = iam_user_claim_json(u, "flag");
    assert_string_equal(j, "true");
    iam_free(j);
    j = iam_user_claim_json(u, "name");
    assert_string_equal(j, "\"x\"");
    iam_free(j);
    j = iam_user_claim_json(u, "nothing");
    assert_string_equal(j, "null");
    iam_free(j);
    j = iam_user_claim_json(u, "sub");
    assert_string_equal(j, "\"2\"");
    iam_free(j);
    j = iam_user_claim_json(u, "exp");
    assert_string_equal(j, "1900000900");
    iam_free(j);
    assert_null(iam_user_claim_json(u, "absent"));
    assert_null(iam_user_claim_json(u, "Custom"));
    assert_null(iam_user_claim_json(u, ""));
    assert_null(iam_user_claim_json(u, NULL));
    assert_null(iam_user_claim_json(NULL, "sub"));
    iam_user_release(u);
}

/* "Any claim of the verified payload, as JSON text": a number comes back as the same
 * number, not one rounded through a double. */
static void test_claim_json_numbers(void **state)
{
    (void)state;
    iam_user *u = USER_WITH("\"big\":12345678901234567890,\"id\":9007199254740993,"
                            "\"list\":[18446744073709551615],\"small\":-12,\"frac\":0.5,"
                            "\"exact\":9007199254740992");
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"big", "12345678901234567890"},
        {"id", "9007199254740993"},
        {"exact", "9007199254740992"}, /* 2^53: exact in a double */
        {"list", "[18446744073709551615]"},
        {"small", "-12"},
        {"frac", "0.5"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *j = iam_user_claim_json(u, cases[i].name);
        if (!j || strcmp(j, cases[i].want) != 0) {
            print_error("claim_json(\"%s\") = %s, want %s\n", cases[i].name, j ? j : "NULL",
                        cases[i].want);
            failures++;
        }
        iam_free(j);
    }
    iam_user_release(u);
    assert_int_equal(failures, 0);
}

static void test_payload_exact(void **state)
{
    (void)state;
    /* Odd spacing and member order are kept byte for byte. */
    char *c = xprintf("{ \"aud\" : \"omnibioai-platform\",\n\"sub\":\"2\",\"exp\":%lld , "
                      "\"iss\":\"omnibioai-auth\",\"type\":\"access\",\"z\":[ ] }",
                      (long long)EXP);
    iam_user *u = USER_OF(c);
    size_t n = 0;
    const char *p = iam_user_payload(u, &n);
    assert_int_equal(n, strlen(c));
    assert_memory_equal(p, c, n);
    assert_int_equal(p[n], '\0');
    assert_non_null(iam_user_payload(u, NULL));
    iam_user_release(u);
    free(c);
}

static const char *obj_str(const cJSON *o, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

static void test_to_json(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    char *tok = mint_token("HS256", NULL, claims, hs);
    iam_user *u = NULL;
    assert_int_equal(iam_token_verify(tok, strlen(tok), ks, NULL, NOW, &u, NULL), IAM_OK);
    char *json = iam_user_to_json(u);
    assert_non_null(json);

    /* No token, no signature, no secret. */
    assert_null(strstr(json, tok));
    assert_null(strstr(json, strrchr(tok, '.') + 1));
    char head[40];
    memcpy(head, tok, 36);
    head[36] = '\0';
    assert_null(strstr(json, head));
    assert_null(strstr(json, SECRET64));

    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    assert_true(cJSON_IsObject(o));
    assert_string_equal(obj_str(o, "user_id"), "2");
    assert_string_equal(obj_str(o, "org_id"), "7");
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "org_id")));
    assert_string_equal(obj_str(o, "email"), "user@example.org");
    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(o, "roles");
    assert_true(cJSON_IsArray(roles));
    assert_int_equal(cJSON_GetArraySize(roles), 2);
    assert_string_equal(cJSON_GetArrayItem(roles, 0)->valuestring, "user");
    const cJSON *perms = cJSON_GetObjectItemCaseSensitive(o, "permissions");
    assert_true(cJSON_IsArray(perms));
    assert_int_equal(cJSON_GetArraySize(perms), 3);
    /* Absent ids are null or absent, never a number. */
    const cJSON *team = cJSON_GetObjectItemCaseSensitive(o, "team_id");
    assert_true(team == NULL || cJSON_IsNull(team));
    /* Nothing is a token. */
    for (const cJSON *m = o->child; m; m = m->next) {
        assert_true(m->string != NULL);
        if (cJSON_IsString(m))
            assert_null(strstr(m->valuestring, "eyJ"));
    }
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "token"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "access_token"));
    cJSON_Delete(o);
    iam_free(json);
    iam_user_release(u);
    free(tok);
    free(claims);

    /* A service identity. */
    u = USER_OF("{\"exp\":1900000900,\"type\":\"access\",\"iss\":\"omnibioai-auth\","
                "\"aud\":\"omnibioai-platform\",\"auth_method\":\"client_credentials\","
                "\"client_id\":\"hpc\",\"org_id\":\"lab-3\",\"scopes\":\"a b\"}");
    json = iam_user_to_json(u);
    assert_non_null(json);
    o = cJSON_Parse(json);
    assert_non_null(o);
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(o, "user_id");
    assert_true(uid == NULL || cJSON_IsNull(uid));
    assert_string_equal(obj_str(o, "client_id"), "hpc");
    assert_string_equal(obj_str(o, "org_id"), "lab-3");
    cJSON_Delete(o);
    iam_free(json);
    iam_user_release(u);

    assert_null(iam_user_to_json(NULL));
}

/* ------------------------------------------------------------------------- */
/* Reference counting                                                        */
/* ------------------------------------------------------------------------- */

static void test_retain_release(void **state)
{
    (void)state;
    iam_user *u = USER_WITH("\"roles\":[\"r\"]");
    assert_ptr_equal(iam_user_retain(u), u);
    iam_user_release(u);
    /* Still alive: one reference left (ASan would flag a use after free). */
    assert_string_equal(iam_user_id(u), "2");
    assert_true(iam_user_has_role(u, "r"));
    iam_user_release(u);
    iam_user_release(NULL);
    assert_null(iam_user_retain(NULL));

    /* Many references, released in any order. */
    u = USER_WITH(NULL);
    for (int i = 0; i < 100; i++)
        iam_user_retain(u);
    for (int i = 0; i < 100; i++) {
        iam_user_release(u);
        assert_string_equal(iam_user_id(u), "2");
    }
    iam_user_release(u);
}

/* ------------------------------------------------------------------------- */
/* Threads                                                                   */
/* ------------------------------------------------------------------------- */

#define THREADS 4
#define ITERATIONS 20000

typedef struct shared {
    const char *token;
    size_t token_len;
    iam_keyset *ks;
    _Atomic(iam_user *) slot; /* one reference held by the slot */
    atomic_int failures;
    atomic_int handoffs;
} shared;

static void *worker(void *arg)
{
    shared *s = arg;
    iam_keyset *mine = iam_keyset_retain(s->ks);
    for (int i = 0; i < ITERATIONS; i++) {
        iam_user *u = NULL;
        iam_status st = iam_token_verify(s->token, s->token_len, mine, NULL, NOW, &u, NULL);
        if (st != IAM_OK || !u || strcmp(iam_user_id(u), "2") != 0 ||
            !iam_user_has_permission(u, "model.use")) {
            atomic_fetch_add(&s->failures, 1);
            iam_user_release(u);
            continue;
        }
        /* Hand a reference to whichever thread comes next; take the previous one. */
        iam_user *old = atomic_exchange(&s->slot, iam_user_retain(u));
        iam_user_release(u);
        if (old) {
            size_t n = 0;
            iam_user_roles(old, &n);
            if (n != 2 || !iam_user_in_org(old, "7") || strcmp(iam_user_email(old), "user@example.org") != 0)
                atomic_fetch_add(&s->failures, 1);
            /* A second holder for a moment, released in the other order. */
            iam_user *again = iam_user_retain(old);
            iam_user_release(old);
            iam_user_release(again);
            atomic_fetch_add(&s->handoffs, 1);
        }
    }
    iam_keyset_release(mine);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    char *tok = mint_token("HS256", NULL, claims, hs);
    shared s;
    memset(&s, 0, sizeof s);
    s.token = tok;
    s.token_len = strlen(tok);
    /* A keyset of its own, built here, then shared read-only. */
    s.ks = iam_keyset_new();
    assert_non_null(s.ks);
    assert_int_equal(iam_keyset_add_hmac(s.ks, SECRET64, 64, NULL, NULL), IAM_OK);
    atomic_init(&s.slot, NULL);
    atomic_init(&s.failures, 0);
    atomic_init(&s.handoffs, 0);

    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &s), 0);
    /* The creator's reference can go while the threads hold theirs... but only once
     * each thread has retained it; join first to keep the test deterministic. */
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    iam_keyset_release(s.ks);

    assert_int_equal(atomic_load(&s.failures), 0);
    assert_int_equal(atomic_load(&s.handoffs), THREADS * ITERATIONS - 1);
    iam_user *last = atomic_exchange(&s.slot, NULL);
    assert_non_null(last);
    assert_string_equal(iam_user_id(last), "2");
    iam_user_release(last);
    free(tok);
    free(claims);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_platform_accessors),
        cmocka_unit_test(test_contract_example),
        cmocka_unit_test(test_identifiers),
        cmocka_unit_test(test_identifiers_beyond_2_53),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_version_mfa_expiry),
        cmocka_unit_test(test_membership),
        cmocka_unit_test(test_claim_json),
        cmocka_unit_test(test_claim_json_numbers),
        cmocka_unit_test(test_payload_exact),
        cmocka_unit_test(test_to_json),
        cmocka_unit_test(test_retain_release),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
