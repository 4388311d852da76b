/*
 * _iam_client — the CPython extension under the iam_client package.
 *
 * A thin binding over libiamclient's public API (iamclient.h): verification, caching and
 * (when their tiers land) Redis and HTTP all happen in the C library. This file only
 * converts arguments and results, releases the GIL around C calls, and carries
 * asynchronous completions back into the caller's asyncio event loop.
 *
 * Types:
 *   UserContext  a verified user context (wraps an iam_user reference; fields are read
 *                lazily), or a detached one built from keyword arguments (the old SDK's
 *                pydantic model could be built that way). Immutable.
 *   Client       one iam_client: resolve (blocking), begin (asynchronous), cached,
 *                invalidation, statistics, close.
 *   Keyset       one HMAC secret for stateless verification (decode_local).
 *
 * Asynchronous completion (Client.begin): iam_client_resolve_async calls back either on
 * the calling thread before it returns (cache hit, local verification) or later on
 * another thread. A small state machine in each request tells the two apart without
 * looking at thread identities:
 *
 *   CALLER --callback first--> DONE_EARLY   the caller returns the result itself:
 *                                           no future, no loop round trip
 *   CALLER --caller first----> WAITING      the caller returned an asyncio future; the
 *                                           callback takes the GIL and hands the result
 *                                           to the loop with call_soon_threadsafe
 *
 * The callback touches no Python object in the first case, so it may run with the GIL
 * released. A client waits for its requests in flight before it frees the C client
 * (iam_client_free requires that no call is in progress).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <iamclient.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Set at module initialisation from iam_client.exceptions (Python classes). */
static PyObject *IAMError;
/* asyncio.get_running_loop, json.loads, the _deliver function, interned names. */
static PyObject *get_running_loop_fn;
static PyObject *json_loads_fn;
static PyObject *deliver_fn;
static PyObject *str_call_soon_threadsafe, *str_create_future, *str_done, *str_set_result;
/* UserContext objects holding a C reference: a leak check for the tests. */
static atomic_long live_native_users;

/* ------------------------------------------------------------------ helpers */

/* The bytes of a str or bytes argument. A str that is not encodable (lone surrogates)
 * yields *bad = true and no exception: callers turn it into a refusal, never an
 * exception that would carry the token along. */
static int text_arg(PyObject *o, const char *what, const char **p, Py_ssize_t *n, bool *bad)
{
    *bad = false;
    if (PyUnicode_Check(o)) {
        *p = PyUnicode_AsUTF8AndSize(o, n);
        if (!*p) {
            PyErr_Clear();
            *bad = true;
        }
        return 0;
    }
    if (PyBytes_Check(o)) {
        char *b;
        if (PyBytes_AsStringAndSize(o, &b, n) < 0)
            return -1;
        *p = b;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be str or bytes, not %.80s", what, Py_TYPE(o)->tp_name);
    return -1;
}

/* An optional NUL-terminated string argument (None: NULL). */
static int cstr_arg(PyObject *o, const char *what, const char **out)
{
    *out = NULL;
    if (!o || o == Py_None)
        return 0;
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be str or None", what);
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s)
        return -1;
    if ((size_t)n != strlen(s)) {
        PyErr_Format(PyExc_ValueError, "%s contains a NUL character", what);
        return -1;
    }
    *out = s;
    return 0;
}

static PyObject *str_or_none(const char *s)
{
    if (!s)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *tuple_of_strings(const char *const *v, size_t n)
{
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    if (!t)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *s = str_or_none(v[i]);
        if (!s) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, s);
    }
    return t;
}

/* (status, message) for a refusal or any other non-OK status. */
static PyObject *refusal(iam_status st, const char *message)
{
    return Py_BuildValue("(is)", (int)st, message && *message ? message : iam_strerror(st));
}

/* --------------------------------------------------------------- UserContext */

enum field {
    F_USER_ID, F_EMAIL, F_ROLES, F_PERMISSIONS, F_VALID, F_ORG_ID, F_ORG_ROLE, F_TEAM_ID,
    F_TEAM_ROLE, F_AUTH_METHOD, F_SCHEMA_VERSION, F_CLIENT_ID, F_KIND, F_IDP_ORG_ID, F_JTI,
    F_EXPIRES_AT, F_MFA_VERIFIED, F_SCOPES, F_TOKEN_TYPE, F_ISSUER, F_COUNT
};

enum kind { K_STR, K_ID, K_LIST, K_BOOL, K_INT };

static const struct {
    const char *name;
    enum kind kind;
    const char *doc;
} FIELDS[F_COUNT] = {
    [F_USER_ID] = {"user_id", K_ID, "the user id (`sub`), a string; None for a service identity"},
    [F_EMAIL] = {"email", K_STR, "email address, or None"},
    [F_ROLES] = {"roles", K_LIST, "roles (a new list on each access)"},
    [F_PERMISSIONS] = {"permissions", K_LIST, "permissions (a new list on each access)"},
    [F_VALID] = {"valid", K_BOOL, "True for a verified context"},
    [F_ORG_ID] = {"org_id", K_ID, "organisation (tenant) id as a string, or None"},
    [F_ORG_ROLE] = {"org_role", K_LIST, "roles in the organisation (`org_role`)"},
    [F_TEAM_ID] = {"team_id", K_ID, "active team id as a string, or None"},
    [F_TEAM_ROLE] = {"team_role", K_STR, "role in the team, or None"},
    [F_AUTH_METHOD] = {"auth_method", K_STR, "password, oauth, sso, saml, license, client_credentials"},
    [F_SCHEMA_VERSION] = {"schema_version", K_INT, "the token's claim-set version (`token_version`, 1 when absent)"},
    [F_CLIENT_ID] = {"client_id", K_STR, "client id of a service identity, or None"},
    [F_KIND] = {"kind", K_STR, "\"user\" or \"service\""},
    [F_IDP_ORG_ID] = {"idp_org_id", K_ID, "identity-provider organisation id as a string, or None"},
    [F_JTI] = {"jti", K_STR, "the token id (revocation handle), or None"},
    [F_EXPIRES_AT] = {"expires_at", K_INT, "`exp` in whole seconds since the epoch, or None"},
    [F_MFA_VERIFIED] = {"mfa_verified", K_BOOL, "True when the token says MFA was verified"},
    [F_SCOPES] = {"scopes", K_LIST, "scopes of a service identity"},
    [F_TOKEN_TYPE] = {"token_type", K_STR, "the `type` claim (\"access\")"},
    [F_ISSUER] = {"issuer", K_STR, "the `iss` claim"},
};

