/* tcp_proxy.c — see tcp_proxy.h. */
#include "tcp_proxy.h"
#include "redis_server.h" /* rs_mono_ms */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TP_MAX_PAIRS 32

typedef struct pair {
    int client, upstream; /* -1: unused (upstream -1 with client set: answered, not relayed) */
    long long late_at;    /* answered connections: when the late extra is due (0: none) */
} pair;

struct tcp_proxy {
    int listen_fd, port, upstream_port;
    int wake[2];          /* a byte here: look at the commands */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, reset;     /* commands, under mu */
    bool refuse;          /* under mu */
    char *answer;         /* under mu: when set, new connections are answered with it */
    char *late;           /* under mu: sent late_ms after each answer (NULL: nothing) */
    int late_ms;
    int reset_done;       /* -1 while a reset is pending; then how many were reset */
    int accepted;
    pair pairs[TP_MAX_PAIRS];
};

static void pair_close(pair *q, bool rst)
{
    if (q->client >= 0) {
        if (rst) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(q->client, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(q->client);
    }
    if (q->upstream >= 0)
        close(q->upstream);
    q->client = q->upstream = -1;
}

static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Moves what is readable on from to to; false when from is closed or failed. */
static bool relay(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    for (ssize_t off = 0; off < n;) {
        ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        off += w;
    }
    return true;
}

/* Reads what the client sent and answers it with the configured bytes. */
static bool answer_once(tcp_proxy *p, int client)
{
    char buf[4096];
    ssize_t n = read(client, buf, sizeof buf);
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    pthread_mutex_lock(&p->mu);
    char *a = p->answer ? strdup(p->answer) : NULL;
    bool late = p->late != NULL;
    int late_ms = p->late_ms;
    pthread_mutex_unlock(&p->mu);
    bool ok = a && send(client, a, strlen(a), MSG_NOSIGNAL) == (ssize_t)strlen(a);
    free(a);
    for (int i = 0; ok && late && i < TP_MAX_PAIRS; i++)
        if (p->pairs[i].client == client && !p->pairs[i].late_at)
            p->pairs[i].late_at = rs_mono_ms() + late_ms;
    return ok;
}

/* Sends the late extras that are due; returns the poll timeout until the next (-1: none). */
static int send_late(tcp_proxy *p)
{
    long long now = rs_mono_ms(), next = -1;
    pthread_mutex_lock(&p->mu);
    char *late = p->late ? strdup(p->late) : NULL;
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < TP_MAX_PAIRS; i++) {
        pair *q = &p->pairs[i];
        if (q->client < 0 || !q->late_at)
            continue;
        if (q->late_at <= now) {
            if (late)
                (void)!send(q->client, late, strlen(late), MSG_NOSIGNAL);
            q->late_at = 0;
        } else if (next < 0 || q->late_at - now < next) {
            next = q->late_at - now;
        }
    }
    free(late);
    return (int)next;
}

