/* http.c — libcurl multi on the libuv loop (see http.h). */
#include "net/http.h"

#include <curl/curl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

typedef struct http_req http_req;

struct http_tier {
    io_loop *loop;
    uv_loop_t *uv;
    CURLM *multi;
    uv_timer_t timer;
    bool stopping;
    http_req *head; /* every request started and not completed */
    struct sock_ctx *socks;
    http_counters ctr;
};

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    http_tier *t;
    struct sock_ctx *prev, *next; /* the tier's open polls */
} sock_ctx;

struct http_req {
    http_req *prev, *next;
    http_tier *t;
    CURL *easy;            /* NULL while waiting to retry */
    struct curl_slist *hdrs;
    uv_timer_t retry;      /* pause before a retry */
    bool retry_init;
    http_done_fn done;
    void *arg;
    char *url, *method, *body;
    size_t body_len, max_body;
    int64_t started, deadline; /* uv_now */
    int attempts;
    bool too_large;
    char *resp;
    size_t resp_len, resp_cap;
    char etag[HTTP_MAX_ETAG_BYTES + 1];
    int64_t max_age_s;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static bool g_curl_ok;

static void curl_init_once(void)
{
    g_curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

int64_t http_now_ms(const http_tier *t)
{
    return (int64_t)uv_now(t->uv);
}

const http_counters *http_tier_counters(const http_tier *t)
{
    return &t->ctr;
}

/* ------------------------------------------------------------- requests */

static void req_unlink(http_req *r)
{
    http_tier *t = r->t;
    if (r->prev)
        r->prev->next = r->next;
    else if (t->head == r)
        t->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_free_cb(uv_handle_t *h)
{
    http_req *r = h->data;
    free(r->url);
    free(r->method);
    free(r->body);
    free(r->resp);
    free(r);
}

static void req_release(http_req *r)
{
    if (r->easy) {
        curl_multi_remove_handle(r->t->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    uv_close((uv_handle_t *)&r->retry, req_free_cb); /* frees r once the timer is closed */
}

static void req_complete(http_req *r, http_outcome outcome, long status)
{
    req_unlink(r);
    http_response resp = {.outcome = outcome, .status = status, .body = r->resp ? r->resp : "",
                          .body_len = r->resp_len, .max_age_s = r->max_age_s, .attempts = r->attempts};
    memcpy(resp.etag, r->etag, sizeof resp.etag);
    resp.elapsed_ms = (int64_t)uv_now(r->t->uv) - r->started;
    if (outcome != HTTP_DONE)
        atomic_fetch_add(&r->t->ctr.failures, 1);
    if (r->easy) { /* removed before the callback: it may start new requests */
        curl_multi_remove_handle(r->t->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    r->done(r->arg, &resp);
    req_release(r);
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    http_req *r = userp;
    size_t len = size * n;
    if (len > r->max_body - r->resp_len) {
        r->too_large = true;
        return 0; /* CURLE_WRITE_ERROR: the transfer stops here */
    }
    if (r->resp_len + len + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + len + 1)
            cap *= 2;
        if (cap > r->max_body + 1)
            cap = r->max_body + 1;
        char *p = realloc(r->resp, cap);
        if (!p)
            return 0;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    r->resp[r->resp_len] = '\0';
    return len;
}

/* Trims the header value [p, end). */
static void trim(const char **p, const char **end)
{
    while (*p < *end && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t' || (*end)[-1] == '\r' || (*end)[-1] == '\n'))
        (*end)--;
}

/* max-age=N in a Cache-Control value; no-store / no-cache mean 0. */
static void parse_cache_control(http_req *r, const char *p, const char *end)
{
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end, *s = p;
        trim(&s, &e);
        size_t n = (size_t)(e - s);
        if (n == 8 && strncasecmp(s, "no-store", 8) == 0)
            r->max_age_s = 0;
        else if (n == 8 && strncasecmp(s, "no-cache", 8) == 0)
            r->max_age_s = 0;
        else if (n > 8 && strncasecmp(s, "max-age=", 8) == 0 && r->max_age_s != 0) {
            int64_t v = 0;
            bool ok = true;
            for (const char *q = s + 8; q < e; q++) {
                if (*q < '0' || *q > '9' || v > 100000000) {
                    ok = false;
                    break;
                }
                v = v * 10 + (*q - '0');
            }
            if (ok)
                r->max_age_s = v;
        }
        p = comma ? comma + 1 : end;
    }
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    http_req *r = userp;
    size_t len = size * n;
    const char *end = data + len;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) { /* a new response (after 1xx): start over */
        r->etag[0] = '\0';
        r->max_age_s = -1;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1, *ve = end;
    trim(&v, &ve);
    if (name_len == 4 && strncasecmp(data, "etag", 4) == 0) {
        size_t vl = (size_t)(ve - v);
        if (vl <= HTTP_MAX_ETAG_BYTES) {
            memcpy(r->etag, v, vl);
            r->etag[vl] = '\0';
        } else {
            r->etag[0] = '\0';
        }
    } else if (name_len == 13 && strncasecmp(data, "cache-control", 13) == 0) {
        parse_cache_control(r, v, ve);
    }
    return len;
}

static bool req_attach(http_req *r)
{
    http_tier *t = r->t;
    int64_t left = r->deadline - (int64_t)uv_now(t->uv);
    if (left < 1)
        left = 1;
    CURL *e = curl_easy_init();
    if (!e)
        return false;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, r->url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)left) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)left) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, r) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HEADERDATA, r) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, r) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs) == CURLE_OK;
    if (ok && strcmp(r->method, "POST") == 0)
        ok = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "") == CURLE_OK;
    if (!ok || curl_multi_add_handle(t->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return false;
    }
    r->easy = e;
    r->attempts++;
    r->resp_len = 0;
    r->too_large = false;
    r->etag[0] = '\0';
    r->max_age_s = -1;
    return true;
}

