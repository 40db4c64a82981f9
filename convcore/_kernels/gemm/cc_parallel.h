/* (Beside the GEMM because this folder holds convcore's hand-written C.)
 * A small native worker pool for the inference convolutions (``_conv.pyx``'s *_parallel entry
 * points): ``cc_parallel(fn, ctx, n)`` runs fn(ctx, 0..n-1), the calling thread taking part, and
 * returns when all n tasks are done.
 *
 * Why not convcore's Python worker threads (``_threads.py``): handing a task to a sleeping Python
 * worker costs ~95 us on the project's VMs (a 2-thread no-op round trip), as long as a whole batch-1
 * LeNet convolution. Why not OpenMP: libgomp's idle workers spin for milliseconds after each
 * region, and that spin cannot be bounded by a library (PERF.md's two-pool trap). Here idle workers
 * spin for at most CC_SPIN_US microseconds (long enough to bridge the gap between two layers of
 * one forward), then sleep on a condition variable.
 *
 * One job at a time: a second thread calling while a job runs does its tasks itself (serially),
 * so concurrent predictions stay correct and never wait for each other. After fork() the child
 * starts with no workers (they are re-created on demand). Without pthreads (Windows) every task
 * runs on the calling thread and ``cc_parallel_native()`` is 0, so callers use another pool.
 */
#ifndef CONVCORE_CC_PARALLEL_H
#define CONVCORE_CC_PARALLEL_H

typedef void (*cc_task_fn)(void* ctx, int task);

enum { CC_SPIN_US = 60 };   /* default bounded spin of an idle worker, microseconds */

int cc_parallel_native(void);
void cc_parallel_set_spin(double us);
void cc_parallel(cc_task_fn fn, void* ctx, int ntasks);

#endif
