/* redis.c — the Redis tier's connections (see redis.h). Everything here but
 * redis_batch_new/add/free, redis_submit, redis_direct (the direct lane, on the caller's
 * thread) and redis_tier_start/stop runs on the loop thread. */
#include "net/redis.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <time.h>

#include "net/hiredis_uv.h"
#include <hiredis/async.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define HOUSEKEEPING_MS 20

typedef struct redis_conn {
    redis_tier *t;
    redisAsyncContext *ac;
    bool subscriber;
    bool connected;       /* the connect callback reported success */
    uint64_t opened_at;   /* uv_now when the attempt started */
    uint64_t retry_at;    /* next attempt (when ac is NULL) */
    uint64_t backoff_ms;
} redis_conn;

struct redis_batch {
    struct redis_batch *prev, *next; /* the pending list, in deadline order */
    redis_tier *t;
    redis_done_fn done;
    void *arg;
    size_t n, received, outstanding;
    bool linked, completed, failed;
    bool barrier; /* the direct lane waits for it (redis_batch_order) */
    bool counted; /* counted in the tier's barriers until completed */
    uint64_t sent_at, deadline;
    char *cmd[REDIS_MAX_BATCH];
    size_t cmd_len[REDIS_MAX_BATCH];
    redis_value vals[REDIS_MAX_BATCH];
};

struct redis_tier {
    io_loop *loop;
    uv_loop_t *uv;
    redis_url url;
    uint64_t timeout_ms;
    char *channel;
    redis_events ev;
    redis_conn cmd, sub;
    uv_timer_t timer;
    uv_check_t flush;   /* writes queued commands right after the loop's poll phase */
    bool dirty;
    redis_batch *head, *tail;
    bool stopping;
    /* command connection health: suspect after a timeout until a reply comes back */
    bool suspect;
    uint64_t suspect_since;
    uint64_t last_reply_at; /* uv_now of the last reply on the command connection */
    bool probe_out;
    /* subscription */
    bool sub_live;
    bool hb_out;
    uint64_t hb_sent;
    redis_counters ctr;
    /* ordering batches submitted and not completed (read by the direct lane, any thread) */
    _Atomic long barriers;
    /* the direct lane: idle blocking connections, under dlock */
    pthread_mutex_t dlock;
    struct direct_conn *didle;
    int dopen, dmax;
    uint64_t dbackoff_ms;
    _Atomic uint64_t dretry_at; /* CLOCK_MONOTONIC ms: the lane is not used before */
    _Atomic bool dclosed;
};

typedef struct direct_conn {
    redisContext *ctx;
    struct direct_conn *next;
} direct_conn;

/* ------------------------------------------------------------------ batches */

redis_batch *redis_batch_new(redis_done_fn done, void *arg)
{
    redis_batch *b = calloc(1, sizeof *b);
    if (b) {
        b->done = done;
        b->arg = arg;
    }
    return b;
}

bool redis_batch_add(redis_batch *b, int argc, const char **argv, const size_t *argvlen)
{
    if (b->n >= REDIS_MAX_BATCH)
        return false;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || !cmd)
        return false;
    b->cmd[b->n] = cmd;
    b->cmd_len[b->n] = (size_t)len;
    b->n++;
    return true;
}

void redis_batch_order(redis_batch *b)
{
    b->barrier = true;
}

void redis_batch_free(redis_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->cmd[i]);
        free(b->vals[i].str);
    }
    free(b);
}

static void unlink_batch(redis_tier *t, redis_batch *b)
{
    if (!b->linked)
        return;
    if (b->prev)
        b->prev->next = b->next;
    else
        t->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        t->tail = b->prev;
    b->prev = b->next = NULL;
    b->linked = false;
}

/* Calls done once. The batch itself lives until hiredis has answered (or dropped) every
 * command sent, since hiredis still holds it as the callbacks' privdata. */
static void complete(redis_batch *b, bool ok)
{
    if (b->completed)
        return;
    b->completed = true;
    if (b->counted) {
        b->counted = false;
        atomic_fetch_sub(&b->t->barriers, 1);
    }
    if (b->done)
        b->done(b->arg, ok, b->vals, b->n);
}

static void fail_now(redis_batch *b)
{
    atomic_fetch_add(&b->t->ctr.errors, 1);
    complete(b, false);
    redis_batch_free(b);
}

static void copy_reply(redis_value *v, const redisReply *r)
{
    v->type = r->type;
    v->integer = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) {
        v->str = malloc(r->len + 1);
        if (v->str) {
            memcpy(v->str, r->str, r->len);
            v->str[r->len] = '\0';
            v->len = r->len;
        }
    }
}