static void *run(void *arg)
{
    tcp_proxy *p = arg;
    for (;;) {
        struct pollfd fds[2 + 2 * TP_MAX_PAIRS];
        int idx[2 + 2 * TP_MAX_PAIRS];
        int n = 0;
        fds[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
        for (int i = 0; i < TP_MAX_PAIRS; i++)
            if (p->pairs[i].client >= 0) {
                idx[n] = i;
                fds[n++] = (struct pollfd){.fd = p->pairs[i].client, .events = POLLIN};
                idx[n] = i; /* fd -1 (an answered connection): poll ignores it */
                fds[n++] = (struct pollfd){.fd = p->pairs[i].upstream, .events = POLLIN};
            }
        if (poll(fds, (nfds_t)n, send_late(p)) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents) {
            char b[64];
            (void)!read(p->wake[0], b, sizeof b);
            pthread_mutex_lock(&p->mu);
            bool stop = p->stop, reset = p->reset;
            p->reset = false;
            pthread_mutex_unlock(&p->mu);
            if (stop)
                break;
            if (reset) {
                int k = 0;
                for (int i = 0; i < TP_MAX_PAIRS; i++)
                    if (p->pairs[i].client >= 0) {
                        pair_close(&p->pairs[i], true);
                        k++;
                    }
                pthread_mutex_lock(&p->mu);
                p->reset_done = k;
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
            }
            continue; /* the fd list changed */
        }
        if (fds[1].revents & POLLIN) {
            int c = accept(p->listen_fd, NULL, NULL);
            pthread_mutex_lock(&p->mu);
            bool refuse = p->refuse, answer = p->answer != NULL;
            if (c >= 0 && (refuse || answer))
                p->accepted++;
            pthread_mutex_unlock(&p->mu);
            if (c >= 0 && refuse) {
                pair q = {c, -1, 0};
                pair_close(&q, true);
            } else if (c >= 0) {
                int u = answer ? -1 : connect_upstream(p->upstream_port);
                int slot = -1;
                for (int i = 0; i < TP_MAX_PAIRS && slot < 0; i++)
                    if (p->pairs[i].client < 0)
                        slot = i;
                if ((u < 0 && !answer) || slot < 0) {
                    close(c);
                    if (u >= 0)
                        close(u);
                } else {
                    p->pairs[slot] = (pair){c, u, 0};
                    if (!answer) {
                        pthread_mutex_lock(&p->mu);
                        p->accepted++;
                        pthread_mutex_unlock(&p->mu);
                    }
                }
            }
            continue;
        }
        for (int k = 2; k < n; k += 2) {
            pair *q = &p->pairs[idx[k]];
            bool ok = true;
            if (fds[k].revents && q->upstream < 0)
                ok = answer_once(p, q->client);
            else if (fds[k].revents)
                ok = relay(q->client, q->upstream);
            if (ok && fds[k + 1].revents)
                ok = relay(q->upstream, q->client);
            if (!ok)
                pair_close(q, false);
        }
    }
    for (int i = 0; i < TP_MAX_PAIRS; i++)
        pair_close(&p->pairs[i], false);
    return NULL;
}

tcp_proxy *tp_start(int upstream_port)
{
    tcp_proxy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->upstream_port = upstream_port;
    for (int i = 0; i < TP_MAX_PAIRS; i++)
        p->pairs[i] = (pair){-1, -1, 0};
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(p->listen_fd, 64) != 0 || getsockname(p->listen_fd, (struct sockaddr *)&a, &al) != 0 ||
        pipe(p->wake) != 0) {
        fprintf(stderr, "tcp_proxy: cannot listen: %s\n", strerror(errno));
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        free(p);
        return NULL;
    }
    p->port = ntohs(a.sin_port);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        close(p->listen_fd);
        close(p->wake[0]);
        close(p->wake[1]);
        free(p);
        return NULL;
    }
    return p;
}

int tp_port(const tcp_proxy *p)
{
    return p->port;
}

int tp_accepted(tcp_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->accepted;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void tp_answer(tcp_proxy *p, const char *bytes)
{
    pthread_mutex_lock(&p->mu);
    free(p->answer);
    p->answer = bytes ? strdup(bytes) : NULL;
    pthread_mutex_unlock(&p->mu);
}

void tp_answer_late(tcp_proxy *p, const char *extra, int delay_ms)
{
    pthread_mutex_lock(&p->mu);
    free(p->late);
    p->late = extra ? strdup(extra) : NULL;
    p->late_ms = delay_ms;
    pthread_mutex_unlock(&p->mu);
    (void)!write(p->wake[1], "l", 1);
}

void tp_refuse(tcp_proxy *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->refuse = on != 0;
    pthread_mutex_unlock(&p->mu);
}

int tp_reset_all(tcp_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    p->reset = true;
    p->reset_done = -1;
    (void)!write(p->wake[1], "r", 1);
    while (p->reset_done < 0)
        pthread_cond_wait(&p->cv, &p->mu);
    int n = p->reset_done;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void tp_free(tcp_proxy *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_mutex_unlock(&p->mu);
    (void)!write(p->wake[1], "s", 1);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->answer);
    free(p->late);
    free(p);
}
