/*
 * json.h — a strict, one-pass JSON parser for token headers, claim sets and JWKS.
 *
 * Why not cJSON here: measured on this project's machine, cJSON takes 2.27 µs to parse
 * the platform's 403-byte claim set, more than the whole 1.5 µs budget for verifying an
 * HS256 token, and it accepts duplicate members, invalid UTF-8 and "\u0000" (which
 * silently truncates a C string). This parser enforces all of that in the same pass,
 * allocates nothing for inputs that fit the caller's buffers, and leaves strings as
 * (pointer, length) spans into the input (escaped strings are decoded into a scratch
 * buffer). cJSON is still used where speed does not matter (output, rare lookups).
 *
 * Rules: RFC 8259 grammar exactly (no comments, no trailing commas, no leading zeros,
 * no NaN/Infinity), UTF-8 validated (no overlongs, no surrogates, <= U+10FFFF), no raw
 * control characters in strings, no "\u0000", paired surrogate escapes only, no duplicate
 * member names (compared after unescaping), depth and member counts bounded, nothing but
 * whitespace after the value.
 */
#ifndef IAM_JOSE_JSON_H
#define IAM_JOSE_JSON_H

#include "internal.h"

#include <stdint.h>
#include <string.h>

typedef enum json_type {
    JSON_NULL = 1,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

/* A node of the parse, in document order (pre-order). */
typedef struct json_node {
    const char *str; /* string: decoded bytes (not NUL-terminated); number: its text */
    uint32_t len;    /* string/number: byte length; array: elements; object: members */
    uint32_t next;   /* index of the node after this one's subtree */
    uint32_t raw;    /* offset in the input of the value's first byte */
    uint8_t type;    /* json_type */
} json_node;

typedef struct json_doc {
    json_node *nodes;
    size_t count;
    /* private */
    size_t cap;
    char *scratch;
    size_t scratch_used, scratch_cap;
    bool nodes_owned, scratch_owned;
} json_doc;

typedef struct json_limits {
    unsigned max_depth;   /* nesting of arrays/objects; the root container is depth 1 */
    unsigned max_members; /* members of one object / elements of one array */
} json_limits;

/*
 * Parses text[0..len). node_buf/scratch_buf are optional caller storage (may be NULL/0);
 * when too small, storage is allocated and json_doc_free releases it. `what` names the
 * input in error messages ("header", "claims", "JWKS").
 * Errors: IAM_E_MALFORMED, IAM_E_TOO_LARGE (depth/members), IAM_E_NOMEM.
 */
iam_status json_parse(json_doc *doc, const char *text, size_t len, const json_limits *lim,
                      json_node *node_buf, size_t node_cap, char *scratch_buf, size_t scratch_cap,
                      const char *what, iam_error *err);
void json_doc_free(json_doc *doc);

/*
 * The names json_parse_picked keeps, as a table indexed by JSON_PICK_HASH(name): each name
 * sits at its own hash (the table's author makes sure no two collide), padded with zeros
 * to 16 bytes, with slot1 = its position in picked[] + 1 (0 marks an empty entry).
 */
#define JSON_PICK_HASH(len, last) (((unsigned)(len) + 10u * (unsigned char)(last)) & 63u)
typedef struct json_pick_entry {
    char name[16];
    uint8_t len;   /* 3..16 */
    uint8_t slot1;
} json_pick_entry;

/*
 * json_parse for a text whose root is meant to be an object (a claim set), without a node
 * per member: accepts exactly the texts json_parse accepts, with the same status codes.
 * When the root is an object, node 0 is the root (its len the member count) and for each
 * member whose name is in names[64] at slot k, picked[k] is the index of its value node,
 * whose subtree is what json_parse would build; the other members' values are checked and
 * not kept, so the doc serves lookups through picked[] only (not json_get,
 * json_member_text). A root that is not an object parses exactly as json_parse. Slots are
 * < npicked <= 64; picked[] is all 0 on failure and for names absent.
 */
iam_status json_parse_picked(json_doc *doc, const char *text, size_t len, const json_limits *lim,
                             const json_pick_entry names[64], size_t *picked, size_t npicked,
                             json_node *node_buf, size_t node_cap, char *scratch_buf,
                             size_t scratch_cap, const char *what, iam_error *err);

/* Member lookup in the object at index obj: index of the value node, or 0 when absent. */
size_t json_get(const json_doc *doc, size_t obj, const char *name);

/* Iteration over the children of an array (or the values of an object's members):
 * first child index (or 0 when empty), then json_next_elem. For objects use
 * json_first_member / json_next_member which yield key indexes (value = key + 1). */
static inline size_t json_first_child(const json_doc *doc, size_t i)
{
    return doc->nodes[i].len ? i + 1 : 0;
}
static inline size_t json_next_sibling(const json_doc *doc, size_t i)
{
    return doc->nodes[i].next;
}

/* True when node i is a string equal to s. */
bool json_str_eq(const json_doc *doc, size_t i, const char *s);
/* Span equality. */
static inline bool json_span_eq(const char *a, size_t alen, const char *s, size_t slen)
{
    return alen == slen && (alen == 0 || memcmp(a, s, alen) == 0);
}

/* Number value of node i (a JSON_NUMBER). Locale-independent. False if unrepresentable. */
bool json_number(const json_doc *doc, size_t i, double *out);

/* Exact integer value of node i: true only for plain integer text (-?digits, no fraction
 * or exponent) whose magnitude is at most `max` — decided on the digits, never through a
 * rounding double. */
bool json_integer(const json_doc *doc, size_t i, uint64_t max, int64_t *out);

/* The exact input text of the value of the root object's member `name` (root at index 0),
 * from its first byte to its last. False when absent. */
bool json_member_text(const json_doc *doc, const char *text, size_t text_len, const char *name,
                      size_t *start, size_t *len);

#endif
