/* loop.c — the I/O thread (see loop.h). */
#include "net/loop.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <uv.h>

typedef struct io_task {
    struct io_task *next;
    io_task_fn fn;
    void *arg;
} io_task;

struct io_loop {
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t timer;
    pthread_t thread;
    pthread_mutex_t lock;
    io_task *head, *tail;
    bool stopping;
    io_task_fn tick;
    void *tick_arg;
    uint64_t tick_ms;
};

static void run_tasks(uv_async_t *h)
{
    io_loop *l = h->data;
    pthread_mutex_lock(&l->lock);
    io_task *t = l->head;
    l->head = l->tail = NULL;
    bool stopping = l->stopping;
    pthread_mutex_unlock(&l->lock);
    while (t) {
        io_task *n = t->next;
        t->fn(t->arg);
        free(t);
        t = n;
    }
    if (stopping) {
        uv_close((uv_handle_t *)&l->wake, NULL);
        if (l->tick)
            uv_close((uv_handle_t *)&l->timer, NULL);
    }
}

static void on_tick(uv_timer_t *t)
{
    io_loop *l = t->data;
    l->tick(l->tick_arg);
}

static void *thread_main(void *arg)
{
    io_loop *l = arg;
    uv_run(&l->loop, UV_RUN_DEFAULT);
    return NULL;
}

iam_status io_loop_start(io_loop **out, io_task_fn tick, void *tick_arg, uint64_t tick_ms)
{
    io_loop *l = calloc(1, sizeof *l);
    if (!l)
        return IAM_E_NOMEM;
    if (uv_loop_init(&l->loop) != 0) {
        free(l);
        return IAM_E_INTERNAL;
    }
    pthread_mutex_init(&l->lock, NULL);
    uv_async_init(&l->loop, &l->wake, run_tasks);
    l->wake.data = l;
    l->tick = tick;
    l->tick_arg = tick_arg;
    l->tick_ms = tick_ms;
    if (tick) {
        uv_timer_init(&l->loop, &l->timer);
        l->timer.data = l;
        uv_timer_start(&l->timer, on_tick, tick_ms, tick_ms);
        uv_unref((uv_handle_t *)&l->timer);
    }
    /* The I/O thread blocks SIGPIPE, and only it: hiredis writes with write(), so a Redis
     * server that closes a connection (a restart) would raise SIGPIPE on this thread, whose
     * default action kills the host; blocked, it stays pending here and the write fails with
     * EPIPE. The mask is inherited from the creating thread, so there is no window. Other
     * signals are left alone: blocking them all would also block them in every process a
     * callback (on_invalidation, an asynchronous completion) starts, since a child inherits
     * its thread's mask — a child that SIGTERM could not stop. */
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &saved);
    int created = pthread_create(&l->thread, NULL, thread_main, l);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (created != 0) {
        uv_close((uv_handle_t *)&l->wake, NULL);
        if (tick)
            uv_close((uv_handle_t *)&l->timer, NULL);
        uv_run(&l->loop, UV_RUN_DEFAULT);
        uv_loop_close(&l->loop);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return IAM_E_INTERNAL;
    }
    *out = l;
    return IAM_OK;
}

bool io_loop_post(io_loop *l, io_task_fn fn, void *arg)
{
    io_task *t = malloc(sizeof *t);
    if (!t)
        return false;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&l->lock);
    if (l->stopping) {
        pthread_mutex_unlock(&l->lock);
        free(t);
        return false;
    }
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    pthread_mutex_unlock(&l->lock);
    uv_async_send(&l->wake);
    return true;
}

typedef struct sync_task {
    io_task_fn fn;
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} sync_task;

static void run_sync_task(void *arg)
{
    sync_task *t = arg;
    t->fn(t->arg);
    pthread_mutex_lock(&t->lock);
    t->done = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

bool io_loop_run_sync(io_loop *l, io_task_fn fn, void *arg)
{
    sync_task t = {.fn = fn, .arg = arg, .done = false};
    pthread_mutex_init(&t.lock, NULL);
    pthread_cond_init(&t.cond, NULL);
    bool posted = io_loop_post(l, run_sync_task, &t);
    if (posted) {
        pthread_mutex_lock(&t.lock);
        while (!t.done)
            pthread_cond_wait(&t.cond, &t.lock);
        pthread_mutex_unlock(&t.lock);
    }
    pthread_mutex_destroy(&t.lock);
    pthread_cond_destroy(&t.cond);
    return posted;
}

struct uv_loop_s *io_loop_uv(io_loop *l)
{
    return &l->loop;
}

bool io_loop_is_current(const io_loop *l)
{
    return pthread_equal(pthread_self(), l->thread);
}

void io_loop_stop(io_loop *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    pthread_mutex_unlock(&l->lock);
    uv_async_send(&l->wake);
    pthread_join(l->thread, NULL);
    uv_loop_close(&l->loop);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
