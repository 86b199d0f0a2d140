#pragma once
// The CUDA backend's kernels and its cuBLAS products. Included by cuda_backend.cu only: what it
// defines keeps internal linkage.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "cuda_calls.hpp"
#include "fastlstm/error.hpp"

namespace fastlstm::cuda {
namespace {

constexpr int kThreadsPerBlock = 256;

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
template <typename T>
__device__ __forceinline__ T sigmoid_(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// One step of one direction for `rows` rows: gates = x_gates + h_gates (+ bias), in torch's
// order i, f, g, o, each `hidden` wide; c and h updated in place. h goes to `h_out` (a row
// stride apart) and, without projection, also to the recurrent state `h_state`.
template <typename T>
__global__ void lstm_cell_kernel(const T* __restrict__ x_gates, int64_t x_gates_stride,
                                 const T* __restrict__ h_gates, const T* __restrict__ bias,
                                 T* __restrict__ c, T* __restrict__ h_state, T* __restrict__ h_out,
                                 int64_t h_out_stride, int64_t rows, int64_t hidden) {
  const int64_t total = rows * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / hidden, j = i % hidden;
    const T* xg = x_gates + n * x_gates_stride + j;
    const T* hg = h_gates + n * 4 * hidden + j;
    T pre[4];
#pragma unroll
    for (int gate = 0; gate < 4; ++gate) {
      pre[gate] = xg[gate * hidden] + hg[gate * hidden] + (bias ? bias[gate * hidden + j] : T(0));
    }
    const T cell = sigmoid_(pre[1]) * c[i] + sigmoid_(pre[0]) * tanh_(pre[2]);
    c[i] = cell;
    const T h = sigmoid_(pre[3]) * tanh_(cell);
    if (h_state) h_state[i] = h;
    h_out[n * h_out_stride + j] = h;
  }
}

// dst (d0, d1, d2), contiguous = src[a, index[b] (or b), k] with src's strides in elements.
template <typename T>
__global__ void gather_kernel(const T* __restrict__ src, int64_t s0, int64_t s1, int64_t s2,
                              const int64_t* __restrict__ index, T* __restrict__ dst, int64_t d0,
                              int64_t d1, int64_t d2) {
  const int64_t total = d0 * d1 * d2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = i % d2, b = (i / d2) % d1, a = i / (d1 * d2);
    dst[i] = src[a * s0 + (index ? index[b] : b) * s1 + k * s2];
  }
}

unsigned blocks_for(int64_t items) {
  const int64_t blocks = (items + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 1 << 16));
}

// cuBLAS, row-major: the products of the time loop.
cublasStatus_t gemm(cublasHandle_t handle, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                    float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  return cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
}

cublasStatus_t gemm(cublasHandle_t handle, int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                    double* c, int ldc) {
  const double one = 1.0, zero = 0.0;
  return cublasDgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
}

int as_int(int64_t value, const char* what) {
  if (value < 0 || value > std::numeric_limits<int>::max()) {
    throw InvalidArgument(std::string(what) + " (" + std::to_string(value) + ") exceeds cuBLAS's 32-bit sizes");
  }
  return static_cast<int>(value);
}

// Row-major y (rows x out) = x (rows x in, row stride ldx) W^T, W (out x in, row-major).
template <typename T>
void project(cublasHandle_t handle, int64_t rows, int64_t out, int64_t in, const T* w, const T* x, int64_t ldx,
             T* y, int64_t ldy) {
  if (rows == 0) return;
  check(gemm(handle, as_int(out, "gate rows"), as_int(rows, "rows"), as_int(in, "input width"), w,
             as_int(in, "input width"), x, as_int(ldx, "row stride"), y, as_int(ldy, "row stride")),
        "cublasGemm");
}

}  // namespace
}  // namespace fastlstm::cuda