typedef struct {
    PyObject_HEAD
    iam_user *u;           /* NULL for a context built from keyword arguments */
    PyObject *f[F_COUNT];  /* materialised values: str, None, bool, int, tuple of str */
} UserObject;

static PyTypeObject UserType;

static PyObject *user_wrap(iam_user *u) /* steals u */
{
    UserObject *o = PyObject_New(UserObject, &UserType);
    if (!o) {
        iam_user_release(u);
        return NULL;
    }
    o->u = u;
    memset(o->f, 0, sizeof o->f);
    atomic_fetch_add_explicit(&live_native_users, 1, memory_order_relaxed);
    return (PyObject *)o;
}

static PyObject *native_field(const iam_user *u, enum field i)
{
    size_t n = 0;
    const char *const *v;
    switch (i) {
    case F_USER_ID: return str_or_none(iam_user_id(u));
    case F_EMAIL: return str_or_none(iam_user_email(u));
    case F_ROLES: v = iam_user_roles(u, &n); return tuple_of_strings(v, n);
    case F_PERMISSIONS: v = iam_user_permissions(u, &n); return tuple_of_strings(v, n);
    case F_VALID: Py_RETURN_TRUE;
    case F_ORG_ID: return str_or_none(iam_user_org_id(u));
    case F_ORG_ROLE: v = iam_user_org_roles(u, &n); return tuple_of_strings(v, n);
    case F_TEAM_ID: return str_or_none(iam_user_team_id(u));
    case F_TEAM_ROLE: return str_or_none(iam_user_team_role(u));
    case F_AUTH_METHOD: return str_or_none(iam_user_auth_method(u));
    case F_SCHEMA_VERSION: return PyLong_FromLongLong(iam_user_token_version(u));
    case F_CLIENT_ID: return str_or_none(iam_user_client_id(u));
    case F_KIND: return PyUnicode_FromString(iam_user_kind(u) == IAM_PRINCIPAL_SERVICE ? "service" : "user");
    case F_IDP_ORG_ID: return str_or_none(iam_user_idp_org_id(u));
    case F_JTI: return str_or_none(iam_user_jti(u));
    case F_EXPIRES_AT: return PyLong_FromLongLong(iam_user_expires_at(u));
    case F_MFA_VERIFIED: return PyBool_FromLong(iam_user_mfa_verified(u));
    case F_SCOPES: v = iam_user_scopes(u, &n); return tuple_of_strings(v, n);
    case F_TOKEN_TYPE: return str_or_none(iam_user_token_type(u));
    case F_ISSUER: return str_or_none(iam_user_issuer(u));
    case F_COUNT: break;
    }
    PyErr_SetString(PyExc_SystemError, "unknown field");
    return NULL;
}

/* The stored value of field i (borrowed), materialising it on first use. */
static PyObject *user_slot(UserObject *self, enum field i)
{
    if (!self->f[i]) {
        if (self->u) {
            self->f[i] = native_field(self->u, i);
        } else {
            switch (FIELDS[i].kind) {
            case K_LIST: self->f[i] = PyTuple_New(0); break;
            case K_BOOL: self->f[i] = Py_NewRef(Py_False); break;
            case K_STR:
                if (i == F_KIND) {
                    self->f[i] = PyUnicode_FromString("user");
                    break;
                }
                /* fall through */
            default: self->f[i] = Py_NewRef(Py_None); break;
            }
        }
    }
    return self->f[i];
}

/* The public value: lists are new lists (the context itself stays immutable). */
static PyObject *user_value(UserObject *self, enum field i)
{
    PyObject *v = user_slot(self, i);
    if (!v)
        return NULL;
    if (FIELDS[i].kind == K_LIST)
        return PySequence_List(v);
    return Py_NewRef(v);
}

static PyObject *user_get(PyObject *self, void *closure)
{
    return user_value((UserObject *)self, (enum field)(intptr_t)closure);
}

/* Keyword construction, with the coercions pydantic applied: ids may be int (become str). */
static PyObject *coerce(enum field i, PyObject *v)
{
    const char *name = FIELDS[i].name;
    switch (FIELDS[i].kind) {
    case K_STR:
        if (v == Py_None || PyUnicode_Check(v))
            return Py_NewRef(v);
        break;
    case K_ID:
        if (v == Py_None || PyUnicode_Check(v))
            return Py_NewRef(v);
        if (PyLong_Check(v) && !PyBool_Check(v))
            return PyObject_Str(v);
        break;
    case K_INT:
        if (v == Py_None || (PyLong_Check(v) && !PyBool_Check(v)))
            return Py_NewRef(v);
        break;
    case K_BOOL: {
        int t = PyObject_IsTrue(v);
        return t < 0 ? NULL : PyBool_FromLong(t);
    }
    case K_LIST: {
        if (v == Py_None)
            return PyTuple_New(0);
        if (PyUnicode_Check(v) || PyBytes_Check(v))
            break; /* a string is iterable, but roles="admin" is a mistake */
        PyObject *t = PySequence_Tuple(v);
        if (!t)
            return NULL;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(t); k++)
            if (!PyUnicode_Check(PyTuple_GET_ITEM(t, k))) {
                Py_DECREF(t);
                PyErr_Format(PyExc_TypeError, "UserContext: %s must hold strings", name);
                return NULL;
            }
        return t;
    }
    }
    PyErr_Format(PyExc_TypeError, "UserContext: %s cannot be %.80s", name, Py_TYPE(v)->tp_name);
    return NULL;
}

