/* A loser tree: the least of n keys, where only the least one's key ever
 * changes (it is taken, dropped or re-keyed), as in the flow solver's
 * progressive filling.
 *
 * Leaf i holds key[i] with tie-breaker id[i] (+inf: out of the running);
 * leaves are padded to a power of two P. Each inner node keeps the leaf that
 * lost the match there, and `winner` the overall least (key, then id, so the
 * order never depends on history). When the winner's key changes it replays
 * its matches up to the root against the losers stored on the way: their
 * keys load ahead of the comparisons, and each comparison is branch-free
 * (its outcome is as good as random). The arrays grow to the largest tree
 * built and are reused. */
#pragma once

#include <glib.h>
#include <math.h>

typedef struct {
  double *key;   /* [P] */
  guint *id;     /* [P] */
  guint *lose;   /* [P]: inner node n keeps the loser of its match */
  guint *win;    /* [2P]: scratch for building */
  guint winner;  /* the leaf that wins */
  guint P, cap;
} LoserTree;

/* All ones when leaf b comes before leaf a. */
static inline guint
loser_tree_first (const LoserTree *t, guint a, guint b)
{
  double ka = t->key[a], kb = t->key[b];
  guint b_first = (guint) (kb < ka) | ((guint) (kb == ka) & (guint) (t->id[b] < t->id[a]));
  return 0u - b_first;
}

/* Makes room for n leaves (n >= 1) and pads leaves n..P-1 with +inf; the
 * caller then fills key[i] and id[i] for i < n and calls loser_tree_build. */
static inline void
loser_tree_reset (LoserTree *t, guint n)
{
  guint P = 1;
  while (P < n)
    P *= 2;
  if (P > t->cap)
    {
      t->key = g_realloc_n (t->key, P, sizeof (double));
      t->id = g_realloc_n (t->id, P, sizeof (guint));
      t->lose = g_realloc_n (t->lose, P, sizeof (guint));
      t->win = g_realloc_n (t->win, 2 * P, sizeof (guint));
      t->cap = P;
    }
  t->P = P;
  for (guint i = n; i < P; i++)
    {
      t->key[i] = INFINITY;
      t->id[i] = G_MAXUINT;
    }
}

/* Plays every match bottom-up: winners go on, losers stay. */
static inline void
loser_tree_build (LoserTree *t)
{
  guint P = t->P, *win = t->win;
  for (guint i = 0; i < P; i++)
    win[P + i] = i;
  for (guint n = P - 1; n >= 1; n--)
    {
      guint a = win[2 * n], b = win[2 * n + 1], m = loser_tree_first (t, a, b);
      win[n] = a ^ ((a ^ b) & m);
      t->lose[n] = b ^ ((a ^ b) & m);
    }
  t->winner = win[1];
}

/* The winner's key becomes `key`: replays its matches to the root. */
static inline void
loser_tree_replay (LoserTree *t, double key)
{
  guint cur = t->winner;
  t->key[cur] = key;
  for (guint n = (t->P + cur) / 2; n >= 1; n /= 2)
    {
      guint opp = t->lose[n], m = loser_tree_first (t, cur, opp);
      t->lose[n] = opp ^ ((cur ^ opp) & m); /* the loser stays */
      cur ^= (cur ^ opp) & m;
    }
  t->winner = cur;
}

static inline void
loser_tree_clear (LoserTree *t)
{
  g_clear_pointer (&t->key, g_free);
  g_clear_pointer (&t->id, g_free);
  g_clear_pointer (&t->lose, g_free);
  g_clear_pointer (&t->win, g_free);
  t->P = t->cap = t->winner = 0;
}
