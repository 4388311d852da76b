/*
 * l1.h — the in-process cache: token (in one validation context) -> user context or a
 * remembered refusal. No I/O. Sharded: each shard has its own lock, LRU list, in-flight
 * resolutions and counters, on its own cache lines, so hits on different tokens from
 * different threads share nothing.
 *
 * Entries keep the token bytes and are matched on (context, exact bytes): the hash only
 * picks a bucket, so a collision can cost time, never a wrong answer. Tokens live only in
 * process memory — never in logs, errors, Redis or metrics.
 */
#ifndef IAM_CACHE_L1_H
#define IAM_CACHE_L1_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>

/* Shards scale with capacity: distinct tokens from different threads then rarely share a
 * shard, so their hits do not bounce one cache line between cores. */
#define L1_MIN_SHARDS 64
#define L1_MAX_SHARDS 4096
/* Entries per bucket chain at most: the hash covers the token's length, head and tail
 * (the signature), so crafted tokens differing only in the middle share a bucket; the cap
 * keeps that a bounded cost, never a wrong answer (hits compare the whole token). */
#define L1_MAX_CHAIN 8

typedef void (*l1_done_fn)(void *arg, iam_status st, iam_user *user, const iam_error *err);

/* A request waiting for another's resolution of the same token. */
typedef struct l1_waiter {
    struct l1_waiter *next;
    l1_done_fn done;
    void *arg;
} l1_waiter;

typedef struct l1_flight {
    struct l1_flight *next;
    uint64_t hash, ctx;
    size_t len;
    const char *token; /* the leader's copy, valid while the flight is registered */
    l1_waiter *waiters;
} l1_flight;

/* A link of a shard's recency list; the list's sentinel is a bare link (an entry ends in a
 * flexible array, so it cannot be embedded as one). */
typedef struct l1_link {
    struct l1_link *prev, *next;
} l1_link;

typedef struct l1_entry {
    l1_link link;                /* first: the list's links convert back by a cast */
    struct l1_entry *chain;      /* bucket chain */
    uint64_t hash, ctx;
    int64_t expires_ms;
    iam_user *user;   /* a reference; NULL for a remembered refusal */
    iam_status refusal;
    bool referenced;  /* set by hits; eviction gives such an entry a second chance (CLOCK) */
    size_t bytes;     /* accounted size */
    size_t len;
    char token[];
} l1_entry;

typedef struct l1_shard {
    _Alignas(64) pthread_mutex_t lock;
    l1_entry **buckets;
    size_t mask;
    l1_link lru; /* sentinel: most recently inserted (or spared) after it */
    size_t count, bytes; /* this shard's share (statistics; the bounds are cache-wide) */
    struct l1_cache *owner;
    l1_flight *flights;
    /* counters (under lock) */
    uint64_t hits, negative_hits, misses, coalesced;
    uint64_t evicted_capacity, evicted_expired, evicted_invalidated;
    _Atomic uint32_t sample; /* lookups, to time one in 64 hits */
    iam_latency hit_latency;
} l1_shard;

typedef struct l1_cache {
    l1_shard *shards;
    size_t nshards; /* a power of two */
    uint64_t seed;
    /* Cache-wide bounds, touched on insert and eviction only (never on a hit). An insert
     * reserves before it stores, so neither bound is ever exceeded. */
    size_t max_count, max_bytes;
    _Atomic size_t count, bytes;
    _Atomic size_t evict_cursor; /* shards are swept round-robin for victims (global CLOCK) */
} l1_cache;

typedef enum l1_outcome {
    L1_HIT,      /* *user holds a new reference */
    L1_REFUSED,  /* *refusal holds the remembered status */
    L1_JOINED,   /* the waiter was queued behind a resolution in flight */
    L1_BUSY,     /* a resolution is in flight and no waiter was given: nothing queued */
    L1_LEAD      /* nothing cached, nothing in flight: the caller resolves, then l1_finish */
} l1_outcome;

iam_status l1_init(l1_cache *c, size_t max_entries, size_t max_bytes, uint64_t seed);
void l1_destroy(l1_cache *c);

/** Keyed hash of the token (length, first 16 and last 64 bytes) that picks shard and
 * bucket; every context of one token shares a bucket (the context is compared per entry),
 * so removing a token touches one bucket. */
uint64_t l1_hash(const l1_cache *c, const char *token, size_t len);

/**
 * Looks the token up at time now_ms. use_entries false skips cached entries (coalescing
 * only). On L1_JOINED the waiter (caller-allocated, freed by the caller's done callback) is
 * queued. On L1_LEAD the caller's flight (storage owned by the caller, token must stay
 * valid) is registered in the same critical section, so later requests join it; the
 * caller must end it with l1_finish. One hit in 64 per shard is timed.
 */
l1_outcome l1_lookup(l1_cache *c, uint64_t hash, uint64_t ctx, const char *token, size_t len,
                     int64_t now_ms, bool use_entries, l1_waiter *waiter, l1_flight *flight,
                     iam_user **user, iam_status *refusal);

/** Looks the token up in the entries only (no flight, no coalescing): L1_HIT, L1_REFUSED,
 * or L1_LEAD meaning "nothing cached". Expired entries are dropped. */
l1_outcome l1_peek(l1_cache *c, uint64_t hash, uint64_t ctx, const char *token, size_t len,
                   int64_t now_ms, iam_user **user, iam_status *refusal);

/**
 * Ends the caller's resolution: stores the answer when store is true (user: a positive
 * entry, retained by the cache; otherwise a refusal) until expires_ms, unregisters the
 * flight and returns its waiters for the caller to complete outside the lock. veto (may be
 * NULL) runs under the shard lock just before storing: true cancels the store. Because an
 * invalidation removes entries under the same lock after logging itself, a veto that
 * consults the invalidation log closes the window between "decided to cache" and
 * "cached".
 */
l1_waiter *l1_finish(l1_cache *c, l1_flight *flight, bool store, iam_user *user,
                     iam_status refusal, int64_t expires_ms, bool (*veto)(void *arg),
                     void *veto_arg);

/** Moves a registered flight to new storage (the resolution continues on another thread):
 *  *to becomes the registered flight, with its waiters, and token pointing at new_token
 *  (the same bytes, owned by the caller until l1_finish). */
void l1_flight_move(l1_cache *c, l1_flight *from, l1_flight *to, const char *new_token);

/** Lowers every positive entry's expiry to at most cap_ms (the staleness bound while
 *  invalidations cannot be heard). Returns how many entries were lowered. */
size_t l1_cap_expiry(l1_cache *c, int64_t cap_ms);

/** Removes the entries of a token in every context. Returns how many. */
size_t l1_remove_token(l1_cache *c, const char *token, size_t len);
/** Removes entries for which pred(entry user, arg) is true (refusals never match). */
size_t l1_remove_if(l1_cache *c, bool (*pred)(const iam_user *u, const void *arg), const void *arg);
size_t l1_remove_all(l1_cache *c);
/** Drops expired entries. Returns how many. */
size_t l1_sweep(l1_cache *c, int64_t now_ms);

/** Adds the shards' counters into s. */
void l1_stats(l1_cache *c, iam_client_stats *s);

/** Records a duration into a latency histogram. */
void latency_record(iam_latency *h, uint64_t ns);

#endif