static PyObject *user_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "UserContext takes keyword arguments only");
        return NULL;
    }
    UserObject *o = (UserObject *)type->tp_alloc(type, 0);
    if (!o)
        return NULL;
    o->u = NULL;
    if (kwds) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kwds, &pos, &key, &value)) {
            int i = 0;
            for (; i < F_COUNT; i++)
                if (PyUnicode_CompareWithASCIIString(key, FIELDS[i].name) == 0)
                    break;
            if (i == F_COUNT) {
                PyErr_Format(PyExc_TypeError, "UserContext got an unexpected keyword argument '%U'", key);
                Py_DECREF(o);
                return NULL;
            }
            PyObject *c = coerce((enum field)i, value);
            if (!c) {
                Py_DECREF(o);
                return NULL;
            }
            Py_XSETREF(o->f[i], c);
        }
    }
    return (PyObject *)o;
}

static void user_dealloc(PyObject *self)
{
    UserObject *o = (UserObject *)self;
    for (int i = 0; i < F_COUNT; i++)
        Py_XDECREF(o->f[i]);
    if (o->u) {
        iam_user_release(o->u);
        atomic_fetch_sub_explicit(&live_native_users, 1, memory_order_relaxed);
    }
    Py_TYPE(self)->tp_free(self);
}

static PyObject *user_dict(PyObject *self, PyObject *unused)
{
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (int i = 0; i < F_COUNT; i++) {
        PyObject *v = user_value((UserObject *)self, (enum field)i);
        if (!v || PyDict_SetItemString(d, FIELDS[i].name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *user_repr(PyObject *self)
{
    static const enum field shown[] = {F_USER_ID, F_EMAIL, F_ROLES, F_PERMISSIONS, F_VALID, F_ORG_ID};
    PyObject *v[6] = {NULL};
    PyObject *r = NULL;
    for (int i = 0; i < 6; i++)
        if (!(v[i] = user_value((UserObject *)self, shown[i])))
            goto done;
    r = PyUnicode_FromFormat("UserContext(user_id=%R, email=%R, roles=%R, permissions=%R, "
                             "valid=%R, org_id=%R)",
                             v[0], v[1], v[2], v[3], v[4], v[5]);
done:
    for (int i = 0; i < 6; i++)
        Py_XDECREF(v[i]);
    return r;
}

static PyObject *user_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!PyObject_TypeCheck(b, &UserType) || (op != Py_EQ && op != Py_NE))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *da = user_dict(a, NULL), *db = da ? user_dict(b, NULL) : NULL;
    PyObject *r = db ? PyObject_RichCompare(da, db, op) : NULL;
    Py_XDECREF(da);
    Py_XDECREF(db);
    return r;
}

/* Membership in a list field: the C helpers for a verified context, the tuple otherwise. */
static int user_list_has(UserObject *self, enum field i, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "a role or permission must be a str");
        return -1;
    }
    if (self->u && (i == F_ROLES || i == F_PERMISSIONS)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(name, &n);
        if (!s) {
            PyErr_Clear();
            return 0;
        }
        if ((size_t)n != strlen(s))
            return 0;
        return i == F_ROLES ? iam_user_has_role(self->u, s) : iam_user_has_permission(self->u, s);
    }
    PyObject *t = user_slot(self, i);
    return t ? PySequence_Contains(t, name) : -1;
}