static void on_batch_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redis_batch *b = privdata;
    redis_tier *t = b->t;
    redisReply *r = reply;
    size_t i = b->received++;
    if (!r) {
        b->failed = true; /* the connection went away */
    } else {
        t->suspect = false; /* the server answers */
        t->cmd.backoff_ms = 0; /* and the connection serves: the next loss starts afresh */
        t->last_reply_at = uv_now(t->uv);
        if (i < b->n && !b->completed)
            copy_reply(&b->vals[i], r);
        /* An error reply is an answer (the caller decides what it means); only a copy that
         * failed for memory makes the batch fail. */
        if (i < b->n && !b->completed && !b->vals[i].str &&
            (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR))
            b->failed = true;
    }
    if (--b->outstanding == 0) {
        unlink_batch(t, b);
        if (!b->completed) {
            atomic_fetch_add(&t->ctr.round_trips, 1);
            if (b->failed)
                atomic_fetch_add(&t->ctr.errors, 1);
            complete(b, !b->failed);
        }
        redis_batch_free(b);
    }
}

static void send_batch(void *arg)
{
    redis_batch *b = arg;
    redis_tier *t = b->t;
    if (t->stopping || !t->cmd.ac || t->suspect) { /* a connecting context buffers */
        fail_now(b); /* at once: never queue behind a server that is not answering */
        return;
    }
    b->sent_at = uv_now(t->uv);
    b->deadline = b->sent_at + t->timeout_ms;
    b->linked = true;
    b->prev = t->tail;
    if (t->tail)
        t->tail->next = b;
    else
        t->head = b;
    t->tail = b;
    for (size_t i = 0; i < b->n; i++) {
        if (redisAsyncFormattedCommand(t->cmd.ac, on_batch_reply, b, b->cmd[i], b->cmd_len[i]) != REDIS_OK) {
            /* only while the context is being torn down: the commands already queued will
             * be answered with NULL; account for the rest here */
            b->failed = true;
            b->received += b->n - i;
            if (b->outstanding == 0) {
                unlink_batch(t, b);
                fail_now(b);
            }
            return;
        }
        b->outstanding++;
    }
    t->dirty = true;
}

/* Runs after each poll phase, i.e. after the tasks posted by callers were turned into
 * commands: writes them now instead of waiting a loop iteration for the socket's
 * writable event (hiredis's libuv adapter writes only on that event). */
static void on_flush(uv_check_t *h)
{
    redis_tier *t = h->data;
    if (t->dirty && t->cmd.ac && t->cmd.connected) {
        t->dirty = false;
        redisAsyncHandleWrite(t->cmd.ac);
    }
}

void redis_submit(redis_tier *t, redis_batch *b)
{
    b->t = t;
    if (b->n == 0) { /* nothing to ask: answered at once, never left to a deadline */
        complete(b, true);
        redis_batch_free(b);
        return;
    }
    if (b->barrier) {
        b->counted = true;
        atomic_fetch_add(&t->barriers, 1);
    }
    if (!io_loop_post(t->loop, send_batch, b)) {
        /* the loop is stopping: fail here, on the caller's thread */
        atomic_fetch_add(&t->ctr.errors, 1);
        complete(b, false);
        redis_batch_free(b);
    }
}

/* -------------------------------------------------------------- checked replies */

/* hiredis's own reply objects, checked as they are built, so that a server that is not Redis
 * (or a hostile one) cannot turn a reply into a crash or a hang; a refused reply fails the
 * reader, and with it the connection, like any protocol error:
 *  - an array announcing more than REDIS_MAX_REPLY_ELEMENTS (hiredis 0.14 allocates the
 *    element table at the header: *2000000000 cost 16 GB and seconds);
 *  - on an asynchronous connection, a reply no command waits for that is not for the
 *    subscription: hiredis 0.14 asserts on it, aborting the host. (Its own handling of an
 *    unsolicited error reply, e.g. "max number of clients", drops the connection as well.)
 *  - on a subscribed connection, an array that is not a pub/sub reply's shape: hiredis 0.14
 *    asserts on that too (kind and channel strings, an integer count for an unsubscribe);
 *    the tier needs three elements, kind and channel strings, and a string or integer last.
 * The defaults are hiredis's private functions: taken from a reader of its own, once. */
static redisReplyObjectFunctions hiredis_fns, checked_fns;
static pthread_once_t checked_once = PTHREAD_ONCE_INIT;

typedef enum { TO_COMMAND, TO_NOBODY, TO_SUBSCRIPTION } reply_dest;

