/* authsvc.c — the test auth service for C tests (see authsvc.h). */
#include "authsvc.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IAM_TEST_AUTHSVC_PY
#error "IAM_TEST_AUTHSVC_PY must name tests/authsvc/authsvc.py"
#endif
#define AS_PYTHON "/usr/bin/python3"
#define AS_SECRET "omnibioai-authsvc-test-secret-0123456789abcdef"
#define AS_START_TIMEOUT_MS 30000
#define AS_MAX_ARGS 24

struct as_server {
    pid_t pid;
    int port;
    char url[64];
    struct as_server *next_live;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static as_server *g_live;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void kill_all(void)
{
    pthread_mutex_lock(&g_lock);
    for (as_server *s = g_live; s; s = s->next_live)
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
    pthread_mutex_unlock(&g_lock);
}

static void init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    atexit(kill_all);
}

static long long mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

const char *as_secret(void)
{
    return AS_SECRET;
}

as_server *as_start(const char *const *extra)
{
    pthread_once(&g_once, init_once);
    const char *argv[AS_MAX_ARGS + 8];
    int n = 0;
    argv[n++] = AS_PYTHON;
    argv[n++] = IAM_TEST_AUTHSVC_PY;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--host";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--secret";
    argv[n++] = AS_SECRET;
    for (int i = 0; extra && extra[i] && i < AS_MAX_ARGS; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(fds[1], 1);
        for (long fd = 3; fd < maxfd; fd++)
            close((int)fd);
        setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
        execv(AS_PYTHON, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return NULL;
    }
    as_server *s = calloc(1, sizeof *s);
    s->pid = pid;
    pthread_mutex_lock(&g_lock);
    s->next_live = g_live;
    g_live = s;
    pthread_mutex_unlock(&g_lock);
    char line[64] = "";
    size_t got = 0;
    long long deadline = mono_ms() + AS_START_TIMEOUT_MS;
    while (!memchr(line, '\n', got) && got < sizeof line - 1) {
        long long left = deadline - mono_ms();
        struct pollfd p = {fds[0], POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t r = read(fds[0], line + got, sizeof line - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        line[got] = '\0';
    }
    close(fds[0]); /* the service writes nothing more to stdout */
    if (sscanf(line, "PORT %d", &s->port) != 1 || s->port <= 0) {
        fprintf(stderr, "authsvc: no PORT line from %s\n", IAM_TEST_AUTHSVC_PY);
        as_free(s);
        return NULL;
    }
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    return s;
}

void as_free(as_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&g_lock);
    for (as_server **p = &g_live; *p; p = &(*p)->next_live)
        if (*p == s) {
            *p = s->next_live;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        long long deadline = mono_ms() + 5000;
        while (waitpid(s->pid, NULL, WNOHANG) == 0) {
            if (mono_ms() > deadline) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                break;
            }
            nanosleep(&(struct timespec){0, 10000000}, NULL);
        }
    }
    free(s);
}

const char *as_url(const as_server *s)
{
    return s->url;
}

int as_port(const as_server *s)
{
    return s->port;
}

typedef struct sink {
    char *p;
    size_t len;
} sink;

static size_t on_data(char *d, size_t size, size_t n, void *arg)
{
    sink *k = arg;
    char *p = realloc(k->p, k->len + size * n + 1);
    if (!p)
        return 0;
    memcpy(p + k->len, d, size * n);
    k->p = p;
    k->len += size * n;
    k->p[k->len] = '\0';
    return size * n;
}

char *as_request(as_server *s, const char *method, const char *path, const char *body, long *status)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    CURL *e = curl_easy_init();
    sink k = {calloc(1, 1), 0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    if (body)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(e);
    long st = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    if (status)
        *status = st;
    if (rc != CURLE_OK) {
        fprintf(stderr, "authsvc: %s %s: %s\n", method, path, curl_easy_strerror(rc));
        free(k.p);
        return NULL;
    }
    return k.p;
}

static cJSON *control(as_server *s, const char *method, const char *path, const char *body)
{
    long st = 0;
    char *r = as_request(s, method, path, body, &st);
    if (!r || st != 200) {
        fprintf(stderr, "authsvc: %s %s -> %ld %s\n", method, path, st, r ? r : "");
        free(r);
        return NULL;
    }
    cJSON *j = cJSON_Parse(r);
    free(r);
    return j;
}

char *as_mint(as_server *s, const char *spec)
{
    cJSON *j = control(s, "POST", "/_test/mint", spec);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
    char *out = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

int as_mode(as_server *s, const char *spec)
{
    cJSON *j = control(s, "POST", "/_test/mode", spec);
    cJSON_Delete(j);
    return j ? 0 : -1;
}

int as_rotate(as_server *s, bool drop_old)
{
    cJSON *j = control(s, "POST", "/_test/rotate", drop_old ? "{\"drop_old\":true}" : "{\"drop_old\":false}");
    cJSON_Delete(j);
    return j ? 0 : -1;
}

long long as_stat(as_server *s, const char *name)
{
    cJSON *j = control(s, "GET", "/_test/stats", NULL);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    long long out = cJSON_IsNumber(v) ? (long long)v->valuedouble : -1;
    cJSON_Delete(j);
    return out;
}

int as_reset_stats(as_server *s)
{
    cJSON *j = control(s, "POST", "/_test/stats/reset", "{}");
    cJSON_Delete(j);
    return j ? 0 : -1;
}
