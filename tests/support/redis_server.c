/*
 * redis_server.c — a real redis-server for integration tests (see redis_server.h).
 */
#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RS_READY_TIMEOUT_MS 10000
#define RS_STOP_TIMEOUT_MS 5000
#define RS_CMD_TIMEOUT_S 2

struct rs_server {
    pid_t pid;             /* 0 when not running */
    bool paused;
    int port;
    char dir[64];
    char url[64];
    char sock[128];        /* "" when no unix socket */
    char log[128];
    char *password;        /* NULL when none */
    redisContext *ctx;     /* the helper connection (lazy) */
    int db;
    struct rs_server *next_live;
};

/* ------------------------------------------------------------ live registry, atexit */

static pthread_mutex_t g_live_lock = PTHREAD_MUTEX_INITIALIZER;
static rs_server *g_live;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void remove_dir(const rs_server *s)
{
    char p[192];
    static const char *const files[] = {"redis.log", "redis.sock", "dump.rdb"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", s->dir, files[i]);
        unlink(p);
    }
    rmdir(s->dir);
}

static pid_t g_owner_pid; /* the process that registered the handler */

static void kill_all_at_exit(void)
{
    if (getpid() != g_owner_pid)
        return; /* a forked child exiting: the servers are its parent's */
    pthread_mutex_lock(&g_live_lock);
    for (rs_server *s = g_live; s; s = s->next_live) {
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
        remove_dir(s);
    }
    pthread_mutex_unlock(&g_live_lock);
}

static void register_atexit(void)
{
    g_owner_pid = getpid();
    atexit(kill_all_at_exit);
}

static void live_add(rs_server *s)
{
    pthread_once(&g_once, register_atexit);
    pthread_mutex_lock(&g_live_lock);
    s->next_live = g_live;
    g_live = s;
    pthread_mutex_unlock(&g_live_lock);
}

static void live_remove(rs_server *s)
{
    pthread_mutex_lock(&g_live_lock);
    for (rs_server **p = &g_live; *p; p = &(*p)->next_live)
        if (*p == s) {
            *p = s->next_live;
            break;
        }
    pthread_mutex_unlock(&g_live_lock);
}

/* ------------------------------------------------------------ time */

long long rs_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rs_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------ process */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static pid_t spawn(const rs_server *s)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    const char *argv[32];
    int n = 0;
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--logfile";
    argv[n++] = "";
    if (s->sock[0]) {
        argv[n++] = "--unixsocket";
        argv[n++] = s->sock;
        argv[n++] = "--unixsocketperm";
        argv[n++] = "700";
    }
    if (s->password) {
        argv[n++] = "--requirepass";
        argv[n++] = s->password;
    }
    argv[n] = NULL;

    int logfd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
        fprintf(stderr, "redis_server: cannot open %s: %s\n", s->log, strerror(errno));
        return -1;
    }
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        for (long fd = 3; fd < maxfd; fd++)
            close((int)fd); /* never hand the parent's sockets to the server */
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    close(logfd);
    if (pid < 0)
        fprintf(stderr, "redis_server: fork: %s\n", strerror(errno));
    return pid;
}

static redisContext *connect_ctx(const rs_server *s, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (!c)
        return NULL;
    if (c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (s->password) {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* Waits for PONG; 0 when ready, 1 when the process exited (e.g. port taken), -1 timeout. */
static int wait_ready(rs_server *s)
{
    long long deadline = rs_mono_ms() + RS_READY_TIMEOUT_MS;
    while (rs_mono_ms() < deadline) {
        int status;
        pid_t w = waitpid(s->pid, &status, WNOHANG);
        if (w == s->pid) {
            s->pid = 0;
            return 1;
        }
        redisContext *c = connect_ctx(s, 200);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok && (!s->sock[0] || access(s->sock, F_OK) == 0))
                return 0;
        }
        rs_sleep_ms(10);
    }
    return -1;
}

static void drop_ctx(rs_server *s)
{
    if (s->ctx) {
        redisFree(s->ctx);
        s->ctx = NULL;
    }
}

static void hard_kill(rs_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void dump_log(const rs_server *s)
{
    FILE *f = fopen(s->log, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "---- %s\n", s->log);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* Spawns and waits; with retry_port, a port collision picks a new port. */
static int launch(rs_server *s, bool new_port_on_collision)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        if (new_port_on_collision) {
            s->port = free_port();
            if (s->port <= 0)
                return -1;
            snprintf(s->url, sizeof s->url, "redis://127.0.0.1:%d", s->port);
        }
        s->pid = spawn(s);
        if (s->pid < 0) {
            s->pid = 0;
            return -1;
        }
        int r = wait_ready(s);
        if (r == 0) {
            s->paused = false;
            return 0;
        }
        if (r < 0) { /* alive but silent for 10 s: give up */
            hard_kill(s);
            dump_log(s);
            return -1;
        }
        /* exited: most likely the port was taken meanwhile; try again */
        rs_sleep_ms(50 + 50 * attempt);
    }
    dump_log(s);
    return -1;
}

rs_server *rs_start(const rs_options *opts)
{
    rs_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->dir, sizeof s->dir, "/tmp/iam-redis-XXXXXX");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "redis_server: mkdtemp: %s\n", strerror(errno));
        free(s);
        return NULL;
    }
    snprintf(s->log, sizeof s->log, "%s/redis.log", s->dir);
    if (opts && opts->unix_socket)
        snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
    if (opts && opts->password)
        s->password = strdup(opts->password);
    live_add(s);
    if (launch(s, true) != 0) {
        fprintf(stderr, "redis_server: could not start redis-server\n");
        rs_free(s);
        return NULL;
    }
    return s;
}

