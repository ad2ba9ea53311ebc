/* libyaml event stream -> YNode tree. A stack of open collections receives
 * each node; a map alternates key and value slots. */
#include "yamltree.h"

#include <yaml.h>

G_DEFINE_QUARK (moesim-config-error-quark, moesim_config_error)

static YNode *
node_new (YNodeKind kind, const yaml_mark_t *mark)
{
  YNode *n = g_new0 (YNode, 1);
  n->kind = kind;
  n->line = (guint) mark->line + 1;
  n->col = (guint) mark->column + 1;
  if (kind != YNODE_SCALAR)
    n->items = g_ptr_array_new_with_free_func ((GDestroyNotify) ynode_free);
  if (kind == YNODE_MAP)
    n->keys = g_ptr_array_new_with_free_func ((GDestroyNotify) ynode_free);
  return n;
}

void
ynode_free (YNode *n)
{
  if (n == NULL)
    return;
  g_free (n->value);
  if (n->keys)
    g_ptr_array_unref (n->keys);
  if (n->items)
    g_ptr_array_unref (n->items);
  g_free (n);
}

const char *
ynode_kind_name (YNodeKind kind)
{
  switch (kind)
    {
    case YNODE_SCALAR:
      return "a scalar";
    case YNODE_MAP:
      return "a mapping";
    case YNODE_SEQ:
      return "a sequence";
    default:
      return "?";
    }
}

const YNode *
ynode_get (const YNode *map, const char *key)
{
  if (map == NULL || map->kind != YNODE_MAP)
    return NULL;
  for (guint i = 0; i < map->keys->len; i++)
    {
      const YNode *k = g_ptr_array_index (map->keys, i);
      if (g_strcmp0 (k->value, key) == 0)
        return g_ptr_array_index (map->items, i);
    }
  return NULL;
}

/* Attaches `child` to the open collection `parent`; FALSE on a bad key. */
static gboolean
attach (YNode *parent, YNode *child, const char *name, GError **error)
{
  if (parent->kind == YNODE_SEQ)
    {
      g_ptr_array_add (parent->items, child);
      return TRUE;
    }
  if (parent->keys->len == parent->items->len)
    {
      if (child->kind != YNODE_SCALAR)
        {
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_SYNTAX,
                       "%s:%u:%u: a mapping key must be a plain scalar, got %s", name, child->line,
                       child->col, ynode_kind_name (child->kind));
          ynode_free (child);
          return FALSE;
        }
      if (ynode_get (parent, child->value) != NULL)
        {
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_SYNTAX,
                       "%s:%u:%u: duplicate key '%s'", name, child->line, child->col, child->value);
          ynode_free (child);
          return FALSE;
        }
      g_ptr_array_add (parent->keys, child);
    }
  else
    g_ptr_array_add (parent->items, child);
  return TRUE;
}

YNode *
ynode_parse_string (const char *text, gssize len, const char *name, GError **error)
{
  yaml_parser_t parser;
  yaml_event_t event;
  yaml_parser_initialize (&parser);
  yaml_parser_set_input_string (&parser, (const unsigned char *) text,
                                len < 0 ? strlen (text) : (size_t) len);
  g_autoptr (GPtrArray) stack = g_ptr_array_new ();
  YNode *root = NULL;
  gboolean done = FALSE, ok = TRUE;

  while (!done && ok)
    {
      if (!yaml_parser_parse (&parser, &event))
        {
          size_t line = parser.problem_mark.line, col = parser.problem_mark.column;
          if (parser.error == YAML_READER_ERROR)
            {
              /* reader errors (bad UTF-8, control characters) give only an offset */
              line = col = 0;
              for (size_t i = 0; i < parser.problem_offset && text[i]; i++)
                if (text[i] == '\n')
                  line++, col = 0;
                else
                  col++;
            }
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_SYNTAX,
                       "%s:%zu:%zu: YAML syntax error: %s%s%s", name, line + 1, col + 1,
                       parser.problem ? parser.problem : "unknown problem",
                       parser.context ? " " : "", parser.context ? parser.context : "");
          ok = FALSE;
          break;
        }
      YNode *n = NULL;
      switch (event.type)
        {
        case YAML_SCALAR_EVENT:
          n = node_new (YNODE_SCALAR, &event.start_mark);
          n->value = g_strndup ((const char *) event.data.scalar.value, event.data.scalar.length);
          n->quoted = event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
          if (event.data.scalar.anchor || event.data.scalar.tag)
            goto refuse;
          break;
        case YAML_SEQUENCE_START_EVENT:
          n = node_new (YNODE_SEQ, &event.start_mark);
          if (event.data.sequence_start.anchor || event.data.sequence_start.tag)
            goto refuse;
          break;
        case YAML_MAPPING_START_EVENT:
          n = node_new (YNODE_MAP, &event.start_mark);
          if (event.data.mapping_start.anchor || event.data.mapping_start.tag)
            goto refuse;
          break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
          {
            YNode *top = g_ptr_array_steal_index (stack, stack->len - 1);
            if (stack->len == 0)
              root = top;
            else if (!attach (g_ptr_array_index (stack, stack->len - 1), top, name, error))
              ok = FALSE;
          }
          break;
        case YAML_ALIAS_EVENT:
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_SYNTAX,
                       "%s:%zu:%zu: YAML aliases are not supported in moesim files", name,
                       event.start_mark.line + 1, event.start_mark.column + 1);
          ok = FALSE;
          break;
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
          done = TRUE;
          break;
        default:
          break;
        }
      if (n != NULL)
        {
          if (n->kind == YNODE_SCALAR)
            {
              if (stack->len == 0)
                root = n;
              else if (!attach (g_ptr_array_index (stack, stack->len - 1), n, name, error))
                ok = FALSE;
            }
          else
            g_ptr_array_add (stack, n);
        }
      yaml_event_delete (&event);
      continue;
    refuse:
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_SYNTAX,
                   "%s:%u:%u: YAML anchors and tags are not supported in moesim files", name, n->line,
                   n->col);
      ynode_free (n);
      yaml_event_delete (&event);
      ok = FALSE;
    }
  yaml_parser_delete (&parser);
  for (guint i = 0; i < stack->len; i++)
    {
      /* on error, free open collections from the innermost out; each owns
       * what was attached to it */
      ynode_free (g_ptr_array_index (stack, stack->len - 1 - i));
    }
  if (!ok)
    {
      ynode_free (root);
      return NULL;
    }
  if (root == NULL)
    root = node_new (YNODE_MAP, &(yaml_mark_t){ 0, 0, 0 }); /* empty document */
  return root;
}

YNode *
ynode_parse_file (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;
  if (!g_file_get_contents (path, &text, &len, &local))
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_IO, "%s: cannot read: %s", path,
                   local->message);
      return NULL;
    }
  return ynode_parse_string (text, (gssize) len, path, error);
}