static PyObject *user_has(PyObject *self, PyObject *name, enum field i)
{
    int r = user_list_has((UserObject *)self, i, name);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *user_has_any(PyObject *self, PyObject *names, enum field i)
{
    if (PyUnicode_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "expected a list of names, not a str");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(names);
    if (!it)
        return NULL;
    PyObject *x;
    int found = 0;
    while (!found && (x = PyIter_Next(it))) {
        found = user_list_has((UserObject *)self, i, x);
        Py_DECREF(x);
        if (found < 0)
            break;
    }
    Py_DECREF(it);
    if (found < 0 || PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(found);
}

static PyObject *user_has_role(PyObject *s, PyObject *a) { return user_has(s, a, F_ROLES); }
static PyObject *user_has_permission(PyObject *s, PyObject *a) { return user_has(s, a, F_PERMISSIONS); }
static PyObject *user_has_any_role(PyObject *s, PyObject *a) { return user_has_any(s, a, F_ROLES); }
static PyObject *user_has_any_permission(PyObject *s, PyObject *a) { return user_has_any(s, a, F_PERMISSIONS); }

static PyObject *user_in_org(PyObject *self, PyObject *org)
{
    PyObject *v = user_slot((UserObject *)self, F_ORG_ID);
    if (!v)
        return NULL;
    if (v == Py_None)
        Py_RETURN_FALSE;
    PyObject *want = PyLong_Check(org) && !PyBool_Check(org) ? PyObject_Str(org) : Py_NewRef(org);
    if (!want)
        return NULL;
    int eq = PyUnicode_Check(want) ? PyObject_RichCompareBool(v, want, Py_EQ) : 0;
    Py_DECREF(want);
    return eq < 0 ? NULL : PyBool_FromLong(eq);
}

static PyObject *user_claims(PyObject *self, void *unused)
{
    UserObject *o = (UserObject *)self;
    if (!o->u)
        Py_RETURN_NONE;
    size_t n = 0;
    const char *p = iam_user_payload(o->u, &n);
    PyObject *text = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "strict");
    if (!text)
        return NULL;
    PyObject *d = PyObject_CallOneArg(json_loads_fn, text);
    Py_DECREF(text);
    return d;
}

static PyObject *user_claim(PyObject *self, PyObject *name)
{
    UserObject *o = (UserObject *)self;
    const char *s;
    if (cstr_arg(name, "name", &s) < 0)
        return NULL;
    if (!o->u || !s)
        Py_RETURN_NONE;
    char *j = iam_user_claim_json(o->u, s);
    if (!j)
        Py_RETURN_NONE;
    PyObject *text = PyUnicode_DecodeUTF8(j, (Py_ssize_t)strlen(j), "strict");
    iam_free(j);
    if (!text)
        return NULL;
    PyObject *v = PyObject_CallOneArg(json_loads_fn, text);
    Py_DECREF(text);
    return v;
}

static PyObject *user_json(PyObject *self, PyObject *unused)
{
    PyObject *d = user_dict(self, NULL);
    if (!d)
        return NULL;
    PyObject *json = PyImport_ImportModule("json");
    PyObject *r = json ? PyObject_CallMethod(json, "dumps", "O", d) : NULL;
    Py_XDECREF(json);
    Py_DECREF(d);
    return r;
}

static PyMethodDef user_methods[] = {
    {"dict", user_dict, METH_NOARGS, "The fields as a new dict (identifiers as strings)."},
    {"model_dump", user_dict, METH_NOARGS, "Same as dict() (the pydantic v2 name)."},
    {"json", user_json, METH_NOARGS, "dict() as JSON text."},
    {"has_role", user_has_role, METH_O, "True when the context has this role (exact match)."},
    {"has_permission", user_has_permission, METH_O, "True when the context has this permission."},
    {"has_any_role", user_has_any_role, METH_O, "True when the context has at least one of these roles."},
    {"has_any_permission", user_has_any_permission, METH_O, "True when it has at least one of these."},
    {"in_org", user_in_org, METH_O, "True when org_id equals the given organisation id (str or int)."},
    {"claim", user_claim, METH_O, "Any claim of the verified token, decoded from JSON; None when absent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef user_getset[F_COUNT + 2];

static PyTypeObject UserType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "iam_client.UserContext",
    .tp_basicsize = sizeof(UserObject),
    .tp_dealloc = user_dealloc,
    .tp_repr = user_repr,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A verified user context: who the caller is and what they may do.\n\n"
              "Returned by the client for a verified token (valid is True), or built from\n"
              "keyword arguments as the old SDK's model could be. Immutable: list fields\n"
              "return a new list on each access.",
    .tp_richcompare = user_richcompare,
    .tp_methods = user_methods,
    .tp_new = user_new,
};

/* -------------------------------------------------------------------- Client */

typedef struct {
    PyObject_HEAD
    iam_client *c;
    atomic_long inflight; /* calls in progress, including asynchronous ones not completed */
    bool closed;          /* read and written with the GIL held */
} ClientObject;

static PyTypeObject ClientType;

static int client_enter(ClientObject *self)
{
    if (self->closed || !self->c) {
        PyErr_SetString(IAMError, "the client is closed");
        return -1;
    }
    atomic_fetch_add(&self->inflight, 1);
    return 0;
}

static void client_leave(ClientObject *self)
{
    atomic_fetch_sub(&self->inflight, 1);
}

/* Waits (GIL released) until no call is in flight, then frees the C client. Completions
 * delivered to an event loop need the GIL: they can run while this waits. */
static void client_shutdown(ClientObject *self)
{
    self->closed = true;
    iam_client *c = self->c;
    if (!c)
        return;
    self->c = NULL;
    Py_BEGIN_ALLOW_THREADS
    const struct timespec pause = {0, 200 * 1000};
    while (atomic_load(&self->inflight) > 0)
        nanosleep(&pause, NULL);
    iam_client_free(c);
    Py_END_ALLOW_THREADS
}

static void client_dealloc(PyObject *self)
{
    client_shutdown((ClientObject *)self);
    Py_TYPE(self)->tp_free(self);
}

/* Option table: name, kind, offset in iam_client_options. */
enum opt_kind { O_STR, O_INT, O_SIZE, O_BOOL, O_MODE };
static const struct {
    const char *name;
    enum opt_kind kind;
    size_t offset;
} OPTIONS[] = {
    {"mode", O_MODE, offsetof(iam_client_options, mode)},
    {"jwt_secret", O_STR, offsetof(iam_client_options, jwt_secret)},
    {"jwks_file", O_STR, offsetof(iam_client_options, jwks_file)},
    {"pem_file", O_STR, offsetof(iam_client_options, pem_file)},
    {"audience", O_STR, offsetof(iam_client_options, audience)},
    {"issuer", O_STR, offsetof(iam_client_options, issuer)},
    {"leeway_s", O_INT, offsetof(iam_client_options, leeway_s)},
    {"auth_url", O_STR, offsetof(iam_client_options, auth_url)},
    {"jwks_url", O_STR, offsetof(iam_client_options, jwks_url)},
    {"redis_url", O_STR, offsetof(iam_client_options, redis_url)},
    {"cache_max_entries", O_SIZE, offsetof(iam_client_options, cache_max_entries)},
    {"cache_max_bytes", O_SIZE, offsetof(iam_client_options, cache_max_bytes)},
    {"cache_ttl_s", O_INT, offsetof(iam_client_options, cache_ttl_s)},
    {"negative_ttl_s", O_INT, offsetof(iam_client_options, negative_ttl_s)},
    {"revocation_ttl_s", O_INT, offsetof(iam_client_options, revocation_ttl_s)},
    {"cache_disabled", O_BOOL, offsetof(iam_client_options, cache_disabled)},
    {"cache_secret", O_STR, offsetof(iam_client_options, cache_secret)},
    {"redis_timeout_ms", O_INT, offsetof(iam_client_options, redis_timeout_ms)},
    {"redis_stale_s", O_INT, offsetof(iam_client_options, redis_stale_s)},
    {"redis_direct_max", O_INT, offsetof(iam_client_options, redis_direct_max)},
    {"revocation_fail_open", O_BOOL, offsetof(iam_client_options, revocation_fail_open)},
};

static int set_option(iam_client_options *o, PyObject *key, PyObject *value)
{
    size_t i = 0, n = sizeof OPTIONS / sizeof OPTIONS[0];
    for (; i < n; i++)
        if (PyUnicode_CompareWithASCIIString(key, OPTIONS[i].name) == 0)
            break;
    if (i == n) {
        PyErr_Format(PyExc_TypeError, "unknown client option '%U'", key);
        return -1;
    }
    if (value == Py_None)
        return 0;
    char *field = (char *)o + OPTIONS[i].offset;
    const char *name = OPTIONS[i].name;
    switch (OPTIONS[i].kind) {
    case O_STR: {
        const char *s;
        if (cstr_arg(value, name, &s) < 0)
            return -1;
        if (s && !*s && strcmp(name, "redis_url") == 0)
            s = NULL; /* "": no Redis tier, whatever IAM_REDIS_URL says */
        memcpy(field, &s, sizeof s); /* the dict keeps the str alive until iam_client_new returns */
        return 0;
    }
    case O_BOOL: {
        int t = PyObject_IsTrue(value);
        if (t < 0)
            return -1;
        *(bool *)field = t;
        return 0;
    }
    case O_MODE: {
        const char *s;
        if (cstr_arg(value, name, &s) < 0)
            return -1;
        iam_mode m;
        if (s && strcmp(s, "local-first") == 0)
            m = IAM_MODE_LOCAL_FIRST;
        else if (s && strcmp(s, "central") == 0)
            m = IAM_MODE_CENTRAL;
        else if (s && strcmp(s, "local-only") == 0)
            m = IAM_MODE_LOCAL_ONLY;
        else {
            PyErr_SetString(IAMError, "mode must be local-first, central or local-only");
            return -1;
        }
        *(iam_mode *)field = m;
        return 0;
    }
    case O_INT:
    case O_SIZE: {
        if (!PyLong_Check(value) || PyBool_Check(value)) {
            PyErr_Format(PyExc_TypeError, "%s must be an int", name);
            return -1;
        }
        long long v = PyLong_AsLongLong(value);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (OPTIONS[i].kind == O_INT) {
            *(int64_t *)field = v;
        } else {
            if (v < 0) {
                PyErr_Format(PyExc_ValueError, "%s must not be negative", name);
                return -1;
            }
            *(size_t *)field = (size_t)v;
        }
        return 0;
    }
    }
    return 0;
}

static PyObject *client_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Client takes keyword arguments only");
        return NULL;
    }
    iam_client_options o;
    iam_client_options_init(&o);
    iam_error err = {IAM_OK, ""};
    /* The environment first, then explicit settings over it ("from_env" is not an option of
     * the C struct: it says whether to read IAM_* variables at all). */
    PyObject *from_env = kwds ? PyDict_GetItemString(kwds, "from_env") : NULL;
    int use_env = from_env ? PyObject_IsTrue(from_env) : 1;
    if (use_env < 0)
        return NULL;
    /* The environment is read with the GIL held: no Python thread changes it meanwhile. */
    if (use_env && iam_client_options_from_env(&o, &err) != IAM_OK) {
        PyErr_SetString(IAMError, err.message);
        return NULL;
    }
    if (kwds) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kwds, &pos, &key, &value)) {
            if (PyUnicode_CompareWithASCIIString(key, "from_env") == 0)
                continue;
            if (set_option(&o, key, value) < 0)
                return NULL;
        }
    }
    iam_client *c = NULL;
    if (iam_client_new(&o, &c, &err) != IAM_OK) {
        PyErr_SetString(IAMError, err.message); /* messages never echo a setting's value */
        return NULL;
    }
    ClientObject *self = (ClientObject *)type->tp_alloc(type, 0);
    if (!self) {
        iam_client_free(c);
        return NULL;
    }
    self->c = c;
    atomic_init(&self->inflight, 0);
    self->closed = false;
    return (PyObject *)self;
}

