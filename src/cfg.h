/* Declarative binding of YAML trees to typed structs.
 *
 * A schema is a table of fields: a dotted key ("model.hidden"), a type, the
 * offset of the member in the target struct, a range, a default (as YAML
 * text, parsed by the same code as the file) and a line of help. Applying a
 * tree walks it against the table: unknown keys, wrong types and values out
 * of range are errors with file:line:column. `--set key=value` overrides go
 * through the same code path, so they are validated exactly like the file.
 * The rest of moesim sees only the filled structs, never strings or trees.
 */
#pragma once

#include "yamltree.h"

typedef enum {
  CFG_INT,    /* gint64 */
  CFG_DOUBLE, /* double */
  CFG_STRING, /* char*, owned by the struct (freed by cfg_clear) */
  CFG_ENUM,   /* int index into `names` */
  CFG_BOOL,   /* gboolean */
  CFG_CUSTOM, /* any node, handled by `parse` */
} CfgType;

typedef struct CfgField CfgField;
typedef gboolean (*CfgParseFunc) (const CfgField *field, const YNode *node, void *member,
                                  const char *where, GError **error);
typedef void (*CfgFreeFunc) (void *member);

struct CfgField {
  const char *key;
  CfgType type;
  gsize offset;
  double min, max;           /* inclusive range for INT and DOUBLE */
  const char *const *names;  /* ENUM: NULL-terminated value names */
  const char *def;           /* default as YAML text; NULL = required */
  const char *help;
  CfgParseFunc parse;        /* CUSTOM */
  CfgFreeFunc free;          /* CUSTOM: frees the member's contents */
};

typedef struct {
  const CfgField *fields;
  guint n_fields;
  void *target;
  const char *file;      /* for messages */
  char **origin;         /* per field: "file:line:col", "--set" or NULL (default) */
} CfgDoc;

/* Starts a document over `target`: fills every default, records no origin. */
void cfg_init (CfgDoc *doc, const CfgField *fields, guint n_fields, void *target, const char *file);
/* Frees strings and custom members of the target and the origin table. */
void cfg_clear (CfgDoc *doc);

/* Applies a parsed root mapping. `skip` lists top-level keys handled by the
 * caller (may be NULL). */
gboolean cfg_apply_tree (CfgDoc *doc, const YNode *root, const char *const *skip, GError **error);

/* Looks a dotted key up; NULL when not in the table. */
const CfgField *cfg_find (const CfgDoc *doc, const char *key);
/* TRUE when some field key starts with `prefix` followed by '.' or equals it. */
gboolean cfg_has_prefix (const CfgDoc *doc, const char *prefix);

/* Applies `value` (YAML text) to `key` as a --set override. */
gboolean cfg_set (CfgDoc *doc, const char *key, const char *value, GError **error);

/* Where a field's value came from, for messages: "FILE:L:C", "--set KEY" or
 * "default of KEY". Owned by doc. */
const char *cfg_origin (CfgDoc *doc, const char *key);

/* Fails unless every required field was given. */
gboolean cfg_check_required (const CfgDoc *doc, GError **error);

/* Parses scalar helpers, shared with custom parsers. */
gboolean cfg_scalar_double (const YNode *n, double *out, const char *where, const char *key,
                            GError **error);
gboolean cfg_scalar_int (const YNode *n, gint64 *out, const char *where, const char *key,
                         GError **error);

/* Writes the table as help text (key, type, default, range, help). */
void cfg_describe (const CfgField *fields, guint n_fields, GString *out);

#define CFG_MEMBER(doc, field, T) ((T *) ((char *) (doc)->target + (field)->offset))
