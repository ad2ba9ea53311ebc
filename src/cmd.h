/* Subcommands of the moesim executable (not part of the library). */
#pragma once

#include <glib.h>

#define EXIT_BAD_INPUT 2

/* Prints "moesim: error: MESSAGE", frees the error, returns EXIT_BAD_INPUT. */
int cmd_fail (GError *error);

int cmd_trace (int argc, char **argv);
int cmd_gate (int argc, char **argv);
int cmd_compare (int argc, char **argv);
int cmd_sweep (int argc, char **argv);