/* Arguments shared by resolve, begin and cached: token, audience=None, required_org=None. */
typedef struct {
    const char *token;
    Py_ssize_t len;
    bool bad_text;
    PyObject *audience_obj, *org_obj;
    iam_resolve_options ro;
    bool has_ro;
} request_args;

static int parse_request(PyObject *const *args, Py_ssize_t nargs, request_args *r)
{
    memset(r, 0, sizeof *r);
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "expected (token, audience=None, required_org=None)");
        return -1;
    }
    if (text_arg(args[0], "token", &r->token, &r->len, &r->bad_text) < 0)
        return -1;
    r->audience_obj = nargs > 1 ? args[1] : Py_None;
    r->org_obj = nargs > 2 ? args[2] : Py_None;
    if (cstr_arg(r->audience_obj, "audience", &r->ro.audience) < 0 ||
        cstr_arg(r->org_obj, "required_org", &r->ro.required_org) < 0)
        return -1;
    r->has_ro = r->ro.audience || r->ro.required_org;
    return 0;
}

static PyObject *result_object(iam_status st, iam_user *user, const char *message)
{
    if (st == IAM_OK && user)
        return user_wrap(user);
    iam_user_release(user);
    return refusal(st == IAM_OK ? IAM_E_INTERNAL : st, message);
}

static PyObject *not_text(void)
{
    return refusal(IAM_E_MALFORMED, "the token is not valid UTF-8 text");
}

static PyObject *client_resolve(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ClientObject *self = (ClientObject *)op;
    request_args r;
    if (parse_request(args, nargs, &r) < 0)
        return NULL;
    if (r.bad_text)
        return not_text();
    if (client_enter(self) < 0)
        return NULL;
    iam_user *user = NULL;
    iam_error err = {IAM_OK, ""};
    iam_status st;
    iam_client *c = self->c; /* read with the GIL: close() clears it */
    Py_BEGIN_ALLOW_THREADS
    st = iam_client_resolve(c, r.token, (size_t)r.len, r.has_ro ? &r.ro : NULL, &user, &err);
    Py_END_ALLOW_THREADS
    client_leave(self);
    return result_object(st, user, err.message);
}

static PyObject *client_cached(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ClientObject *self = (ClientObject *)op;
    request_args r;
    if (parse_request(args, nargs, &r) < 0)
        return NULL;
    if (r.bad_text)
        return refusal(IAM_E_NOT_CACHED, "not cached");
    if (client_enter(self) < 0)
        return NULL;
    iam_user *user = NULL;
    iam_error err = {IAM_OK, ""};
    iam_status st;
    iam_client *c = self->c; /* read with the GIL: close() clears it */
    Py_BEGIN_ALLOW_THREADS
    st = iam_client_cached(c, r.token, (size_t)r.len, r.has_ro ? &r.ro : NULL, &user, &err);
    Py_END_ALLOW_THREADS
    client_leave(self);
    return result_object(st, user, err.message);
}

/* ----- asynchronous resolution */

enum { P_CALLER = 0, P_DONE_EARLY = 1, P_WAITING = 2 };

typedef struct pending {
    atomic_int state;
    iam_status st;
    iam_user *user;
    char message[IAM_ERROR_MESSAGE_BYTES];
    ClientObject *owner;        /* counted in owner->inflight until completion */
    PyObject *loop, *future;    /* strong references, set before P_WAITING */
    PyObject *keep_audience, *keep_org; /* the strings ro points into */
    iam_resolve_options ro;
    int delay_ms;               /* tests: complete from a helper thread after this delay */
} pending;

static void pending_store(pending *p, iam_status st, iam_user *user, const iam_error *err)
{
    p->st = st;
    p->user = user;
    if (err && err->message[0])
        snprintf(p->message, sizeof p->message, "%s", err->message);
    else
        p->message[0] = '\0';
}

