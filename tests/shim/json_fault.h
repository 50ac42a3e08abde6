/*
 * json-c failure injection (tests/shim/json_fault.c): arm with N and the
 * Nth json-c constructor, container add or writer polysync calls fails.
 */
#ifndef PS_TESTS_JSON_FAULT_H
#define PS_TESTS_JSON_FAULT_H

#include <stdbool.h>

/* The Nth call from now fails (N <= 0: none does); restarts the count. */
void ps_json_fault_arm(long n);
/* Whether the armed call came (and failed). */
bool ps_json_fault_fired(void);
/* Calls counted since the last arm. */
long ps_json_fault_calls(void);

#endif
