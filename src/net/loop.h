/*
 * loop.h — the client's one I/O thread: a libuv loop that network tiers run on. Callers
 * never block on it: they post tasks; results come back through callbacks.
 */
#ifndef IAM_NET_LOOP_H
#define IAM_NET_LOOP_H

#include "internal.h"

typedef struct io_loop io_loop;
typedef void (*io_task_fn)(void *arg);

/** Starts the thread, with SIGPIPE blocked on it (see loop.c). tick (may be NULL) runs on it
 *  every tick_ms. */
iam_status io_loop_start(io_loop **out, io_task_fn tick, void *tick_arg, uint64_t tick_ms);
/** Queues fn(arg) to run on the loop thread; false when the loop is stopping or on OOM. */
bool io_loop_post(io_loop *l, io_task_fn fn, void *arg);
/** Posts fn(arg) and waits until it has run; false when the loop is stopping or on OOM.
 *  Must not be called on the loop thread. */
bool io_loop_run_sync(io_loop *l, io_task_fn fn, void *arg);
/** The libuv loop, for handles the tiers own (use on the loop thread only). */
struct uv_loop_s *io_loop_uv(io_loop *l);
/** True when called on the loop thread. */
bool io_loop_is_current(const io_loop *l);
/** Runs queued tasks, stops the loop, joins the thread, frees. */
void io_loop_stop(io_loop *l);

#endif