int rs_stop(rs_server *s)
{
    drop_ctx(s);
    if (s->pid <= 0)
        return 0;
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGTERM);
    long long deadline = rs_mono_ms() + RS_STOP_TIMEOUT_MS;
    for (;;) {
        int status;
        pid_t w = waitpid(s->pid, &status, WNOHANG);
        if (w == s->pid || (w < 0 && errno == ECHILD))
            break;
        if (rs_mono_ms() > deadline) {
            fprintf(stderr, "redis_server: SIGTERM ignored for 5 s, SIGKILL\n");
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            break;
        }
        rs_sleep_ms(5);
    }
    s->pid = 0;
    s->paused = false;
    return 0;
}

int rs_restart(rs_server *s)
{
    rs_stop(s);
    if (s->sock[0])
        unlink(s->sock);
    /* Same port: redis sets SO_REUSEADDR, but another process could grab the port in
     * between; retry for a while rather than move. */
    long long deadline = rs_mono_ms() + 5000;
    while (rs_mono_ms() < deadline) {
        s->pid = spawn(s);
        if (s->pid < 0) {
            s->pid = 0;
            return -1;
        }
        int r = wait_ready(s);
        if (r == 0) {
            s->paused = false;
            return 0;
        }
        if (r < 0) {
            hard_kill(s);
            break;
        }
        rs_sleep_ms(100);
    }
    dump_log(s);
    return -1;
}

int rs_pause(rs_server *s)
{
    if (s->pid <= 0)
        return -1;
    drop_ctx(s);
    if (kill(s->pid, SIGSTOP) != 0)
        return -1;
    s->paused = true;
    return 0;
}

int rs_resume(rs_server *s)
{
    if (s->pid <= 0)
        return -1;
    if (kill(s->pid, SIGCONT) != 0)
        return -1;
    s->paused = false;
    return 0;
}

bool rs_running(const rs_server *s)
{
    return s && s->pid > 0;
}

void rs_free(rs_server *s)
{
    if (!s)
        return;
    rs_stop(s);
    live_remove(s);
    remove_dir(s);
    free(s->password);
    free(s);
}

int rs_port(const rs_server *s)
{
    return s->port;
}

int rs_pid(const rs_server *s)
{
    return (int)s->pid;
}

const char *rs_url(const rs_server *s)
{
    return s->url;
}

const char *rs_socket_path(const rs_server *s)
{
    return s->sock[0] ? s->sock : NULL;
}

const char *rs_dir(const rs_server *s)
{
    return s->dir;
}

/* ------------------------------------------------------------ helper connection */

static int ensure_ctx(rs_server *s)
{
    if (s->ctx)
        return 0;
    if (s->pid <= 0 || s->paused)
        return -1;
    s->ctx = connect_ctx(s, RS_CMD_TIMEOUT_S * 1000);
    if (!s->ctx)
        return -1;
    if (s->db != 0) {
        redisReply *r = redisCommand(s->ctx, "SELECT %d", s->db);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            drop_ctx(s);
            return -1;
        }
    }
    return 0;
}

static redisReply *checked(rs_server *s, void *r)
{
    if (!r) {
        fprintf(stderr, "redis_server: helper command failed: %s\n",
                s->ctx && s->ctx->errstr[0] ? s->ctx->errstr : "no connection");
        drop_ctx(s);
    }
    return r;
}

redisReply *rs_command(rs_server *s, const char *fmt, ...)
{
    if (ensure_ctx(s) != 0)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    void *r = redisvCommand(s->ctx, fmt, ap);
    va_end(ap);
    return checked(s, r);
}

redisReply *rs_command_argv(rs_server *s, int argc, const char **argv, const size_t *lens)
{
    if (ensure_ctx(s) != 0)
        return NULL;
    return checked(s, redisCommandArgv(s->ctx, argc, argv, lens));
}