/* Where the reply this task belongs to goes. privdata is the asynchronous context (NULL for
 * a blocking one, whose replies always answer a command). */
static reply_dest destination(const redisReadTask *task)
{
    const redisAsyncContext *ac = task->privdata;
    if (!ac || ac->replies.head)
        return TO_COMMAND; /* pending regular callbacks get their replies first */
    return (ac->c.flags & REDIS_SUBSCRIBED) ? TO_SUBSCRIPTION : TO_NOBODY;
}

/* May an object of this type be built here? kind: a REDIS_REPLY_* type. */
static bool allowed(const redisReadTask *task, int kind)
{
    reply_dest d = destination(task);
    if (d == TO_COMMAND)
        return true;
    if (d == TO_NOBODY)
        return task->parent != NULL; /* only the top-level object is refused: nothing waits */
    if (!task->parent) /* the subscription: arrays are replies to check; others go nowhere */
        return true;
    if (task->parent->parent)
        return false; /* nothing nested in a pub/sub reply */
    if (task->idx < 2)
        return kind == REDIS_REPLY_STRING; /* the kind, the channel */
    if (kind == REDIS_REPLY_INTEGER)
        return true;
    if (kind != REDIS_REPLY_STRING)
        return false;
    /* a string last: not for an unsubscribe, whose last element hiredis reads as a count */
    const redisReply *parent = task->parent->obj;
    const redisReply *k = parent && parent->element ? parent->element[0] : NULL;
    if (!k || !k->str)
        return false;
    const char *kind_name = k->str + (k->len > 0 && (k->str[0] == 'p' || k->str[0] == 'P'));
    return strcasecmp(kind_name, "unsubscribe") != 0;
}

static void *checked_string(const redisReadTask *task, char *str, size_t len)
{
    return allowed(task, REDIS_REPLY_STRING) ? hiredis_fns.createString(task, str, len) : NULL;
}

static void *checked_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > REDIS_MAX_REPLY_ELEMENTS || !allowed(task, REDIS_REPLY_ARRAY))
        return NULL;
    if (!task->parent && elements != 3 && destination(task) == TO_SUBSCRIPTION)
        return NULL; /* (p)subscribe, (p)unsubscribe and message replies have three */
    return hiredis_fns.createArray(task, elements);
}

static void *checked_integer(const redisReadTask *task, long long value)
{
    return allowed(task, REDIS_REPLY_INTEGER) ? hiredis_fns.createInteger(task, value) : NULL;
}

static void *checked_nil(const redisReadTask *task)
{
    return allowed(task, REDIS_REPLY_NIL) ? hiredis_fns.createNil(task) : NULL;
}

static void checked_init(void)
{
    redisReader *r = redisReaderCreate();
    if (!r)
        return; /* out of memory: readers stay unchecked */
    hiredis_fns = *r->fn;
    redisReaderFree(r);
    checked_fns = hiredis_fns;
    checked_fns.createString = checked_string;
    checked_fns.createArray = checked_array;
    checked_fns.createInteger = checked_integer;
    checked_fns.createNil = checked_nil;
}

/* ac: the asynchronous context the reader belongs to, or NULL (a blocking one). */
static void check_replies(redisReader *r, redisAsyncContext *ac)
{
    pthread_once(&checked_once, checked_init);
    if (r && r->fn && hiredis_fns.createArray && r->fn->createArray == hiredis_fns.createArray) {
        r->fn = &checked_fns;
        r->privdata = ac;
    }
}

/* -------------------------------------------------------------- the direct lane */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits until fd is ready for events or the deadline passes. A signal taken by the calling
 * thread (the host's: a profiler's SIGPROF, any handler) interrupts poll() whatever
 * SA_RESTART says; it is waited again with the time left, never taken for a failure. */
static bool direct_wait(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return false;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, (int)(deadline - now));
        if (r > 0)
            return true;
        if (r == 0 || errno != EINTR)
            return false;
    }
}

/* A connected blocking socket to the tier's server by the deadline, or -1. The lane connects
 * itself rather than through redisConnectWithTimeout: hiredis 0.14 fails a connect whose
 * poll() a signal interrupted, and leaves the descriptor inheritable. */
static int direct_connect_addr(int family, const struct sockaddr *addr, socklen_t len, uint64_t deadline)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int fl = fcntl(fd, F_GETFL);
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        goto fail;
    if (connect(fd, addr, len) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) /* EAGAIN (unix): backlog full */
            goto fail;
        if (!direct_wait(fd, POLLOUT, deadline))
            goto fail;
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
            goto fail;
    }
    if (fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        goto fail;
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
fail:
    close(fd);
    return -1;
}