/* With the GIL: drops the references a request holds (not the owner's count). */
static void pending_drop(pending *p)
{
    Py_CLEAR(p->loop);
    Py_CLEAR(p->future);
    Py_CLEAR(p->keep_audience);
    Py_CLEAR(p->keep_org);
    iam_user_release(p->user);
    p->user = NULL;
}

/* Runs on whatever thread completed the request, after the caller has returned a future. */
static void deliver_later(pending *p)
{
    ClientObject *owner = p->owner;
    PyGILState_STATE g = PyGILState_Ensure();
    if (p->loop) {
        PyObject *res = result_object(p->st, p->user, p->message);
        p->user = NULL; /* consumed by result_object */
        if (!res) {     /* out of memory: fail closed (None reads as unauthorized) */
            PyErr_Clear();
            res = Py_NewRef(Py_None);
        }
        PyObject *r = PyObject_CallMethodObjArgs(p->loop, str_call_soon_threadsafe, deliver_fn,
                                                 p->future, res, NULL);
        if (!r) /* the loop is closed: nobody can await this future any more */
            PyErr_Clear();
        Py_XDECREF(r);
        Py_DECREF(res);
    }
    pending_drop(p);
    free(p);
    PyGILState_Release(g);
    atomic_fetch_sub(&owner->inflight, 1); /* last: the client may be freed after this */
}

static void pending_complete(pending *p)
{
    int expected = P_CALLER;
    if (atomic_compare_exchange_strong(&p->state, &expected, P_DONE_EARLY))
        return; /* the caller is still in begin(): it takes the result from here */
    deliver_later(p);
}

static void *delayed_completion(void *arg)
{
    pending *p = arg;
    struct timespec t = {p->delay_ms / 1000, (long)(p->delay_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    pending_complete(p);
    return NULL;
}

static void on_resolved(void *arg, iam_status st, iam_user *user, const iam_error *err)
{
    pending *p = arg;
    pending_store(p, st, user, err);
    if (p->delay_ms > 0) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &a, delayed_completion, p);
        pthread_attr_destroy(&a);
        if (rc == 0)
            return;
    }
    pending_complete(p);
}

/* begin(token, audience=None, required_org=None, delay_ms=0) -> UserContext | (status,
 * message) | asyncio.Future resolving to one of those. Must be called in a running loop
 * (a future is only made when the answer is not already there). */
static PyObject *client_begin(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ClientObject *self = (ClientObject *)op;
    int delay_ms = 0;
    if (nargs == 4) {
        delay_ms = PyLong_AsLong(args[3]);
        if (delay_ms == -1 && PyErr_Occurred())
            return NULL;
        nargs = 3;
    }
    request_args r;
    if (parse_request(args, nargs, &r) < 0)
        return NULL;
    if (r.bad_text)
        return not_text();
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return PyErr_NoMemory();
    if (client_enter(self) < 0) {
        free(p);
        return NULL;
    }
    atomic_init(&p->state, P_CALLER);
    p->owner = self;
    p->ro = r.ro;
    p->delay_ms = delay_ms;
    if (r.ro.audience)
        p->keep_audience = Py_NewRef(r.audience_obj);
    if (r.ro.required_org)
        p->keep_org = Py_NewRef(r.org_obj);
    iam_status rc;
    iam_client *c = self->c;
    Py_BEGIN_ALLOW_THREADS
    rc = iam_client_resolve_async(c, r.token, (size_t)r.len, r.has_ro ? &p->ro : NULL, on_resolved, p);
    Py_END_ALLOW_THREADS
    if (rc != IAM_OK) { /* the callback will not run */
        pending_drop(p);
        free(p);
        client_leave(self);
        return refusal(rc, NULL);
    }
    if (atomic_load(&p->state) != P_DONE_EARLY) {
        PyObject *loop = PyObject_CallNoArgs(get_running_loop_fn);
        PyObject *fut = loop ? PyObject_CallMethodNoArgs(loop, str_create_future) : NULL;
        if (fut) {
            p->loop = loop;
            p->future = Py_NewRef(fut);
        } else { /* completion will find no loop and only release the request */
            Py_XDECREF(loop);
        }
        int expected = P_CALLER;
        if (atomic_compare_exchange_strong(&p->state, &expected, P_WAITING))
            return fut; /* NULL with the exception set when there was no loop */
        /* The callback finished meanwhile: answer directly. */
        Py_CLEAR(p->loop);
        Py_CLEAR(p->future);
        Py_XDECREF(fut);
        if (!fut)
            PyErr_Clear();
    }
    PyObject *res = result_object(p->st, p->user, p->message);
    p->user = NULL;
    pending_drop(p);
    free(p);
    client_leave(self);
    return res;
}

/* ----- invalidation, statistics, lifecycle */

static PyObject *client_invalidate(ClientObject *self, PyObject *arg, int which)
{
    const char *s = NULL;
    Py_ssize_t n = 0;
    bool bad = false;
    if (which == 0) {
        if (text_arg(arg, "token", &s, &n, &bad) < 0)
            return NULL;
        if (bad)
            return PyLong_FromLong(0);
    } else if (which != 3) {
        if (!PyUnicode_Check(arg) && PyLong_Check(arg) && !PyBool_Check(arg)) {
            PyObject *str = PyObject_Str(arg); /* user ids are strings: 2 means "2" */
            if (!str)
                return NULL;
            PyObject *r = client_invalidate(self, str, which);
            Py_DECREF(str);
            return r;
        }
        if (cstr_arg(arg, which == 1 ? "user_id" : "jti", &s) < 0)
            return NULL;
        if (!s) {
            PyErr_SetString(PyExc_TypeError, which == 1 ? "user_id is required" : "jti is required");
            return NULL;
        }
    }
    if (client_enter(self) < 0)
        return NULL;
    size_t removed = 0;
    iam_client *c = self->c;
    Py_BEGIN_ALLOW_THREADS
    switch (which) {
    case 0: removed = iam_client_invalidate_token(c, s, (size_t)n); break;
    case 1: removed = iam_client_invalidate_user(c, s); break;
    case 2: removed = iam_client_revoke_jti(c, s); break;
    default: removed = iam_client_invalidate_all(c); break;
    }
    Py_END_ALLOW_THREADS
    client_leave(self);
    return PyLong_FromSize_t(removed);
}

