/*
 * test_loop.c — the I/O thread (src/net/loop.c): tasks run on it in order, and SIGPIPE is
 * blocked on it, and only SIGPIPE. hiredis writes with write(), so a Redis server closing a
 * connection raises SIGPIPE on the thread that writes; raised on the I/O thread it must stay
 * blocked there, never reach the host's handler (or its default action, which kills the
 * process). Other signals stay as the host has them: a process started from a callback
 * inherits the thread's mask, and must still be stoppable by SIGTERM.
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

static void test_loop_thread_blocks_sigpipe_only(void **state)
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
    /* SIGPIPE raised on the loop thread stayed blocked there: the host's handler never ran */
    assert_int_equal(atomic_load(&g_pipes), 0);
    assert_true(sigismember(&p.mask, SIGPIPE));
    /* every other signal is as the creating thread had it */
    for (int s = 1; s < 32; s++)
        if (s != SIGPIPE)
            assert_int_equal(sigismember(&p.mask, s), sigismember(&before, s));
    assert_int_equal(atomic_load(&g_usr1s), 1); /* SIGUSR1 on the loop thread was handled */
    /* the caller's own mask is what it was */
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    for (int s = 1; s < 32; s++)
        assert_int_equal(sigismember(&before, s), sigismember(&after, s));
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
        cmocka_unit_test(test_loop_thread_blocks_sigpipe_only),
        cmocka_unit_test(test_loop_tasks_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
