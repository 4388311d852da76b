/* hiredis_uv.c — see hiredis_uv.h. */
#include "net/hiredis_uv.h"

#include <stdlib.h>

typedef struct hu_conn {
    redisAsyncContext *ac; /* NULL once hiredis has let go (cleanup) */
    uv_poll_t poll;
    int events;            /* what hiredis waits for: UV_READABLE | UV_WRITABLE */
} hu_conn;

static void on_poll(uv_poll_t *h, int status, int events)
{
    hu_conn *p = h->data;
    if (status < 0) {
        /* A socket error; libuv has stopped the handle. hiredis finds the error itself in
         * the handler of what it was waiting for: a connect in progress checks SO_ERROR
         * (it waits for writable), an established connection's read fails. */
        events = p->events ? p->events : UV_READABLE;
    }
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
    /* still alive (the error was transient): watch again what hiredis waits for */
    if (status < 0 && p->ac && p->events)
        uv_poll_start(&p->poll, p->events, on_poll);
}

static void update(void *arg, int add, int del)
{
    hu_conn *p = arg;
    p->events = (p->events | add) & ~del;
    if (p->events)
        uv_poll_start(&p->poll, p->events, on_poll); /* also re-arms after a poll error */
    else
        uv_poll_stop(&p->poll);
}

static void add_read(void *arg)
{
    update(arg, UV_READABLE, 0);
}

static void del_read(void *arg)
{
    update(arg, 0, UV_READABLE);
}

static void add_write(void *arg)
{
    update(arg, UV_WRITABLE, 0);
}

static void del_write(void *arg)
{
    update(arg, 0, UV_WRITABLE);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void cleanup(void *arg)
{
    hu_conn *p = arg;
    p->ac = NULL; /* hiredis is freeing the context: on_poll must not touch it */
    uv_close((uv_handle_t *)&p->poll, on_closed);
}

int hiredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return REDIS_ERR;
    hu_conn *p = calloc(1, sizeof *p);
    if (!p)
        return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}
