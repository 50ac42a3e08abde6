/*
 * The process's helper thread for ps__share_run; see share.h. It waits on
 * a condition variable when idle; `busy` is held by the job offered to it
 * (a second request meanwhile does its job alone rather than queue), and
 * `lock` guards `state` and the job. The mutex hand-over orders everything
 * the caller wrote before the offer before the helper's work, and the
 * helper's work before the caller's return (POSIX memory synchronization,
 * XBD 4.12).
 */
#include "core/share.h"

#include <pthread.h>
#include <stddef.h>

enum { HELPER_IDLE, HELPER_OFFERED, HELPER_WORKING };

static struct {
    pthread_once_t once;
    bool ok;
    pthread_mutex_t busy, lock;
    pthread_cond_t wake, done;
    int state;
    void (*work)(void *cls, unsigned lane);
    void *cls;
} helper = {.once = PTHREAD_ONCE_INIT,
            .busy = PTHREAD_MUTEX_INITIALIZER,
            .lock = PTHREAD_MUTEX_INITIALIZER,
            .wake = PTHREAD_COND_INITIALIZER,
            .done = PTHREAD_COND_INITIALIZER};

static void *helper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&helper.lock);
    for (;;) {
        while (helper.state != HELPER_OFFERED)
            pthread_cond_wait(&helper.wake, &helper.lock);
        helper.state = HELPER_WORKING;
        void (*work)(void *, unsigned) = helper.work;
        void *cls = helper.cls;
        pthread_mutex_unlock(&helper.lock);
        work(cls, 1);
        pthread_mutex_lock(&helper.lock);
        helper.state = HELPER_IDLE;
        pthread_cond_signal(&helper.done);
    }
    return NULL;
}

static void helper_start(void)
{
    pthread_t t;
    helper.ok = pthread_create(&t, NULL, helper_main, NULL) == 0 && pthread_detach(t) == 0;
}

bool ps__share_run(void (*work)(void *cls, unsigned lane), void *cls)
{
    bool offered = false, took = false;
    pthread_once(&helper.once, helper_start);
    if (helper.ok && pthread_mutex_trylock(&helper.busy) == 0) { /* else: all here */
        pthread_mutex_lock(&helper.lock);
        helper.work = work;
        helper.cls = cls;
        helper.state = HELPER_OFFERED;
        pthread_cond_signal(&helper.wake);
        pthread_mutex_unlock(&helper.lock);
        offered = true;
    }
    work(cls, 0);
    if (offered) {
        pthread_mutex_lock(&helper.lock);
        if (helper.state == HELPER_OFFERED) /* not taken: nothing is left of it */
            helper.state = HELPER_IDLE;
        else
            took = true;
        while (helper.state == HELPER_WORKING)
            pthread_cond_wait(&helper.done, &helper.lock);
        helper.work = NULL;
        helper.cls = NULL;
        pthread_mutex_unlock(&helper.lock);
        pthread_mutex_unlock(&helper.busy);
    }
    return took;
}