static PyObject *client_invalidate_token(PyObject *s, PyObject *a) { return client_invalidate((ClientObject *)s, a, 0); }
static PyObject *client_invalidate_user(PyObject *s, PyObject *a) { return client_invalidate((ClientObject *)s, a, 1); }
static PyObject *client_revoke_jti(PyObject *s, PyObject *a) { return client_invalidate((ClientObject *)s, a, 2); }
static PyObject *client_invalidate_all(PyObject *s, PyObject *u) { return client_invalidate((ClientObject *)s, NULL, 3); }

static PyObject *client_text(ClientObject *self, bool prometheus)
{
    if (client_enter(self) < 0)
        return NULL;
    char *text;
    iam_client *c = self->c;
    Py_BEGIN_ALLOW_THREADS
    text = prometheus ? iam_client_metrics_prometheus(c) : iam_client_stats_json(c);
    Py_END_ALLOW_THREADS
    client_leave(self);
    if (!text)
        return PyErr_NoMemory();
    PyObject *r = PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");
    iam_free(text);
    return r;
}

static PyObject *client_stats_json(PyObject *s, PyObject *u) { return client_text((ClientObject *)s, false); }
static PyObject *client_metrics(PyObject *s, PyObject *u) { return client_text((ClientObject *)s, true); }

static PyObject *client_close(PyObject *s, PyObject *u)
{
    client_shutdown((ClientObject *)s);
    Py_RETURN_NONE;
}

static PyObject *client_get_inflight(PyObject *s, void *u)
{
    return PyLong_FromLong(atomic_load(&((ClientObject *)s)->inflight));
}

static PyObject *client_get_closed(PyObject *s, void *u)
{
    return PyBool_FromLong(((ClientObject *)s)->closed);
}

static PyMethodDef client_methods[] = {
    {"resolve", (PyCFunction)(void (*)(void))client_resolve, METH_FASTCALL,
     "resolve(token, audience=None, required_org=None) -> UserContext | (status, message).\n"
     "Blocking (the GIL is released)."},
    {"begin", (PyCFunction)(void (*)(void))client_begin, METH_FASTCALL,
     "begin(token, audience=None, required_org=None[, delay_ms]) -> UserContext |\n"
     "(status, message) | asyncio.Future of one of those. Needs a running event loop\n"
     "when the answer is not immediate. delay_ms (tests only) completes from a helper\n"
     "thread after that many milliseconds."},
    {"cached", (PyCFunction)(void (*)(void))client_cached, METH_FASTCALL,
     "cached(token, audience=None, required_org=None) -> UserContext | (status, message):\n"
     "answers from the caches only (status not_cached when none holds an answer)."},
    {"invalidate_token", client_invalidate_token, METH_O, "Evicts a token's entries; returns how many."},
    {"invalidate_user", client_invalidate_user, METH_O, "Evicts every entry of a user id."},
    {"revoke_jti", client_revoke_jti, METH_O, "Marks a jti revoked and evicts its entries."},
    {"invalidate_all", client_invalidate_all, METH_NOARGS, "Empties the caches."},
    {"stats_json", client_stats_json, METH_NOARGS, "The client's statistics as JSON text."},
    {"metrics", client_metrics, METH_NOARGS, "The statistics in Prometheus text format."},
    {"close", client_close, METH_NOARGS, "Waits for calls in flight, then frees the C client."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
    {"inflight", client_get_inflight, NULL, "calls in progress (asynchronous ones until completed)", NULL},
    {"closed", client_get_closed, NULL, "True after close()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "iam_client._iam_client.Client",
    .tp_basicsize = sizeof(ClientObject),
    .tp_dealloc = client_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Client(**options): one libiamclient client (iam_client_new). Options are the\n"
              "fields of iam_client_options (mode, jwt_secret, jwks_file, pem_file, audience,\n"
              "issuer, leeway_s, auth_url, jwks_url, redis_url, cache_max_entries,\n"
              "cache_max_bytes, cache_ttl_s, negative_ttl_s, revocation_ttl_s,\n"
              "cache_disabled, cache_secret, redis_timeout_ms, redis_stale_s,\n"
              "redis_direct_max, revocation_fail_open); from_env=True (the default) reads the IAM_* variables first.",
    .tp_methods = client_methods,
    .tp_getset = client_getset,
    .tp_new = client_new,
};

/* -------------------------------------------------------------------- Keyset */

typedef struct {
    PyObject_HEAD
    iam_keyset *ks; /* immutable once built, so verify may run on many threads at once */
} KeysetObject;

static PyObject *keyset_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *secret;
    static char *kwlist[] = {"secret", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Keyset", kwlist, &secret))
        return NULL;
    const char *s;
    Py_ssize_t n;
    bool bad;
    if (text_arg(secret, "secret", &s, &n, &bad) < 0)
        return NULL;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "the secret is not encodable as UTF-8");
        return NULL;
    }
    iam_keyset *ks = iam_keyset_new();
    if (!ks)
        return PyErr_NoMemory();
    iam_error err = {IAM_OK, ""};
    if (iam_keyset_add_hmac(ks, s, (size_t)n, NULL, &err) != IAM_OK) {
        iam_keyset_release(ks);
        PyErr_Format(IAMError, "secret: %s", err.message);
        return NULL;
    }
    KeysetObject *self = (KeysetObject *)type->tp_alloc(type, 0);
    if (!self) {
        iam_keyset_release(ks);
        return NULL;
    }
    self->ks = ks;
    return (PyObject *)self;
}

static void keyset_dealloc(PyObject *self)
{
    iam_keyset_release(((KeysetObject *)self)->ks);
    Py_TYPE(self)->tp_free(self);
}

