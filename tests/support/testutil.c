#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static char *join(const char *env, const char *fallback, const char *relative)
{
    const char *dir = getenv(env);
    if (!dir || !*dir)
        dir = fallback;
    size_t n = strlen(dir) + strlen(relative) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, relative);
    return p;
}

char *tu_shared_path(const char *relative)
{
    return join("IAM_TEST_SHARED_DIR", "../shared", relative);
}

char *tu_data_path(const char *relative)
{
    return join("IAM_TEST_DATA_DIR", "tests/data", relative);
}
