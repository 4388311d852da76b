/*
 * redis.h — the Redis tier's connections, on the client's I/O thread (hiredis async API on
 * the libuv loop): a command connection for batches of commands sent together (one round
 * trip) and a subscriber connection for the invalidation channel. Both reconnect by
 * themselves with capped exponential backoff and jitter. Knows nothing of tokens.
 *
 * Deadlines: every batch is answered (done called once) within the configured timeout:
 * with the replies, or with ok=false on an error reply, a timeout, a lost connection, or
 * when the tier cannot currently serve (disconnected, or suspect after a timeout until a
 * probe comes back) — the latter at once, without queueing behind a dead server.
 */
#ifndef IAM_NET_REDIS_H
#define IAM_NET_REDIS_H

#include "internal.h"
#include "net/loop.h"
#include "net/redis_url.h"

#include <hiredis/hiredis.h>
#include <stdatomic.h>

#define REDIS_MAX_BATCH 4
/* Backoff between connection attempts: doubles from the minimum to the maximum. */
#define REDIS_BACKOFF_MIN_MS 50
#define REDIS_BACKOFF_MAX_MS 2000
/* How often the subscription is confirmed alive (a repeated SUBSCRIBE, answered even on a
 * quiet channel), and how long a confirmation may take before the subscription is
 * declared lost. */
#define REDIS_HEARTBEAT_MS 1000
/* The most elements a reply may announce. Every reply this tier reads has at most three
 * (a pub/sub message); hiredis 0.14 allocates an array's element table when its header
 * arrives, so a server that is not Redis announcing *2000000000 would cost 16 GB before a
 * single element came. A larger reply fails its connection (as a protocol error). */
#define REDIS_MAX_REPLY_ELEMENTS 64

typedef struct redis_tier redis_tier;

typedef struct redis_events {
    /* A message on the channel (loop thread). */
    void (*message)(void *arg, const char *msg, size_t len);
    /* The subscription became live (true) or was lost (false) (loop thread). */
    void (*subscription)(void *arg, bool live);
    void *arg;
} redis_events;

typedef struct redis_counters {
    _Atomic uint64_t round_trips, errors, reconnects;
    _Atomic uint64_t direct;    /* round trips made on the direct lane (of round_trips) */
    _Atomic bool connected, subscribed;
} redis_counters;

/**
 * Starts connecting (asynchronously; the first batches may fail fast until connected).
 * channel may be NULL (no subscriber).
 */
iam_status redis_tier_start(io_loop *loop, const redis_url *u, int64_t timeout_ms, const char *channel,
                            const redis_events *ev, int direct_max, redis_tier **out);
/** Closes both connections, failing every batch in flight; blocks until done. Must not be
 *  called on the loop thread. Batches submitted afterwards fail at once. */
void redis_tier_stop(redis_tier *t);
/** Frees the tier once the loop has stopped (io_loop_stop). */
void redis_tier_free(redis_tier *t);
const redis_counters *redis_tier_counters(const redis_tier *t);

/* A reply, copied out of hiredis (which frees its own after the callback). */
typedef struct redis_value {
    int type;           /* REDIS_REPLY_STRING, _INTEGER, _NIL, _STATUS, _ERROR, _ARRAY */
    long long integer;
    char *str;          /* STRING/STATUS/ERROR: the bytes, NUL-terminated; else NULL */
    size_t len;
} redis_value;

/* ok is true when every command of the batch was answered in time; values then holds the n
 * replies (valid during the call), error replies included (type REDIS_REPLY_ERROR): what an
 * error means is the caller's to decide. */
typedef void (*redis_done_fn)(void *arg, bool ok, const redis_value *values, size_t n);

typedef struct redis_batch redis_batch;

/** A batch whose completion is done(arg, …) on the loop thread; done NULL: fire and forget. */
redis_batch *redis_batch_new(redis_done_fn done, void *arg);
/** Formats a command into the batch now (on the caller's thread). False on OOM or when
 *  the batch is full. */
bool redis_batch_add(redis_batch *b, int argc, const char **argv, const size_t *argvlen);
/** Sends the batch (from any thread); takes ownership. done runs exactly once. */
void redis_submit(redis_tier *t, redis_batch *b);
/** Frees a batch never submitted. */
void redis_batch_free(redis_batch *b);
/** Marks a batch the direct lane must not overtake (set before submitting): a write whose
 *  effect a later read must see — a DEL of records, a revocation key. */
void redis_batch_order(redis_batch *b);

/*
 * The direct lane, for callers that block anyway (never the loop thread): the batch's round
 * trip is made on the calling thread, on a blocking connection of a small pool (at most
 * direct_max, opened on first use; PING-checked when opened), within the tier's timeout
 * (poll with the time left before every read). It skips two thread hand-offs per call.
 *
 * True: done has been called on this thread and the batch freed — with ok=false when the
 * lane failed (connect, I/O, deadline), which also keeps the lane closed for a backoff
 * (REDIS_BACKOFF_MIN_MS doubling to _MAX_MS). False: the batch is untouched; submit it —
 * the lane is off (direct_max 0), closing, in backoff, every connection is in use, the
 * command connection is down, or a batch marked with redis_batch_order is still unanswered:
 * the lane never overtakes those (a DEL queued by an invalidation is executed before a GET
 * sent after it). Other batches (record stores, reads, publishes) do not hold it up.
 */
bool redis_direct(redis_tier *t, redis_batch *b);

#endif