static int direct_connect(const redis_tier *t, uint64_t deadline)
{
    if (t->url.unix_socket) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(t->url.path) >= sizeof a.sun_path)
            return -1;
        memcpy(a.sun_path, t->url.path, strlen(t->url.path) + 1);
        return direct_connect_addr(AF_UNIX, (const struct sockaddr *)&a, sizeof a, deadline);
    }
    /* IPv4 addresses first, then IPv6, as hiredis's own connect (the I/O thread's) orders
     * them; each address but the last gets an equal share of the time left, so that one that
     * drops SYNs (a dual-stack name whose ::1 nobody serves) cannot spend the whole deadline. */
    char port[8];
    snprintf(port, sizeof port, "%d", t->url.port);
    struct addrinfo *res[2] = {NULL, NULL};
    static const int families[2] = {AF_INET, AF_INET6};
    size_t total = 0;
    for (int f = 0; f < 2; f++) {
        struct addrinfo hints = {.ai_family = families[f], .ai_socktype = SOCK_STREAM};
        if (getaddrinfo(t->url.host, port, &hints, &res[f]) != 0) /* a blocking lookup, as hiredis */
            res[f] = NULL;
        for (struct addrinfo *ai = res[f]; ai; ai = ai->ai_next)
            total++;
    }
    int fd = -1;
    size_t tried = 0;
    for (int f = 0; f < 2 && fd < 0; f++)
        for (struct addrinfo *ai = res[f]; ai && fd < 0; ai = ai->ai_next, tried++) {
            uint64_t now = mono_ms();
            if (now >= deadline)
                break;
            uint64_t until = tried + 1 < total ? now + (deadline - now) / (total - tried) : deadline;
            fd = direct_connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, until);
        }
    for (int f = 0; f < 2; f++)
        if (res[f])
            freeaddrinfo(res[f]);
    return fd;
}

/* Sends the formatted commands, all of them, by the deadline. With MSG_NOSIGNAL: a server
 * that closed the connection (a restart) is an error here, never a SIGPIPE, whose default
 * action would kill the host — hiredis's own redisBufferWrite uses write(), and this runs on
 * the caller's thread, whose signal mask is the host's. */
static bool direct_send(int fd, char *const *cmd, const size_t *len, size_t n, uint64_t deadline)
{
    struct iovec iov[REDIS_MAX_BATCH];
    if (n > REDIS_MAX_BATCH)
        return false;
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){.iov_base = cmd[i], .iov_len = len[i]};
    struct iovec *v = iov;
    size_t left = n;
    while (left > 0) {
        struct msghdr m = {.msg_iov = v, .msg_iovlen = left};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* a blocking socket whose send timeout is the tier's timeout: EAGAIN is that
             * timeout (or a full buffer); wait for room in the time left */
            if ((errno != EAGAIN && errno != EWOULDBLOCK) || !direct_wait(fd, POLLOUT, deadline))
                return false;
            continue;
        }
        size_t sent = (size_t)w;
        while (left > 0 && sent >= v->iov_len) {
            sent -= v->iov_len;
            v++;
            left--;
        }
        if (left > 0) {
            v->iov_base = (char *)v->iov_base + sent;
            v->iov_len -= sent;
        }
    }
    return true;
}

/* Sends the commands, then reads n replies, polling with the time left before each read:
 * the whole exchange ends by the deadline. Replies in r[0..n) (caller frees) on success. */
static bool direct_exchange(redisContext *ctx, char *const *cmd, const size_t *len, size_t n,
                            redisReply **r, uint64_t deadline, uint64_t timeout_ms)
{
    if (!direct_send(ctx->fd, cmd, len, n, deadline))
        return false;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        void *reply = NULL;
        for (;;) {
            if (redisReaderGetReply(ctx->reader, &reply) != REDIS_OK)
                goto fail;
            if (reply)
                break;
            uint64_t now = mono_ms();
            if (now >= deadline)
                goto fail;
            /* The first read blocks on the socket itself (its receive timeout is the
             * tier's timeout, and the write took microseconds): one system call, as a
             * bare blocking round trip. A reply arriving in pieces waits in poll with
             * the time left. */
            if (!first || deadline - now < timeout_ms) {
                if (!direct_wait(ctx->fd, POLLIN, deadline))
                    goto fail;
            }
            first = false;
            if (redisBufferRead(ctx) != REDIS_OK)
                goto fail;
        }
        r[i] = reply;
        /* Bytes left after the last reply: the server answered more than was asked (not
         * Redis, or out of step). Whatever they are, they would be read as the answer to the
         * next command on this connection: it is dropped instead. */
        if (i + 1 == n && ctx->reader->pos < ctx->reader->len) {
            i++;
            goto fail;
        }
        continue;
    fail:
        while (i > 0) {
            freeReplyObject(r[--i]);
            r[i] = NULL;
        }
        return false;
    }
    return true;
}

