/*
 * hiredis_uv.h — hiredis's asynchronous contexts on a libuv loop: the event hooks hiredis
 * calls (add/del read/write, cleanup) mapped onto one uv_poll_t per connection.
 *
 * Why not hiredis's own adapters/libuv.h: on a socket error libuv reports a poll *error*
 * (it sees POLLERR, stops the handle and calls back with UV_EBADF), and hiredis 0.14's
 * adapter returns from that callback without telling hiredis. A connection reset by its peer
 * then looked alive until a command timed out, and a connect refused after EINPROGRESS
 * never completed at all. Here a poll error hands the socket to hiredis's own read or write
 * handling, which finds the error (SO_ERROR while connecting, the failed read afterwards)
 * and fails the connection through its callbacks, at once. (That adapter also leaked its
 * state when uv_poll_init failed.)
 */
#ifndef IAM_NET_HIREDIS_UV_H
#define IAM_NET_HIREDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/** Attaches ac to loop (the loop's thread only). REDIS_OK, or REDIS_ERR (ac untouched). */
int hiredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
