/* Random streams for routing: xoshiro256++ (Blackman and Vigna, public
 * domain reference at prng.di.unimi.it), seeded through SplitMix64. Each
 * stream is seeded from the run seed and the entity it serves (layer,
 * micro-batch, GPU), so results never depend on the order in which entities
 * are generated, nor on threads. Never a global.
 *
 * Bounded draws are unbiased: a power-of-two bound takes bits from a 64-bit
 * word (several draws per word); any other bound uses Lemire's multiply-shift
 * with rejection on 32-bit halves. */
#pragma once

#include <glib.h>

typedef struct {
  guint64 s[4];
  guint64 bits;  /* unused random bits */
  guint n_bits;  /* how many */
} Rng;

static inline guint64
rng_splitmix64 (guint64 *x)
{
  guint64 z = (*x += G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static inline guint64
rng_rotl (guint64 x, int k)
{
  return (x << k) | (x >> (64 - k));
}

static inline guint64
rng_next64 (Rng *r)
{
  guint64 *s = r->s;
  guint64 result = rng_rotl (s[0] + s[3], 23) + s[0];
  guint64 t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rng_rotl (s[3], 45);
  return result;
}

/* Seeds from any number of 64-bit keys mixed together. */
static inline void
rng_seed (Rng *r, guint64 a, guint64 b, guint64 c)
{
  guint64 x = a;
  x = rng_splitmix64 (&x) ^ b;
  x = rng_splitmix64 (&x) ^ c;
  for (int i = 0; i < 4; i++)
    r->s[i] = rng_splitmix64 (&x);
  r->bits = 0;
  r->n_bits = 0;
}

/* Uniform in [0, 2^k), k <= 32. */
static inline guint32
rng_bits (Rng *r, guint k)
{
  if (r->n_bits < k)
    {
      r->bits = rng_next64 (r);
      r->n_bits = 64;
    }
  guint32 v = (guint32) (r->bits & ((G_GUINT64_CONSTANT (1) << k) - 1));
  r->bits >>= k;
  r->n_bits -= k;
  return v;
}

/* Uniform in [0, bound), bound >= 1. */
static inline guint32
rng_below (Rng *r, guint32 bound)
{
  if ((bound & (bound - 1)) == 0)
    return bound == 1 ? 0 : rng_bits (r, (guint) __builtin_ctz (bound));
  guint64 m = (guint64) rng_bits (r, 32) * bound;
  guint32 low = (guint32) m;
  if (low < bound)
    {
      guint32 threshold = (guint32) (-bound) % bound;
      while (low < threshold)
        {
          m = (guint64) rng_bits (r, 32) * bound;
          low = (guint32) m;
        }
    }
  return (guint32) (m >> 32);
}

/* The bits a draw below `bound` takes when bound is a power of two (0 for
 * 1: no draw), else G_MAXUINT. */
static inline guint
rng_bound_bits (guint32 bound)
{
  return (bound & (bound - 1)) == 0 ? (guint) __builtin_ctz (bound) : G_MAXUINT;
}

/* rng_below, with bits = rng_bound_bits (bound) worked out by the caller:
 * for a loop of draws below one bound, where a compiler may leave
 * rng_below's test of the bound in the loop. */
static inline guint32
rng_below_bits (Rng *r, guint32 bound, guint bits)
{
  return bits < 32 ? rng_bits (r, bits) : rng_below (r, bound);
}