/* One formatted command and its reply: OK unless it failed or answered an error. */
static bool direct_setup(redis_tier *t, redisContext *ctx, uint64_t deadline, int argc, const char **argv,
                         bool *refused)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    if (len < 0 || !cmd)
        return false;
    size_t l = (size_t)len;
    redisReply *r = NULL;
    bool answered = direct_exchange(ctx, &cmd, &l, 1, &r, deadline, t->timeout_ms);
    bool ok = answered && r->type != REDIS_REPLY_ERROR;
    if (answered && !ok)
        *refused = true;
    if (r)
        freeReplyObject(r);
    free(cmd);
    return ok;
}

/* A new blocking connection, authenticated, on the right database, and answering (a PING:
 * a server refusing clients says so here, not in the first real reply). *refused: the server
 * answered one of these with an error (a missing or wrong password: NOAUTH, WRONGPASS). */
static redisContext *direct_open(redis_tier *t, uint64_t deadline, bool *refused)
{
    uint64_t now = mono_ms();
    if (now >= deadline)
        return NULL;
    int fd = direct_connect(t, deadline);
    if (fd < 0)
        return NULL;
    redisContext *ctx = redisConnectFd(fd); /* takes the descriptor (closed by redisFree) */
    if (!ctx) {
        close(fd);
        return NULL;
    }
    if (ctx->err)
        goto fail;
    check_replies(ctx->reader, NULL);
    struct timeval tv = {.tv_sec = (time_t)(t->timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(t->timeout_ms % 1000) * 1000};
    if (redisSetTimeout(ctx, tv) != REDIS_OK)
        goto fail;
    char db[24];
    snprintf(db, sizeof db, "%ld", t->url.db);
    const char *auth2[] = {"AUTH", t->url.user, t->url.password};
    const char *auth1[] = {"AUTH", t->url.password};
    const char *select[] = {"SELECT", db};
    const char *ping[] = {"PING"};
    if (t->url.has_password && !(t->url.user[0] ? direct_setup(t, ctx, deadline, 3, auth2, refused)
                                                : direct_setup(t, ctx, deadline, 2, auth1, refused)))
        goto fail;
    if (t->url.db && !direct_setup(t, ctx, deadline, 2, select, refused))
        goto fail;
    if (!direct_setup(t, ctx, deadline, 1, ping, refused))
        goto fail;
    return ctx;
fail:
    if (ctx)
        redisFree(ctx);
    return NULL;
}

static void direct_close_idle(redis_tier *t);

/* A pooled connection must have nothing to read before it is used: stray bytes (a server
 * that answered once too often, late) would be taken for the next answer, and an EOF means
 * the server closed it (a restart). One poll() with no wait. */
static bool direct_clean(const redisContext *ctx)
{
    if (ctx->reader->pos < ctx->reader->len)
        return false;
    struct pollfd pfd = {.fd = ctx->fd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, 0);
    while (r < 0 && errno == EINTR);
    return r == 0;
}

/* A connection back to the pool (or closed: failed, or the tier is closing). */
static void direct_release(redis_tier *t, direct_conn *dc, bool ok)
{
    pthread_mutex_lock(&t->dlock);
    if (ok) {
        t->dbackoff_ms = 0;
        if (!atomic_load(&t->dclosed)) {
            dc->next = t->didle;
            t->didle = dc;
            dc = NULL;
        }
    } else {
        t->dbackoff_ms = t->dbackoff_ms ? t->dbackoff_ms * 2 : REDIS_BACKOFF_MIN_MS;
        if (t->dbackoff_ms > REDIS_BACKOFF_MAX_MS)
            t->dbackoff_ms = REDIS_BACKOFF_MAX_MS;
        atomic_store(&t->dretry_at, mono_ms() + t->dbackoff_ms);
    }
    if (dc)
        t->dopen--;
    pthread_mutex_unlock(&t->dlock);
    if (dc) {
        if (dc->ctx)
            redisFree(dc->ctx);
        free(dc);
    }
}

bool redis_direct(redis_tier *t, redis_batch *b)
{
    if (t->dmax <= 0 || b->n == 0 || atomic_load(&t->dclosed) || io_loop_is_current(t->loop) ||
        !atomic_load(&t->ctr.connected) || atomic_load(&t->barriers) > 0)
        return false;
    uint64_t now = mono_ms();
    if (now < atomic_load(&t->dretry_at))
        return false;
    pthread_mutex_lock(&t->dlock);
    direct_conn *dc = t->didle;
    if (dc) {
        t->didle = dc->next;
    } else if (t->dopen < t->dmax && (dc = calloc(1, sizeof *dc))) {
        t->dopen++;
    }
    pthread_mutex_unlock(&t->dlock);
    if (!dc)
        return false;
    uint64_t deadline = now + t->timeout_ms;
    b->t = t;
    redisReply *r[REDIS_MAX_BATCH] = {0};
    bool answered = false, refused = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (dc->ctx && !direct_clean(dc->ctx)) {
            redisFree(dc->ctx);
            dc->ctx = NULL;
        }
        bool fresh = !dc->ctx;
        if (fresh && !(dc->ctx = direct_open(t, deadline, &refused)))
            break;
        if (direct_exchange(dc->ctx, b->cmd, b->cmd_len, b->n, r, deadline, t->timeout_ms)) {
            answered = true;
            break;
        }
        redisFree(dc->ctx);
        dc->ctx = NULL;
        if (fresh)
            break; /* a connection opened just now failed: it is the server */
        /* A connection that sat idle may have been closed by the server meanwhile (a
         * restart): the others idled as long, so they go too, and the batch is tried once
         * more on a fresh connection, in the time left. Every batch is safe to repeat
         * (GET, EXISTS, SET, DEL, PUBLISH of an invalidation). */
        direct_close_idle(t);
    }
    if (refused) {
        /* The server answered the lane's setup with an error (NOAUTH: a password missing from
         * the URL): the batch goes through the I/O thread instead, whose connection gets the
         * same error as a reply, so the caller is told that Redis answered an error rather
         * than that it could not be reached. The lane backs off meanwhile. */
        direct_release(t, dc, false);
        return false;
    }
    bool ok = answered;
    for (size_t i = 0; ok && i < b->n; i++) {
        copy_reply(&b->vals[i], r[i]);
        if (!b->vals[i].str && (r[i]->type == REDIS_REPLY_STRING || r[i]->type == REDIS_REPLY_STATUS ||
                                r[i]->type == REDIS_REPLY_ERROR))
            ok = false; /* out of memory for the copy: the batch fails, the connection is fine */
    }
    for (size_t i = 0; i < b->n; i++)
        if (r[i])
            freeReplyObject(r[i]);
    direct_release(t, dc, answered);
    atomic_fetch_add(&t->ctr.round_trips, 1);
    atomic_fetch_add(&t->ctr.direct, 1);
    if (!ok)
        atomic_fetch_add(&t->ctr.errors, 1);
    complete(b, ok);
    redis_batch_free(b);
    return true;
}

