/* l1.c — the sharded in-process cache (see l1.h). */
#include "cache/l1.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

uint64_t l1_hash(const l1_cache *c, const char *token, size_t len)
{
    /* The tail is the signature: unpredictable for any token that verifies. The head and
     * the length separate tokens with equal tails; see L1_MAX_CHAIN for crafted ones. */
    const uint64_t k = 0x9E3779B97F4A7C15ULL;
    uint64_t a = c->seed ^ (len * k), b = ~c->seed;
    if (len <= 80) {
        size_t i = 0;
        for (; i + 8 <= len; i += 8) {
            uint64_t w;
            memcpy(&w, token + i, 8);
            a = (a ^ w) * k;
            a ^= a >> 31;
        }
        uint64_t tail = 0;
        memcpy(&tail, token + i, len - i);
        b = (b ^ tail) * k;
    } else {
        uint64_t w[10];
        memcpy(w, token, 16);
        memcpy(w + 2, token + len - 64, 64);
        a = (a ^ w[0]) * k;
        b = (b ^ w[1]) * k;
        for (int i = 2; i < 10; i += 2) {
            a = (a ^ w[i]) * k;
            b = (b ^ w[i + 1]) * k;
            a ^= a >> 31;
            b ^= b >> 29;
        }
    }
    return mix(a ^ mix(b));
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void latency_record(iam_latency *h, uint64_t ns)
{
    int b = ns ? 63 - __builtin_clzll(ns) : 0;
    if (b >= IAM_LATENCY_BUCKETS)
        b = IAM_LATENCY_BUCKETS - 1;
    h->buckets[b]++;
    h->count++;
    h->sum_ns += ns;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n && p < ((size_t)1 << 40))
        p <<= 1;
    return p;
}

iam_status l1_init(l1_cache *c, size_t max_entries, size_t max_bytes, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->seed = seed;
    size_t n = L1_MIN_SHARDS;
    while (n < L1_MAX_SHARDS && n * 16 < max_entries)
        n <<= 1;
    c->nshards = n;
    c->shards = aligned_alloc(64, sizeof(l1_shard) * n);
    if (!c->shards)
        return IAM_E_NOMEM;
    memset(c->shards, 0, sizeof(l1_shard) * n);
    c->max_count = max_entries;
    c->max_bytes = max_bytes;
    atomic_init(&c->count, 0);
    atomic_init(&c->bytes, 0);
    size_t per_count = max_entries / n + 1;
    size_t nb = pow2_at_least(per_count < (1u << 20) ? per_count : (1u << 20));
    for (size_t i = 0; i < n; i++) {
        l1_shard *sh = &c->shards[i];
        pthread_mutex_init(&sh->lock, NULL);
        sh->lru.next = sh->lru.prev = &sh->lru;
        sh->owner = c;
        sh->mask = nb - 1;
        sh->buckets = calloc(nb, sizeof *sh->buckets);
        if (!sh->buckets) {
            l1_destroy(c);
            return IAM_E_NOMEM;
        }
    }
    return IAM_OK;
}

static inline l1_entry *entry_of(l1_link *l)
{
    return (l1_entry *)(void *)l; /* link is the first member */
}

static inline void list_remove(l1_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
}

static inline void list_push_front(l1_link *head, l1_link *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}

static void unlink_entry(l1_shard *sh, l1_entry *e)
{
    l1_entry **pp = &sh->buckets[e->hash & sh->mask];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    list_remove(&e->link);
    sh->count--;
    sh->bytes -= e->bytes;
    atomic_fetch_sub_explicit(&sh->owner->count, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&sh->owner->bytes, e->bytes, memory_order_relaxed);
}

/* Unlinks under the lock; the caller frees after unlocking (user release may free). */
static void free_entry(l1_entry *e)
{
    iam_user_release(e->user);
    free(e);
}