static void on_retry(uv_timer_t *h)
{
    http_req *r = h->data;
    if (r->t->stopping || !req_attach(r))
        req_complete(r, r->t->stopping ? HTTP_FAILED_STOPPED : HTTP_FAILED_CONNECT, 0);
}

static void check_done(http_tier *t)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(t->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        http_req *r = (http_req *)(void *)priv;
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK) {
            req_complete(r, HTTP_DONE, status);
            continue;
        }
        if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
            /* Nothing was sent: a retry is safe, if it fits before the deadline. */
            uint32_t rnd = 0;
            RAND_bytes((unsigned char *)&rnd, sizeof rnd);
            int64_t pause = HTTP_RETRY_MIN_MS + (int64_t)(rnd % (HTTP_RETRY_MAX_MS - HTTP_RETRY_MIN_MS + 1));
            int64_t now = (int64_t)uv_now(t->uv);
            if (r->attempts <= HTTP_MAX_RETRIES && !t->stopping && now + pause + 10 < r->deadline) {
                curl_multi_remove_handle(t->multi, e);
                curl_easy_cleanup(e);
                r->easy = NULL;
                atomic_fetch_add(&t->ctr.retries, 1);
                uv_timer_start(&r->retry, on_retry, (uint64_t)pause, 0);
                continue;
            }
            req_complete(r, HTTP_FAILED_CONNECT, 0);
        } else if (rc == CURLE_OPERATION_TIMEDOUT) {
            req_complete(r, HTTP_FAILED_TIMEOUT, 0);
        } else if (r->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
            req_complete(r, HTTP_FAILED_TOO_LARGE, 0);
        } else {
            req_complete(r, HTTP_FAILED_TRANSPORT, 0);
        }
    }
}