int rs_select(rs_server *s, int db)
{
    s->db = db;
    if (!s->ctx)
        return ensure_ctx(s);
    redisReply *r = rs_command(s, "SELECT %d", db);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static long long integer_reply(redisReply *r)
{
    long long v = -2;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "redis_server: error reply: %s\n", r->str);
    if (r)
        freeReplyObject(r);
    return v;
}

long long rs_exists(rs_server *s, const char *key)
{
    return integer_reply(rs_command(s, "EXISTS %s", key));
}

long long rs_pttl(rs_server *s, const char *key)
{
    return integer_reply(rs_command(s, "PTTL %s", key));
}

char *rs_get(rs_server *s, const char *key, size_t *len)
{
    redisReply *r = rs_command(s, "GET %s", key);
    char *v = NULL;
    if (r && r->type == REDIS_REPLY_STRING) {
        v = malloc(r->len + 1);
        if (v) {
            memcpy(v, r->str, r->len);
            v[r->len] = '\0';
            if (len)
                *len = r->len;
        }
    }
    if (r)
        freeReplyObject(r);
    return v;
}

int rs_set(rs_server *s, const char *key, const char *val, size_t len, bool keep_ttl)
{
    redisReply *r = keep_ttl ? rs_command(s, "SET %s %b KEEPTTL", key, val, len)
                             : rs_command(s, "SET %s %b", key, val, len);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r && !ok && r->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "redis_server: SET: %s\n", r->str);
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

int rs_del(rs_server *s, const char *key)
{
    return integer_reply(rs_command(s, "DEL %s", key)) >= 0 ? 0 : -1;
}

long long rs_publish(rs_server *s, const char *channel, const char *msg, size_t len)
{
    long long v = integer_reply(rs_command(s, "PUBLISH %s %b", channel, msg, len));
    return v < 0 ? -1 : v;
}

int rs_flushall(rs_server *s)
{
    redisReply *r = rs_command(s, "FLUSHALL");
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

char **rs_keys(rs_server *s, const char *pattern, long *n)
{
    *n = -1;
    redisReply *r = rs_command(s, "KEYS %s", pattern);
    if (!r)
        return NULL;
    char **out = NULL;
    if (r->type == REDIS_REPLY_ARRAY) {
        *n = (long)r->elements;
        if (r->elements) {
            out = calloc(r->elements, sizeof *out);
            for (size_t i = 0; out && i < r->elements; i++)
                out[i] = strndup(r->element[i]->str, r->element[i]->len);
        }
    }
    freeReplyObject(r);
    return out;
}

void rs_free_keys(char **keys, long n)
{
    for (long i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
}

/* ------------------------------------------------------------ subscriber */

struct rs_subscriber {
    redisContext *c;
};

rs_subscriber *rs_subscribe(rs_server *s, const char *channel)
{
    if (s->pid <= 0 || s->paused)
        return NULL;
    redisContext *c = connect_ctx(s, RS_CMD_TIMEOUT_S * 1000);
    if (!c)
        return NULL;
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
              r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "subscribe") == 0;
    if (r)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    rs_subscriber *sub = calloc(1, sizeof *sub);
    if (!sub) {
        redisFree(c);
        return NULL;
    }
    sub->c = c;
    return sub;
}

char *rs_next_message(rs_subscriber *sub, int timeout_ms, size_t *len)
{
    if (!sub || !sub->c || sub->c->err)
        return NULL;
    long long deadline = rs_mono_ms() + timeout_ms;
    for (;;) {
        void *reply = NULL;
        if (redisGetReplyFromReader(sub->c, &reply) != REDIS_OK)
            return NULL;
        if (reply) {
            redisReply *r = reply;
            char *out = NULL;
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[0]->str, "message") == 0 &&
                r->element[2]->type == REDIS_REPLY_STRING) {
                out = malloc(r->element[2]->len + 1);
                if (out) {
                    memcpy(out, r->element[2]->str, r->element[2]->len);
                    out[r->element[2]->len] = '\0';
                    if (len)
                        *len = r->element[2]->len;
                }
            }
            freeReplyObject(r);
            if (out)
                return out;
            continue; /* not a message (e.g. a subscribe confirmation) */
        }
        long long left = deadline - rs_mono_ms();
        if (left <= 0)
            return NULL;
        struct pollfd p = {.fd = sub->c->fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return NULL;
        if (redisBufferRead(sub->c) != REDIS_OK)
            return NULL;
    }
}

void rs_subscriber_free(rs_subscriber *sub)
{
    if (!sub)
        return;
    if (sub->c)
        redisFree(sub->c);
    free(sub);
}
