/*
 * MLX Bar's one-row product shim for the engine process (Linux, CPU build of MLX).
 *
 * Why: MLX's CPU matmul calls cblas_sgemm for every product, also for one row (a decode step).
 * OpenBLAS 0.3.21 (Debian 12) does not forward a one-row sgemm to its matrix-vector kernel: it packs
 * the whole weight matrix first. Measured on the bench's Qwen3-0.6B lm_head (151,936 x 1,024 float32,
 * 2 threads): sgemm 13.8 GB/s, sgemv 36.7 GB/s on the same matrix.
 *
 * What: this library is preloaded into the engine process (LD_PRELOAD, see blas.ts). Its
 * cblas_sgemm is the one MLX binds to; a row-major product with M == 1 (and N, K > 0) becomes the
 * equivalent cblas_sgemv of the real BLAS; everything else is passed to the real cblas_sgemm
 * unchanged. Same arithmetic (a dot product per output), summation order may differ (float32
 * rounding). MLXBAR_GEMV_SHIM=0 in the environment turns the rewrite off at run time (read per
 * call: the bench's A/B flips it between runs); MLXBAR_GEMV_SHIM=trace logs each rewritten call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int);

static sgemm_fn real_sgemm;
static sgemv_fn real_sgemv;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void resolve(void) {
  /* The BLAS the engine was pointed at (LD_LIBRARY_PATH puts OpenBLAS first); else the next definition. */
  void *h = dlopen("libblas.so.3", RTLD_NOW | RTLD_LOCAL);
  if (h) {
    real_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    real_sgemv = (sgemv_fn)dlsym(h, "cblas_sgemv");
  }
  if (!real_sgemm) real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
  if (!real_sgemv) real_sgemv = (sgemv_fn)dlsym(RTLD_NEXT, "cblas_sgemv");
  if (!real_sgemm) abort(); /* no BLAS at all: MLX could not have loaded either */
}

/* 0: off ("0"), 2: on and one stderr line per rewritten call ("trace", for the tests), 1: on. */
static int mode(void) {
  const char *v = getenv("MLXBAR_GEMV_SHIM");
  if (!v) return 1;
  if (strcmp(v, "0") == 0) return 0;
  return strcmp(v, "trace") == 0 ? 2 : 1;
}

void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
  pthread_once(&once, resolve);
  int m = M == 1 && N > 0 && K > 0 && order == ROW_MAJOR && real_sgemv ? mode() : 0;
  if (m) {
    if (m == 2) fprintf(stderr, "mlxbar-gemv-shim: sgemv N=%d K=%d transA=%d transB=%d\n", N, K, transA, transB);
    /* C[0, n] = alpha * sum_k a[k] * op(B)[k, n] + beta * C[0, n]. a is A's one row (stride 1), or
       A's one column when A is transposed (stride lda). */
    int incA = transA == NO_TRANS ? 1 : lda;
    if (transB == NO_TRANS) /* B is [K, N]: C = Bᵀ a */
      real_sgemv(ROW_MAJOR, TRANS, K, N, alpha, B, ldb, A, incA, beta, C, 1);
    else /* B is stored [N, K]: C = B a */
      real_sgemv(ROW_MAJOR, NO_TRANS, N, K, alpha, B, ldb, A, incA, beta, C, 1);
    return;
  }
  real_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