bool http_start(http_tier *t, const http_request *q, http_done_fn done, void *arg)
{
    if (t->stopping)
        return false;
    http_req *r = calloc(1, sizeof *r);
    if (!r)
        return false;
    r->t = t;
    r->done = done;
    r->arg = arg;
    r->max_body = q->max_body;
    r->url = strdup(q->url);
    r->method = strdup(q->method);
    r->body_len = q->body_len;
    r->body = q->body ? malloc(q->body_len + 1) : NULL;
    bool ok = r->url && r->method && (!q->body || r->body);
    if (ok && r->body) {
        memcpy(r->body, q->body, q->body_len);
        r->body[q->body_len] = '\0';
    }
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    struct curl_slist *h = ok ? curl_slist_append(NULL, "Expect:") : NULL;
    ok = ok && h;
    for (size_t i = 0; ok && i < HTTP_MAX_HEADERS && q->headers[i]; i++) {
        struct curl_slist *n = curl_slist_append(h, q->headers[i]);
        if (!n)
            ok = false;
        else
            h = n;
    }
    r->hdrs = h;
    r->started = (int64_t)uv_now(t->uv);
    r->deadline = r->started + (q->timeout_ms > 0 ? q->timeout_ms : 1);
    uv_timer_init(t->uv, &r->retry);
    r->retry.data = r;
    if (!ok || !req_attach(r)) {
        curl_slist_free_all(r->hdrs);
        r->hdrs = NULL;
        uv_close((uv_handle_t *)&r->retry, req_free_cb);
        return false;
    }
    r->next = t->head;
    if (t->head)
        t->head->prev = r;
    t->head = r;
    atomic_fetch_add(&t->ctr.requests, 1);
    /* No kick here: curl_multi_add_handle asked for a 0 ms timeout (on_timer), so libcurl
     * starts the transfer on the next loop iteration and done never runs before this
     * returns (callers register state after starting a request). */
    return true;
}

/* ------------------------------------------------------- libcurl <-> libuv */

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *sc = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(sc->t->multi, sc->fd, flags, &running);
    check_done(sc->t);
}

static void sock_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void sock_close(http_tier *t, sock_ctx *sc)
{
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        t->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    uv_poll_stop(&sc->poll);
    uv_close((uv_handle_t *)&sc->poll, sock_free_cb);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    http_tier *t = userp;
    sock_ctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            sock_close(t, sc);
            if (t->multi)
                curl_multi_assign(t->multi, s, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc)
            return -1;
        sc->fd = s;
        sc->t = t;
        if (uv_poll_init_socket(t->uv, &sc->poll, s) != 0) {
            free(sc);
            return -1;
        }
        sc->poll.data = sc;
        sc->next = t->socks;
        if (t->socks)
            t->socks->prev = sc;
        t->socks = sc;
        curl_multi_assign(t->multi, s, sc);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&sc->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *h)
{
    http_tier *t = h->data;
    int running;
    curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(t);
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    http_tier *t = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&t->timer);
    else
        uv_timer_start(&t->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ------------------------------------------------------------- lifetime */

typedef struct start_ctx {
    http_tier *t;
    bool ok;
} start_ctx;

static void start_on_loop(void *arg)
{
    start_ctx *s = arg;
    http_tier *t = s->t;
    t->multi = curl_multi_init();
    if (!t->multi)
        return;
    uv_timer_init(t->uv, &t->timer);
    t->timer.data = t;
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    s->ok = true;
}

iam_status http_tier_start(io_loop *loop, http_tier **out)
{
    pthread_once(&g_curl_once, curl_init_once);
    if (!g_curl_ok)
        return IAM_E_INTERNAL;
    http_tier *t = calloc(1, sizeof *t);
    if (!t)
        return IAM_E_NOMEM;
    t->loop = loop;
    t->uv = io_loop_uv(loop);
    start_ctx s = {t, false};
    if (!io_loop_run_sync(loop, start_on_loop, &s) || !s.ok) {
        if (t->multi)
            curl_multi_cleanup(t->multi);
        free(t);
        return IAM_E_INTERNAL;
    }
    *out = t;
    return IAM_OK;
}

static void stop_on_loop(void *arg)
{
    http_tier *t = arg;
    t->stopping = true;
    while (t->head) /* each completion may not start new requests (stopping) */
        req_complete(t->head, HTTP_FAILED_STOPPED, 0);
    CURLM *m = t->multi;
    t->multi = NULL; /* REMOVE callbacks during the cleanup must not touch it */
    curl_multi_cleanup(m); /* closes the cached connections */
    while (t->socks)
        sock_close(t, t->socks);
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, NULL);
}

void http_tier_stop(http_tier *t)
{
    if (t && !t->stopping)
        io_loop_run_sync(t->loop, stop_on_loop, t);
}

void http_tier_free(http_tier *t)
{
    free(t);
}
