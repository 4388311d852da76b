/* testutil.h — small helpers shared by the C tests. */
#ifndef IAM_TESTUTIL_H
#define IAM_TESTUTIL_H

#include <stddef.h>

/** Reads a whole file; NULL if unreadable. *len may be NULL. Caller frees. */
char *tu_read_file(const char *path, size_t *len);
/** Path of a file under the platform's shared/ folder ($IAM_TEST_SHARED_DIR). Caller frees. */
char *tu_shared_path(const char *relative);
/** Path of a file under tests/data ($IAM_TEST_DATA_DIR). Caller frees. */
char *tu_data_path(const char *relative);

#endif
