/* The native worker pool (see cc_parallel.h). */
#include "cc_parallel.h"

#if defined(_WIN32) || !(defined(__GNUC__) || defined(__clang__))

int cc_parallel_native(void) { return 0; }

void cc_parallel_set_spin(double us) { (void)us; }

void cc_parallel(cc_task_fn fn, void* ctx, int ntasks) {
    for (int t = 0; t < ntasks; t++) fn(ctx, t);
}

#else

#include <pthread.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CC_PAUSE() _mm_pause()
#else
#define CC_PAUSE() ((void)0)
#endif

enum { CC_MAX_WORKERS = 63 };
static double spin_us = CC_SPIN_US;   /* cc_parallel_set_spin(): benchmarks tune it */

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;   /* held by the thread whose job runs */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int n_workers = 0;            /* started so far (only the job owner starts more) */
static int sleeping = 0;             /* workers waiting on ``wake`` (under wake_lock) */

/* The current job. A task is claimed by a compare-and-swap on ``ticket`` = (generation << 32) |
 * next task: a thread holding a stale snapshot of the job's fields (it saw an older generation)
 * can never claim a task of a newer job, because the owner closes the ticket (next = CLOSED) for
 * the new generation before it rewrites the fields, and opens it after. */
enum { CC_CLOSED = 0xFFFFFFFFu };
static cc_task_fn job_fn;
static void* job_ctx;
static int job_tasks;
static unsigned long long ticket = 0;
static int job_done;                 /* tasks of the current job finished (atomic) */
static unsigned int generation = 0;  /* bumped (under wake_lock) to publish a job */

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* Claim and run tasks of job ``gen`` (whose fields the caller read after seeing ``gen``). */
static void run_tasks(unsigned int gen, cc_task_fn fn, void* ctx, int n) {
    for (;;) {
        unsigned long long t = __atomic_load_n(&ticket, __ATOMIC_SEQ_CST);
        if ((unsigned int)(t >> 32) != gen || (unsigned int)t >= (unsigned int)n) return;
        if (__atomic_compare_exchange_n(&ticket, &t, t + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            fn(ctx, (int)(unsigned int)t);
            __atomic_fetch_add(&job_done, 1, __ATOMIC_ACQ_REL);
        }
    }
}

static void* worker(void* arg) {
    (void)arg;
    unsigned int seen = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
    for (;;) {
        /* Spin a bounded time for the next job, then sleep. */
        double start = now_us();
        unsigned int g;
        int spins = 0;
        while ((g = __atomic_load_n(&generation, __ATOMIC_ACQUIRE)) == seen) {
            CC_PAUSE();
            if (++spins == 256) {
                spins = 0;
                if (now_us() - start > spin_us) break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&wake_lock);
            sleeping++;
            while ((g = __atomic_load_n(&generation, __ATOMIC_ACQUIRE)) == seen) pthread_cond_wait(&wake, &wake_lock);
            sleeping--;
            pthread_mutex_unlock(&wake_lock);
        }
        seen = g;
        cc_task_fn fn = __atomic_load_n(&job_fn, __ATOMIC_ACQUIRE);
        void* ctx = __atomic_load_n(&job_ctx, __ATOMIC_ACQUIRE);
        int n = __atomic_load_n(&job_tasks, __ATOMIC_ACQUIRE);
        run_tasks(g, fn, ctx, n);
    }
    return NULL;
}

static void after_fork_child(void) {
    /* The child has none of the parent's threads: start afresh. */
    pthread_mutex_init(&job_lock, NULL);
    pthread_mutex_init(&wake_lock, NULL);
    pthread_cond_init(&wake, NULL);
    n_workers = 0;
    sleeping = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

int cc_parallel_native(void) { return 1; }

void cc_parallel_set_spin(double us) { spin_us = us; }

void cc_parallel(cc_task_fn fn, void* ctx, int ntasks) {
    if (ntasks <= 1 || pthread_mutex_trylock(&job_lock) != 0) {   /* one task, or the pool is busy */
        for (int t = 0; t < ntasks; t++) fn(ctx, t);
        return;
    }
    pthread_once(&atfork_once, register_atfork);
    int want = ntasks - 1 < CC_MAX_WORKERS ? ntasks - 1 : CC_MAX_WORKERS;
    while (n_workers < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&th, &attr, worker, NULL);
        pthread_attr_destroy(&attr);
        if (failed) break;    /* fewer workers: the caller and the others take more tasks */
        n_workers++;
    }
    unsigned int gen = __atomic_load_n(&generation, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&ticket, ((unsigned long long)gen << 32) | CC_CLOSED, __ATOMIC_SEQ_CST);
    __atomic_store_n(&job_fn, fn, __ATOMIC_RELEASE);
    __atomic_store_n(&job_ctx, ctx, __ATOMIC_RELEASE);
    __atomic_store_n(&job_tasks, ntasks, __ATOMIC_RELEASE);
    __atomic_store_n(&job_done, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&ticket, (unsigned long long)gen << 32, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&wake_lock);
    __atomic_store_n(&generation, gen, __ATOMIC_RELEASE);
    if (sleeping) pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&wake_lock);
    run_tasks(gen, fn, ctx, ntasks);
    while (__atomic_load_n(&job_done, __ATOMIC_ACQUIRE) < ntasks) CC_PAUSE();
    pthread_mutex_unlock(&job_lock);
}

#endif
