/* A YAML document as a small tree of maps, sequences and scalars, each node
 * with the line and column it came from (1-based), so that every later error
 * can point at the text. Built once with libyaml's event parser; anchors,
 * aliases and tags are refused (config files do not need them). Duplicate
 * keys in a map are an error.
 */
#pragma once

#include <glib.h>

#define MOESIM_CONFIG_ERROR (moesim_config_error_quark ())
GQuark moesim_config_error_quark (void);

typedef enum {
  MOESIM_CONFIG_ERROR_SYNTAX,  /* not valid YAML */
  MOESIM_CONFIG_ERROR_IO,      /* file missing or unreadable */
  MOESIM_CONFIG_ERROR_UNKNOWN, /* key or --set path not in the schema */
  MOESIM_CONFIG_ERROR_TYPE,    /* wrong type */
  MOESIM_CONFIG_ERROR_RANGE,   /* out of range or inconsistent */
  MOESIM_CONFIG_ERROR_MISSING, /* required field absent */
} MoesimConfigError;

typedef enum { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ } YNodeKind;

typedef struct YNode YNode;
struct YNode {
  YNodeKind kind;
  guint line, col;
  char *value;       /* scalar text */
  gboolean quoted;   /* scalar was quoted (never a number or a bool) */
  GPtrArray *keys;   /* map: YNode* scalar keys */
  GPtrArray *items;  /* map: values, parallel to keys; seq: items */
};

/* Parses the first document of a file. `name` is used in messages. */
YNode *ynode_parse_file (const char *path, GError **error);
YNode *ynode_parse_string (const char *text, gssize len, const char *name, GError **error);
void ynode_free (YNode *n);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (YNode, ynode_free)

/* Map lookup; NULL when absent or `map` is not a map. */
const YNode *ynode_get (const YNode *map, const char *key);
const char *ynode_kind_name (YNodeKind kind);
