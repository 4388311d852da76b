/*
 * http.h — HTTP requests on the client's I/O thread: libcurl's multi interface driven by
 * the libuv loop (curl_multi_socket_action; a uv_poll_t per socket, one uv_timer_t for
 * libcurl's timeouts). Knows nothing of tokens or of the auth service.
 *
 *   - Keep-alive: every request uses the multi handle's connection cache, so connections
 *     to the same host are reused.
 *   - Deadline: every request has one (CURLOPT_TIMEOUT_MS, connect included); completion
 *     is guaranteed by it, a retry included.
 *   - Retry: at most HTTP_MAX_RETRIES, after a jittered pause, and only when libcurl says
 *     the connection could not be made (CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST):
 *     nothing was sent, so repeating even a POST is safe; never beyond the deadline.
 *     libcurl itself retries once, transparently, a request sent on a reused keep-alive
 *     connection that turns out to be closed by the server (also nothing processed).
 *   - Bounds: a response body over the request's max_body is cut off and reported
 *     (too_large) — never buffered; only ETag and Cache-Control headers are kept.
 *   - Protocols: http and https only (also on redirects, which are not followed);
 *     CURLOPT_NOSIGNAL. Proxy: libcurl's defaults apply, so http_proxy/https_proxy/
 *     no_proxy in the environment are honoured (documented in the README).
 *   - Nothing here logs: bodies (tokens) never leave the caller's buffers.
 *
 * Threading: every function but http_tier_start/stop/free runs on the loop thread.
 */
#ifndef IAM_NET_HTTP_H
#define IAM_NET_HTTP_H

#include "internal.h"
#include "net/loop.h"

#include <stdatomic.h>

/** Most retries of a request whose connection could not be made. */
#define HTTP_MAX_RETRIES 1
/** The pause before a retry is drawn uniformly from [MIN, MAX] milliseconds. */
#define HTTP_RETRY_MIN_MS 20
#define HTTP_RETRY_MAX_MS 80
/** Longest ETag kept (a longer one is ignored: the next fetch is unconditional). */
#define HTTP_MAX_ETAG_BYTES 256
/** Most request headers a caller may add. */
#define HTTP_MAX_HEADERS 4

typedef struct http_tier http_tier;

typedef enum http_outcome {
    HTTP_DONE = 0,        /* a complete response: see status */
    HTTP_FAILED_CONNECT,  /* could not connect (refused, unreachable, unresolved) */
    HTTP_FAILED_TIMEOUT,  /* the deadline passed */
    HTTP_FAILED_TOO_LARGE,/* the body exceeded max_body */
    HTTP_FAILED_TRANSPORT,/* any other transport error (reset, bad response, TLS…) */
    HTTP_FAILED_STOPPED   /* the tier is stopping */
} http_outcome;

typedef struct http_response {
    http_outcome outcome;
    long status;          /* HTTP status when outcome is HTTP_DONE */
    const char *body;     /* NUL-terminated; valid during the callback only */
    size_t body_len;
    char etag[HTTP_MAX_ETAG_BYTES + 1]; /* "" when absent or too long */
    int64_t max_age_s;    /* Cache-Control max-age; -1 when absent; no-store/no-cache: 0 */
    int attempts;         /* connection attempts made (1 + retries) */
    int64_t elapsed_ms;
} http_response;

/** Completion, exactly once, on the loop thread. */
typedef void (*http_done_fn)(void *arg, const http_response *r);

typedef struct http_request {
    const char *method;      /* "GET" or "POST" */
    const char *url;
    const char *body;        /* POST body (copied); may be NULL */
    size_t body_len;
    const char *headers[HTTP_MAX_HEADERS + 1]; /* "Name: value", NULL-terminated (copied) */
    int64_t timeout_ms;      /* the whole request's deadline, retries included */
    size_t max_body;         /* largest response body accepted */
} http_request;

typedef struct http_counters {
    _Atomic uint64_t requests, retries, failures;
} http_counters;

/** Creates the tier on the loop (blocks until it is set up). Not on the loop thread. */
iam_status http_tier_start(io_loop *loop, http_tier **out);
/** Fails every request in flight (their callbacks run) and closes every connection;
 *  blocks until done. Not on the loop thread. Later requests fail at once. */
void http_tier_stop(http_tier *t);
/** Frees the tier once the loop has stopped. NULL is ignored. */
void http_tier_free(http_tier *t);
const http_counters *http_tier_counters(const http_tier *t);

/**
 * Starts a request (loop thread only). Returns true when done will be called later (never
 * before this returns); false
 * when it could not be started (stopping, OOM, libcurl refused the options): done is then
 * never called.
 */
bool http_start(http_tier *t, const http_request *req, http_done_fn done, void *arg);

/** The loop's clock (uv_now), in milliseconds. Loop thread only. */
int64_t http_now_ms(const http_tier *t);

#endif
