# OpenMP, optional by construction: the same source compiles with or without it.
# ``CONVCORE_OPENMP`` is 1 only when the compiler really built this module with OpenMP,
# so what ``convcore.info()`` reports is read from the compiled module, not guessed.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CONVCORE_OPENMP 1
    static int convcore_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define CONVCORE_OPENMP 0
    static int convcore_omp_max_threads(void) { return 1; }
    #endif
    """
    const int CONVCORE_OPENMP
    int convcore_omp_max_threads() noexcept nogil
