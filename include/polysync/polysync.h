/*
 * libpolysync, everything public: error codes and the client API.
 * Compile with `pkg-config --cflags --libs polysync`.
 */
#ifndef POLYSYNC_POLYSYNC_H
#define POLYSYNC_POLYSYNC_H

#include "polysync/error.h"
#include "polysync/client.h"

#endif