static void direct_close_idle(redis_tier *t)
{
    pthread_mutex_lock(&t->dlock);
    direct_conn *dc = t->didle;
    t->didle = NULL;
    while (dc) {
        direct_conn *next = dc->next;
        redisFree(dc->ctx);
        free(dc);
        t->dopen--;
        dc = next;
    }
    pthread_mutex_unlock(&t->dlock);
}

/* -------------------------------------------------------------- connections */

static void conn_open(redis_conn *c);

static void schedule_retry(redis_conn *c)
{
    redis_tier *t = c->t;
    c->ac = NULL;
    c->connected = false;
    if (c->backoff_ms == 0)
        c->backoff_ms = REDIS_BACKOFF_MIN_MS;
    else if ((c->backoff_ms *= 2) > REDIS_BACKOFF_MAX_MS)
        c->backoff_ms = REDIS_BACKOFF_MAX_MS;
    uint32_t r = 0;
    RAND_bytes((unsigned char *)&r, sizeof r);
    /* full jitter on half the delay: many nodes restarting together do not stampede */
    c->retry_at = uv_now(t->uv) + c->backoff_ms / 2 + (r % (c->backoff_ms / 2 + 1));
}

static void sub_lost(redis_tier *t)
{
    atomic_store(&t->ctr.subscribed, false);
    t->hb_out = false;
    if (t->sub_live) {
        t->sub_live = false;
        if (t->ev.subscription)
            t->ev.subscription(t->ev.arg, false);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_conn *c = ac->data;
    if (status != REDIS_OK) { /* hiredis frees the context after this returns */
        atomic_fetch_add(&c->t->ctr.errors, 1);
        schedule_retry(c);
        return;
    }
    c->connected = true;
    if (!c->subscriber) {
        c->t->suspect = false;
        atomic_store(&c->t->ctr.connected, true);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    redis_conn *c = ac->data;
    redis_tier *t = c->t;
    if (c->ac != ac)
        return;
    if (c->subscriber)
        sub_lost(t);
    else
        atomic_store(&t->ctr.connected, false);
    if (!t->stopping) {
        atomic_fetch_add(&t->ctr.errors, 1);
        schedule_retry(c);
    } else {
        c->ac = NULL;
        c->connected = false;
    }
}

/* AUTH/SELECT: an error means this connection cannot serve; drop it and retry later. */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR)
        redisAsyncDisconnect(ac);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redis_tier *t = privdata;
    redisReply *r = reply;
    if (!r || t->stopping)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = r->element[0];
    if (kind->len == 9 && strncasecmp(kind->str, "subscribe", 9) == 0) {
        t->hb_out = false;
        t->sub.backoff_ms = 0;
        if (!t->sub_live) {
            t->sub_live = true;
            atomic_store(&t->ctr.subscribed, true);
            if (t->ev.subscription)
                t->ev.subscription(t->ev.arg, true);
        }
    } else if (kind->len == 7 && strncasecmp(kind->str, "message", 7) == 0 &&
               r->element[2]->type == REDIS_REPLY_STRING) {
        if (t->ev.message)
            t->ev.message(t->ev.arg, r->element[2]->str, r->element[2]->len);
    }
}

