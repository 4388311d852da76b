/*
 * test_loop.c — the I/O thread (src/net/loop.c): tasks run on it in order, and it takes
 * none of the host's asynchronous signals. SIGPIPE matters most: hiredis writes with
 * write(), so a Redis server closing a connection raises SIGPIPE on the thread that writes;
 * a signal raised on the I/O thread must stay blocked there, never reach the host's
 * handler (or its default action, which kills the process).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "net/loop.h"

static atomic_int g_pipes, g_usr1s;

static void on_signal(int sig)
{
    atomic_fetch_add(sig == SIGPIPE ? &g_pipes : &g_usr1s, 1);
}

static void count(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

typedef struct probe {
    sigset_t mask;       /* the loop thread's signal mask */
    bool on_loop;        /* the task ran on the loop thread */
    io_loop *l;
} probe;

static void raise_on_loop(void *arg)
{
    probe *p = arg;
    p->on_loop = io_loop_is_current(p->l);
    pthread_sigmask(SIG_BLOCK, NULL, &p->mask);
    raise(SIGPIPE); /* as a write() to a closed socket would, on this thread */
    raise(SIGUSR1);
}

static void test_loop_thread_takes_no_signals(void **state)
{
    (void)state;
    count(SIGPIPE);
    count(SIGUSR1);
    sigset_t before, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    probe p = {0};
    assert_int_equal(io_loop_start(&p.l, NULL, NULL, 0), IAM_OK);
    assert_true(io_loop_run_sync(p.l, raise_on_loop, &p));
    io_loop_stop(p.l);
    assert_true(p.on_loop);
    /* raised on the loop thread, blocked there: the host's handlers never ran */
    assert_int_equal(atomic_load(&g_pipes), 0);
    assert_int_equal(atomic_load(&g_usr1s), 0);
    assert_true(sigismember(&p.mask, SIGPIPE));
    assert_true(sigismember(&p.mask, SIGINT));
    assert_true(sigismember(&p.mask, SIGTERM));
    /* faults stay deliverable (a crash on the loop thread must still be a crash) */
    assert_false(sigismember(&p.mask, SIGSEGV));
    assert_false(sigismember(&p.mask, SIGBUS));
    assert_false(sigismember(&p.mask, SIGABRT));
    /* the caller's own mask is what it was */
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    for (int s = 1; s < 32; s++)
        assert_int_equal(sigismember(&before, s), sigismember(&after, s));
    /* and a signal on the caller's thread still reaches the host's handler */
    raise(SIGUSR1);
    assert_int_equal(atomic_load(&g_usr1s), 1);
}

typedef struct seq {
    int order[8];
    int n;
} seq;

typedef struct step {
    seq *s;
    int id;
} step;

static void record_step(void *arg)
{
    step *st = arg;
    st->s->order[st->s->n++] = st->id;
}

static void test_loop_tasks_in_order(void **state)
{
    (void)state;
    io_loop *l = NULL;
    assert_int_equal(io_loop_start(&l, NULL, NULL, 0), IAM_OK);
    seq s = {0};
    step st[8];
    for (int i = 0; i < 8; i++) {
        st[i] = (step){&s, i};
        assert_true(i == 7 ? io_loop_run_sync(l, record_step, &st[i]) : io_loop_post(l, record_step, &st[i]));
    }
    io_loop_stop(l);
    assert_int_equal(s.n, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(s.order[i], i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_thread_takes_no_signals),
        cmocka_unit_test(test_loop_tasks_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