/* verify(token, audience=None, issuer=None, leeway_s=0) -> UserContext | (status, message) */
static PyObject *keyset_verify(PyObject *op, PyObject *args, PyObject *kwds)
{
    KeysetObject *self = (KeysetObject *)op;
    PyObject *token, *aud = Py_None, *iss = Py_None;
    long long leeway = 0;
    static char *kwlist[] = {"token", "audience", "issuer", "leeway_s", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOL:verify", kwlist, &token, &aud, &iss, &leeway))
        return NULL;
    const char *t;
    Py_ssize_t n;
    bool bad;
    iam_verify_options vo = {0};
    if (text_arg(token, "token", &t, &n, &bad) < 0 || cstr_arg(aud, "audience", &vo.audience) < 0 ||
        cstr_arg(iss, "issuer", &vo.issuer) < 0)
        return NULL;
    if (bad)
        return not_text();
    vo.leeway_s = leeway;
    iam_user *user = NULL;
    iam_error err = {IAM_OK, ""};
    iam_status st;
    Py_BEGIN_ALLOW_THREADS
    st = iam_token_verify(t, (size_t)n, self->ks, &vo, (int64_t)time(NULL), &user, &err);
    Py_END_ALLOW_THREADS
    return result_object(st, user, err.message);
}

static PyMethodDef keyset_methods[] = {
    {"verify", (PyCFunction)(void (*)(void))keyset_verify, METH_VARARGS | METH_KEYWORDS,
     "verify(token, audience=None, issuer=None, leeway_s=0) -> UserContext | (status, message)\n"
     "Stateless iam_token_verify at the current time (no cache, no revocation marks)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KeysetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "iam_client._iam_client.Keyset",
    .tp_basicsize = sizeof(KeysetObject),
    .tp_dealloc = keyset_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Keyset(secret): one HMAC secret (HS256/384/512) for stateless verification.",
    .tp_methods = keyset_methods,
    .tp_new = keyset_new,
};

/* -------------------------------------------------------------------- module */

/* _deliver(future, result): runs on the event loop; a cancelled future is left alone. */
static PyObject *mod_deliver(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_deliver(future, result)");
        return NULL;
    }
    PyObject *done = PyObject_CallMethodNoArgs(args[0], str_done);
    if (!done)
        return NULL;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done < 0)
        return NULL;
    if (!is_done) {
        PyObject *r = PyObject_CallMethodOneArg(args[0], str_set_result, args[1]);
        if (!r)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_status_name(PyObject *m, PyObject *arg)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(iam_status_name((iam_status)v));
}

static PyObject *mod_strerror(PyObject *m, PyObject *arg)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(iam_strerror((iam_status)v));
}

static PyObject *mod_is_rejection(PyObject *m, PyObject *arg)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(iam_status_is_rejection((iam_status)v));
}

static PyObject *mod_live_users(PyObject *m, PyObject *unused)
{
    return PyLong_FromLong(atomic_load(&live_native_users));
}

static PyMethodDef module_methods[] = {
    {"_deliver", (PyCFunction)(void (*)(void))mod_deliver, METH_FASTCALL,
     "Sets a future's result unless it is already done (cancelled)."},
    {"status_name", mod_status_name, METH_O, "iam_status_name: the reason code of a status."},
    {"strerror", mod_strerror, METH_O, "iam_strerror: a one-line description of a status."},
    {"is_rejection", mod_is_rejection, METH_O, "True when the status means the token is refused."},
    {"_live_users", mod_live_users, METH_NOARGS, "UserContext objects holding a C reference (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_iam_client",
    .m_doc = "The CPython binding of libiamclient (use the iam_client package).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int init_field_getset(void)
{
    for (int i = 0; i < F_COUNT; i++)
        user_getset[i] = (PyGetSetDef){(char *)FIELDS[i].name, user_get, NULL, (char *)FIELDS[i].doc,
                                       (void *)(intptr_t)i};
    user_getset[F_COUNT] = (PyGetSetDef){"claims", user_claims, NULL,
                                         "every claim of the verified token as a dict (None when "
                                         "built from keywords)",
                                         NULL};
    user_getset[F_COUNT + 1] = (PyGetSetDef){NULL, NULL, NULL, NULL, NULL};
    UserType.tp_getset = user_getset;
    return 0;
}

PyMODINIT_FUNC PyInit__iam_client(void);
PyMODINIT_FUNC PyInit__iam_client(void)
{
    init_field_getset();
    if (PyType_Ready(&UserType) < 0 || PyType_Ready(&ClientType) < 0 || PyType_Ready(&KeysetType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    PyObject *exc = PyImport_ImportModule("iam_client.exceptions");
    PyObject *asyncio = exc ? PyImport_ImportModule("asyncio") : NULL;
    PyObject *json = asyncio ? PyImport_ImportModule("json") : NULL;
    if (json) {
        IAMError = PyObject_GetAttrString(exc, "IAMError");
        get_running_loop_fn = PyObject_GetAttrString(asyncio, "get_running_loop");
        json_loads_fn = PyObject_GetAttrString(json, "loads");
        deliver_fn = PyObject_GetAttrString(m, "_deliver");
    }
    Py_XDECREF(exc);
    Py_XDECREF(asyncio);
    Py_XDECREF(json);
    if (!IAMError || !get_running_loop_fn || !json_loads_fn || !deliver_fn ||
        !(str_call_soon_threadsafe = PyUnicode_InternFromString("call_soon_threadsafe")) ||
        !(str_create_future = PyUnicode_InternFromString("create_future")) ||
        !(str_done = PyUnicode_InternFromString("done")) ||
        !(str_set_result = PyUnicode_InternFromString("set_result")) ||
        PyModule_AddObjectRef(m, "UserContext", (PyObject *)&UserType) < 0 ||
        PyModule_AddObjectRef(m, "Client", (PyObject *)&ClientType) < 0 ||
        PyModule_AddObjectRef(m, "Keyset", (PyObject *)&KeysetType) < 0 ||
        PyModule_AddIntConstant(m, "OK", IAM_OK) < 0 ||
        PyModule_AddIntConstant(m, "E_NOT_CACHED", IAM_E_NOT_CACHED) < 0 ||
        PyModule_AddIntConstant(m, "E_UNAVAILABLE", IAM_E_UNAVAILABLE) < 0 ||
        PyModule_AddIntConstant(m, "STATUS_SLOTS", IAM_STATUS_SLOTS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_TOKEN_BYTES", IAM_MAX_TOKEN_BYTES) < 0 ||
        PyModule_AddStringConstant(m, "LIBRARY_VERSION", IAM_VERSION_STRING) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