static void conn_open(redis_conn *c)
{
    redis_tier *t = c->t;
    redisAsyncContext *ac = t->url.unix_socket ? redisAsyncConnectUnix(t->url.path)
                                               : redisAsyncConnect(t->url.host, t->url.port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        atomic_fetch_add(&t->ctr.errors, 1);
        schedule_retry(c);
        return;
    }
    check_replies(ac->c.reader, ac);
    /* not inherited by the host's children (hiredis 0.14 leaves it inheritable) */
    fcntl(ac->c.fd, F_SETFD, FD_CLOEXEC);
    if (hiredis_uv_attach(ac, t->uv) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->connected = false;
    c->opened_at = uv_now(t->uv);
    atomic_fetch_add(&t->ctr.reconnects, 1);
    if (t->url.has_password) {
        if (t->url.user[0])
            redisAsyncCommand(ac, on_setup_reply, NULL, "AUTH %s %s", t->url.user, t->url.password);
        else
            redisAsyncCommand(ac, on_setup_reply, NULL, "AUTH %s", t->url.password);
    }
    if (t->url.db && !c->subscriber)
        redisAsyncCommand(ac, on_setup_reply, NULL, "SELECT %ld", t->url.db);
    if (c->subscriber) {
        redisAsyncCommand(ac, on_sub_reply, t, "SUBSCRIBE %s", t->channel);
        t->hb_out = true;
        t->hb_sent = uv_now(t->uv);
    }
}

/* Drops a connection that does not answer; it reconnects after the backoff. */
static void conn_drop(redis_conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    bool was_connected = c->connected;
    schedule_retry(c); /* clears c->ac first: on_disconnect then ignores this context */
    if (c->subscriber)
        sub_lost(c->t);
    else
        atomic_store(&c->t->ctr.connected, false);
    atomic_fetch_add(&c->t->ctr.errors, 1);
    (void)was_connected;
    redisAsyncFree(ac); /* fails every command still waiting on it */
}

static void on_probe_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redis_tier *t = privdata;
    t->probe_out = false;
    if (reply) {
        t->suspect = false;
        t->cmd.backoff_ms = 0;
    }
}

static void housekeeping(uv_timer_t *timer)
{
    redis_tier *t = timer->data;
    uint64_t now = uv_now(t->uv);
    /* deadlines: the list is in deadline order (one timeout for all) */
    while (t->head && t->head->deadline <= now) {
        redis_batch *b = t->head;
        unlink_batch(t, b);
        atomic_fetch_add(&t->ctr.errors, 1);
        /* Suspect only a silent server: one that answered nothing since this batch went
         * out. A busy one (replies still flowing, this batch just queued behind many)
         * fails this batch alone. */
        if (!t->suspect && t->last_reply_at <= b->sent_at) {
            t->suspect = true;
            t->suspect_since = now;
        }
        complete(b, false); /* freed when hiredis answers or drops its commands */
    }
    uint64_t connect_limit = t->timeout_ms * 4 > 1000 ? t->timeout_ms * 4 : 1000;
    redis_conn *conns[2] = {&t->cmd, &t->sub};
    for (int i = 0; i < (t->channel ? 2 : 1); i++) {
        redis_conn *c = conns[i];
        if (!c->ac && now >= c->retry_at)
            conn_open(c);
        else if (c->ac && !c->connected && now - c->opened_at > connect_limit)
            conn_drop(c); /* hiredis 0.14 has no connect timeout of its own */
    }
    /* a suspect command connection: probe it; drop it when it stays silent */
    if (t->cmd.ac && t->cmd.connected && t->suspect) {
        if (now - t->suspect_since > connect_limit) {
            conn_drop(&t->cmd);
            t->probe_out = false;
        } else if (!t->probe_out &&
                   redisAsyncCommand(t->cmd.ac, on_probe_reply, t, "PING") == REDIS_OK) {
            t->probe_out = true;
        }
    }
    /* the subscription's heartbeat: a repeated SUBSCRIBE is confirmed even on a quiet channel */
    if (t->sub.ac && t->sub.connected) {
        uint64_t limit = REDIS_HEARTBEAT_MS + connect_limit;
        if (t->hb_out && now - t->hb_sent > limit) {
            conn_drop(&t->sub);
        } else if (!t->hb_out && t->sub_live && now - t->hb_sent >= REDIS_HEARTBEAT_MS) {
            if (redisAsyncCommand(t->sub.ac, on_sub_reply, t, "SUBSCRIBE %s", t->channel) == REDIS_OK) {
                t->hb_out = true;
                t->hb_sent = now;
            }
        }
    }
}