void l1_destroy(l1_cache *c)
{
    if (!c->shards)
        return;
    for (size_t i = 0; i < c->nshards; i++) {
        l1_shard *sh = &c->shards[i];
        if (sh->buckets) {
            for (l1_link *l = sh->lru.next; l && l != &sh->lru;) {
                l1_link *n = l->next;
                free_entry(entry_of(l));
                l = n;
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(c->shards);
    c->shards = NULL;
}

static inline l1_shard *shard_of(l1_cache *c, uint64_t hash)
{
    return &c->shards[(hash >> 40) & (c->nshards - 1)]; /* bits apart from the bucket's */
}

/* Matches an entry under the shard lock: L1_HIT (user retained), L1_REFUSED, or L1_LEAD
 * when none answers; an expired match is unlinked into *stale for the caller to free
 * outside the lock. */
static l1_outcome match_entry_locked(l1_shard *sh, uint64_t hash, uint64_t ctx, const char *token,
                                     size_t len, int64_t now_ms, bool timed, uint64_t t0,
                                     iam_user **user, iam_status *refusal, l1_entry **stale)
{
    for (l1_entry *e = sh->buckets[hash & sh->mask]; e; e = e->chain) {
        if (e->hash != hash || e->ctx != ctx || e->len != len || memcmp(e->token, token, len) != 0)
            continue;
        if (now_ms >= e->expires_ms) { /* expiry is checked on every hit */
            unlink_entry(sh, e);
            sh->evicted_expired++;
            *stale = e;
            return L1_LEAD;
        }
        /* No reordering on a hit (it would write the shard's list head on every hit):
         * a referenced mark, written only when clear, gives the entry a second
         * chance at eviction. */
        if (!e->referenced)
            e->referenced = true;
        if (e->user) {
            *user = iam_user_retain(e->user);
            sh->hits++;
            if (timed)
                latency_record(&sh->hit_latency, now_ns() - t0);
            return L1_HIT;
        }
        *refusal = e->refusal;
        sh->negative_hits++;
        return L1_REFUSED;
    }
    return L1_LEAD;
}

l1_outcome l1_peek(l1_cache *c, uint64_t hash, uint64_t ctx, const char *token, size_t len,
                   int64_t now_ms, iam_user **user, iam_status *refusal)
{
    l1_shard *sh = shard_of(c, hash);
    l1_entry *stale = NULL;
    pthread_mutex_lock(&sh->lock);
    l1_outcome r = match_entry_locked(sh, hash, ctx, token, len, now_ms, false, 0, user, refusal, &stale);
    pthread_mutex_unlock(&sh->lock);
    if (stale)
        free_entry(stale);
    return r;
}

l1_outcome l1_lookup(l1_cache *c, uint64_t hash, uint64_t ctx, const char *token, size_t len,
                     int64_t now_ms, bool use_entries, l1_waiter *waiter, l1_flight *flight,
                     iam_user **user, iam_status *refusal)
{
    l1_shard *sh = shard_of(c, hash);
    bool timed = (atomic_fetch_add_explicit(&sh->sample, 1, memory_order_relaxed) & 63) == 0;
    uint64_t t0 = timed ? now_ns() : 0;
    l1_entry *stale = NULL;
    pthread_mutex_lock(&sh->lock);
    if (use_entries) {
        l1_outcome r = match_entry_locked(sh, hash, ctx, token, len, now_ms, timed, t0, user, refusal, &stale);
        if (r != L1_LEAD) {
            pthread_mutex_unlock(&sh->lock);
            return r;
        }
    }
    for (l1_flight *f = sh->flights; f; f = f->next) {
        if (f->hash == hash && f->ctx == ctx && f->len == len && memcmp(f->token, token, len) == 0) {
            if (!waiter) {
                pthread_mutex_unlock(&sh->lock);
                if (stale)
                    free_entry(stale);
                return L1_BUSY;
            }
            waiter->next = f->waiters;
            f->waiters = waiter;
            sh->coalesced++;
            pthread_mutex_unlock(&sh->lock);
            if (stale)
                free_entry(stale);
            return L1_JOINED;
        }
    }
    /* A miss: register the caller's flight in the same critical section, so that a second
     * request for the token from now on joins it instead of resolving again. */
    flight->hash = hash;
    flight->ctx = ctx;
    flight->len = len;
    flight->token = token;
    flight->waiters = NULL;
    flight->next = sh->flights;
    sh->flights = flight;
    sh->misses++;
    pthread_mutex_unlock(&sh->lock);
    if (stale)
        free_entry(stale);
    return L1_LEAD;
}

static bool over_bounds(l1_cache *c, size_t need_bytes)
{
    return atomic_load_explicit(&c->count, memory_order_relaxed) + 1 > c->max_count ||
           atomic_load_explicit(&c->bytes, memory_order_relaxed) + need_bytes > c->max_bytes;
}

/* Evicts one entry from the next non-empty shard in round-robin order: oldest first, but an
 * entry hit since it was last considered goes back to the front once (CLOCK). Takes one
 * shard lock at a time and no other; returns the victim (caller frees) or NULL. */
static l1_entry *evict_one(l1_cache *c)
{
    for (size_t tries = 0; tries < c->nshards; tries++) {
        size_t i = atomic_fetch_add_explicit(&c->evict_cursor, 1, memory_order_relaxed) & (c->nshards - 1);
        l1_shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (size_t spared = 0; sh->count > 0; spared++) {
            l1_entry *e = entry_of(sh->lru.prev);
            if (e->referenced && spared < sh->count) {
                e->referenced = false;
                list_remove(&e->link);
                list_push_front(&sh->lru, &e->link);
                continue;
            }
            unlink_entry(sh, e);
            sh->evicted_capacity++;
            pthread_mutex_unlock(&sh->lock);
            return e;
        }
        pthread_mutex_unlock(&sh->lock);
    }
    return NULL;
}

/* Keeps a bucket's chain under L1_MAX_CHAIN by evicting its last (oldest-inserted) entry. */
static l1_entry *trim_chain(l1_shard *sh, size_t bucket)
{
    size_t n = 0;
    l1_entry *last = NULL;
    for (l1_entry *e = sh->buckets[bucket]; e; e = e->chain) {
        n++;
        last = e;
    }
    if (n < L1_MAX_CHAIN || !last)
        return NULL;
    unlink_entry(sh, last);
    sh->evicted_capacity++;
    last->chain = NULL;
    return last;
}

void l1_flight_move(l1_cache *c, l1_flight *from, l1_flight *to, const char *new_token)
{
    l1_shard *sh = shard_of(c, from->hash);
    pthread_mutex_lock(&sh->lock);
    *to = *from;
    to->token = new_token;
    for (l1_flight **pp = &sh->flights; *pp; pp = &(*pp)->next)
        if (*pp == from) {
            *pp = to;
            break;
        }
    pthread_mutex_unlock(&sh->lock);
}

size_t l1_cap_expiry(l1_cache *c, int64_t cap_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nshards; i++) {
        l1_shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (l1_link *l = sh->lru.next; l != &sh->lru; l = l->next) {
            l1_entry *e = entry_of(l);
            if (e->user && e->expires_ms > cap_ms) {
                e->expires_ms = cap_ms;
                n++;
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}

l1_waiter *l1_finish(l1_cache *c, l1_flight *flight, bool store, iam_user *user,
                     iam_status refusal, int64_t expires_ms, bool (*veto)(void *arg),
                     void *veto_arg)
{
    l1_shard *sh = shard_of(c, flight->hash);
    l1_entry *e = NULL, *victims = NULL, *replaced = NULL;
    if (store && flight->len + sizeof *e > c->max_bytes)
        store = false; /* could never fit */
    if (store) {
        size_t user_bytes = 0;
        if (user)
            iam_user_payload(user, &user_bytes);
        size_t bytes = sizeof *e + flight->len + (user ? 2 * user_bytes + 256 : 0);
        e = malloc(sizeof *e + flight->len);
        if (e) {
            e->hash = flight->hash;
            e->ctx = flight->ctx;
            e->len = flight->len;
            e->expires_ms = expires_ms;
            e->user = user ? iam_user_retain(user) : NULL;
            e->refusal = refusal;
            e->bytes = bytes;
            memcpy(e->token, flight->token, flight->len);
        }
    }
    /* Make room cache-wide before taking this shard's lock (evict_one locks others). */
    for (size_t tries = 0; e && over_bounds(c, e->bytes) && tries < 2 * c->nshards; tries++) {
        l1_entry *v = evict_one(c);
        if (!v)
            break;
        v->chain = victims;
        victims = v;
    }
    pthread_mutex_lock(&sh->lock);
    for (l1_flight **pp = &sh->flights; *pp; pp = &(*pp)->next)
        if (*pp == flight) {
            *pp = flight->next;
            break;
        }
    if (e && veto && veto(veto_arg)) {
        /* not cached; freed below */
    } else if (e) {
        /* An entry for the same token and context (stored by a resolution that was not
         * coalesced with this one, e.g. with caching off for a while) is replaced. */
        for (l1_entry *o = sh->buckets[e->hash & sh->mask]; o; o = o->chain)
            if (o->hash == e->hash && o->ctx == e->ctx && o->len == e->len &&
                memcmp(o->token, e->token, e->len) == 0) {
                unlink_entry(sh, o);
                replaced = o;
                break;
            }
        l1_entry *trimmed = trim_chain(sh, e->hash & sh->mask);
        if (trimmed) {
            trimmed->chain = victims;
            victims = trimmed;
        }
        /* Reserve, then check: concurrent inserts in other shards can only make this one
         * give up, never push the cache past a bound. */
        size_t cnt = atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed) + 1;
        size_t byt = atomic_fetch_add_explicit(&c->bytes, e->bytes, memory_order_relaxed) + e->bytes;
        if (cnt > c->max_count || byt > c->max_bytes) {
            atomic_fetch_sub_explicit(&c->count, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&c->bytes, e->bytes, memory_order_relaxed);
        } else {
            e->referenced = false;
            l1_entry **b = &sh->buckets[e->hash & sh->mask];
            e->chain = *b;
            *b = e;
            list_push_front(&sh->lru, &e->link);
            sh->count++;
            sh->bytes += e->bytes;
            e = NULL;
        }
    }
    l1_waiter *w = flight->waiters;
    pthread_mutex_unlock(&sh->lock);
    if (e) /* vetoed, or no room for it within the cache-wide bounds: not cached */
        free_entry(e);
    if (replaced)
        free_entry(replaced);
    while (victims) {
        l1_entry *n = victims->chain;
        free_entry(victims);
        victims = n;
    }
    return w;
}

size_t l1_remove_token(l1_cache *c, const char *token, size_t len)
{
    uint64_t hash = l1_hash(c, token, len);
    l1_shard *sh = shard_of(c, hash);
    l1_entry *removed = NULL;
    size_t n = 0;
    pthread_mutex_lock(&sh->lock);
    for (l1_entry **pp = &sh->buckets[hash & sh->mask]; *pp;) {
        l1_entry *e = *pp;
        if (e->hash == hash && e->len == len && memcmp(e->token, token, len) == 0) {
            unlink_entry(sh, e); /* rewrites *pp */
            sh->evicted_invalidated++;
            e->chain = removed;
            removed = e;
            n++;
        } else {
            pp = &e->chain;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    while (removed) {
        l1_entry *next = removed->chain;
        free_entry(removed);
        removed = next;
    }
    return n;
}

/* Walks every shard, removing entries that match; frees outside the locks. */
static size_t remove_matching(l1_cache *c, bool (*match)(const l1_entry *e, const void *arg),
                              const void *arg, bool expired_reason)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nshards; i++) {
        l1_shard *sh = &c->shards[i];
        l1_entry *removed = NULL;
        pthread_mutex_lock(&sh->lock);
        for (l1_link *l = sh->lru.next; l != &sh->lru;) {
            l1_link *next = l->next;
            l1_entry *e = entry_of(l);
            if (match(e, arg)) {
                unlink_entry(sh, e);
                if (expired_reason)
                    sh->evicted_expired++;
                else
                    sh->evicted_invalidated++;
                e->chain = removed;
                removed = e;
                n++;
            }
            l = next;
        }
        pthread_mutex_unlock(&sh->lock);
        while (removed) {
            l1_entry *next = removed->chain;
            free_entry(removed);
            removed = next;
        }
    }
    return n;
}

typedef struct user_pred {
    bool (*pred)(const iam_user *u, const void *arg);
    const void *arg;
} user_pred;

static bool match_user(const l1_entry *e, const void *arg)
{
    const user_pred *p = arg;
    return e->user && p->pred(e->user, p->arg);
}

size_t l1_remove_if(l1_cache *c, bool (*pred)(const iam_user *u, const void *arg), const void *arg)
{
    user_pred p = {pred, arg};
    return remove_matching(c, match_user, &p, false);
}

static bool match_all(const l1_entry *e, const void *arg)
{
    (void)e, (void)arg;
    return true;
}

size_t l1_remove_all(l1_cache *c)
{
    return remove_matching(c, match_all, NULL, false);
}

static bool match_expired(const l1_entry *e, const void *arg)
{
    return *(const int64_t *)arg >= e->expires_ms;
}

size_t l1_sweep(l1_cache *c, int64_t now_ms)
{
    return remove_matching(c, match_expired, &now_ms, true);
}

static void add_latency(iam_latency *to, const iam_latency *from)
{
    to->count += from->count;
    to->sum_ns += from->sum_ns;
    for (int i = 0; i < IAM_LATENCY_BUCKETS; i++)
        to->buckets[i] += from->buckets[i];
}

void l1_stats(l1_cache *c, iam_client_stats *s)
{
    for (size_t i = 0; i < c->nshards; i++) {
        l1_shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->lock);
        s->l1_hits += sh->hits;
        s->l1_negative_hits += sh->negative_hits;
        s->l1_misses += sh->misses;
        s->l1_entries += sh->count;
        s->l1_bytes += sh->bytes;
        s->l1_evictions_capacity += sh->evicted_capacity;
        s->l1_evictions_expired += sh->evicted_expired;
        s->l1_evictions_invalidated += sh->evicted_invalidated;
        s->coalesced += sh->coalesced;
        add_latency(&s->hit_latency, &sh->hit_latency);
        pthread_mutex_unlock(&sh->lock);
    }
}