typedef struct start_args {
    redis_tier *t;
} start_args;

static void start_on_loop(void *arg)
{
    redis_tier *t = arg;
    uv_timer_init(t->uv, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, housekeeping, HOUSEKEEPING_MS, HOUSEKEEPING_MS);
    uv_check_init(t->uv, &t->flush);
    t->flush.data = t;
    uv_check_start(&t->flush, on_flush);
    conn_open(&t->cmd);
    if (t->channel)
        conn_open(&t->sub);
}

iam_status redis_tier_start(io_loop *loop, const redis_url *u, int64_t timeout_ms, const char *channel,
                            const redis_events *ev, int direct_max, redis_tier **out)
{
    redis_tier *t = calloc(1, sizeof *t);
    if (!t)
        return IAM_E_NOMEM;
    pthread_mutex_init(&t->dlock, NULL);
    t->dmax = direct_max > 0 ? direct_max : 0;
    t->loop = loop;
    t->uv = io_loop_uv(loop);
    t->url = *u;
    t->timeout_ms = (uint64_t)timeout_ms;
    t->channel = channel ? strdup(channel) : NULL;
    if (ev)
        t->ev = *ev;
    t->cmd.t = t->sub.t = t;
    t->sub.subscriber = true;
    /* Published before the loop can run a callback of this tier: the owner's pointer to it
     * (read by those callbacks, e.g. a message handler) is then written before the task
     * that starts the connections is posted (posting synchronizes). */
    *out = t;
    if ((channel && !t->channel) || !io_loop_run_sync(loop, start_on_loop, t)) {
        *out = NULL;
        free(t->channel);
        pthread_mutex_destroy(&t->dlock);
        free(t);
        return IAM_E_NOMEM;
    }
    return IAM_OK;
}

static void stop_on_loop(void *arg)
{
    redis_tier *t = arg;
    t->stopping = true;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, NULL);
    uv_check_stop(&t->flush);
    uv_close((uv_handle_t *)&t->flush, NULL);
    while (t->head) {
        redis_batch *b = t->head;
        unlink_batch(t, b);
        complete(b, false);
    }
    /* Write what was queued (fire-and-forget records, publishes) before closing: best
     * effort, one non-blocking write; replies are not awaited. */
    if (t->cmd.ac && t->cmd.connected)
        redisAsyncHandleWrite(t->cmd.ac);
    redis_conn *conns[2] = {&t->cmd, &t->sub};
    for (int i = 0; i < 2; i++)
        if (conns[i]->ac) {
            redisAsyncContext *ac = conns[i]->ac;
            conns[i]->ac = NULL;
            conns[i]->connected = false;
            redisAsyncFree(ac);
        }
    atomic_store(&t->ctr.connected, false);
    atomic_store(&t->ctr.subscribed, false);
}

void redis_tier_stop(redis_tier *t)
{
    if (!t)
        return;
    atomic_store(&t->dclosed, true); /* connections in use close when released */
    direct_close_idle(t);
    io_loop_run_sync(t->loop, stop_on_loop, t);
}

void redis_tier_free(redis_tier *t)
{
    if (!t)
        return;
    atomic_store(&t->dclosed, true);
    direct_close_idle(t);
    pthread_mutex_destroy(&t->dlock);
    free(t->channel);
    free(t);
}

const redis_counters *redis_tier_counters(const redis_tier *t)
{
    return &t->ctr;
}
