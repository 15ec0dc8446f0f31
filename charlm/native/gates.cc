// The LSTM's and the GRU's recurrence over a whole sequence on a CPU, forward and backward,
// as one TensorFlow op each (built for this machine by charlm/kernels.py); and the softmax
// cross-entropy loss, forward and backward (charlm/loss.py), at the end of this file.
//
// Why: in a TensorFlow while-loop every op of a time step (the recurrent matmul, a dozen
// elementwise gate ops, casts) is a kernel launch of its own; at the shapes a CPU trains
// (batch 128, 128-512 units) a (128, 128) x (128, 512) bfloat16 matmul through TensorFlow
// ran at ~55 GFLOP/s and the gate ops cost as much again. Here each thread takes a block of
// batch rows through every time step on its own (rows never interact), so a sequence costs
// one op and one synchronisation, and each step is a register-tiled matmul (AVX512_BF16
// dot products where the CPU has them) followed by the gate math on the rows it produced,
// still in cache. What needs every time step at once (the input projection x @ kernel, the
// weight gradients, the input gradient) stays outside: big matmuls TensorFlow (oneDNN) does
// well.
//
// Layouts (row-major; B batch rows, T steps, H units; T_ = the matmul dtype, float or
// bfloat16; state, gates and sums float). Every sequence tensor is batch-major, (B, T, ...),
// as Keras' layers pass them: the input projection, the weight gradients and the input
// gradient are then plain matmuls over (B T) rows with no transpose on either side (a step
// reads its rows T apart, which the matmul's row stride absorbs).
//   LSTM, Keras gate order i f c o:
//     forward  xz (B, T, 4H) T_ = x @ kernel; bias (4H,) float; u (H, 4H) T_ recurrent
//              kernel; h0 (B, H) T_; c0 (B, H) float
//           -> hs (B, T, H) T_; gates (B, T, 4H) T_ = i f g o (after their activations;
//              in the matmul dtype: in bfloat16 that halves what a step stores and reads
//              back, and the gates feed bfloat16 matmuls anyway); cs (B, T, H) float (the
//              cell state, kept in float: it accumulates over steps; the last is the final c)
//     backward gates, cs, c0, d_out (B, T, H) T_, dh (B, H) float (gradient of the final h),
//              dc (B, H) float (of the final c), u, ids -> dz (B, T, 4H) T_; dh0, dc0 (B, H)
//              float; d_bias (P, 4H) float (one row per thread block, summed by the caller);
//              d_table (V, 4H) float: dz summed by input id (see below)
//   GRU, Keras reset_after=True, gates z r h, bias (2, 3H):
//     forward  xz (B, T, 3H) T_ = x @ kernel; bias (2, 3H) float (input, recurrent);
//              u (H, 3H) T_; h0 (B, H) float
//           -> hs (B, T, H) T_; saved (B, T, 5H) float = z r hh rh h_prev; h (B, H) float
//     backward saved, d_out (B, T, H) T_, dh (B, H) float (gradient of the final state), u,
//              ids -> d_in (B, T, 3H) T_ (of x @ kernel), d_rec (B, T, 3H) T_ (of h @ u +
//              bias); dh0 (B, H) float; d_bias (P, 2, 3H) float (per thread block);
//              d_table (V, 3H) float: d_in summed by input id
//   A first layer fed by an embedding (x = E[ids], E (V, I)) has xz = (E @ kernel)[ids], so
//   its kernel's gradient is E^T S and E's is S kernel^T, S (V, G) = the rows of d(xz) summed
//   by id: the grad ops sum them into d_table on the way (attr vocab = V, ids (B, T)), which
//   replaces two (B T, I) x (I, G) matmuls by (V, I) ones. vocab = 0: no ids, d_table empty.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace charlm {

using tensorflow::bfloat16;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// ------------------------------------------------------------------ elementwise

// bfloat16 <-> float by bits, so loops vectorise (round to nearest even).
inline float to_float(float v) { return v; }
inline float to_float(bfloat16 v) {
  uint16_t b;
  std::memcpy(&b, &v, 2);
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <typename T> inline T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline bfloat16 from_float<bfloat16>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  uint16_t b = static_cast<uint16_t>(u >> 16);
  bfloat16 out;
  std::memcpy(&out, &b, 2);
  return out;
}

// exp by Cody-Waite range reduction and a degree-6 polynomial (relative error ~2e-7): pure
// arithmetic, so loops of it vectorise. A NaN passes through, as in TensorFlow's ops: the
// clamp's comparisons are false for it (std::fmin/fmax would return the bound, e^-87, and a
// NaN in a gate or a logit became a finite number: 0 NaN outputs where Keras' loop had 12).
// That needs NaN honoured at compile time: charlm/kernels.py builds without
// -ffinite-math-only (which lets the compiler assume there is none; docs/model.md measures
// what the flags buy).
inline float exp_(float v) {
  v = v < -87.0f ? -87.0f : (v > 88.0f ? 88.0f : v);
  float n = std::nearbyint(v * 1.44269504088896341f);
  float r = std::fma(n, -0.693359375f, v);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.0f / 720.0f;
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  // 2^n from the bits of n + 1.5 2^23, whose low mantissa bits hold the integer n (|n| <=
  // 127): integer arithmetic, defined for a NaN too (converting it to int is not; p is NaN
  // then anyway), and cheaper than a conversion with a NaN check.
  float shifted = n + 12582912.0f;
  uint32_t bits;
  std::memcpy(&bits, &shifted, 4);
  bits = (bits - 0x4B400000u + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
inline float sigmoid(float v) { return 1.0f / (1.0f + exp_(-v)); }
inline float tanh_(float v) { return 2.0f / (1.0f + exp_(-2.0f * v)) - 1.0f; }

// ------------------------------------------------------------------ matmul

typedef float v16 __attribute__((vector_size(64), aligned(4)));

// The recurrent weight in the layout its kernel reads: column panels, each contiguous, 64
// columns wide (then 16, then 1 for what is left), so a tile's slab of the weight is one
// run of memory rather than K rows N apart (which thrashed L1's sets at N = 2048). Inside a
// panel of width w: float (k, c) at k w + c; bfloat16 pairs along K for AVX512_BF16 dot
// products, (k, c) at ((k / 2) w + c) 2 + k % 2 (a zero pads an odd K). Panel j0 starts at
// j0 * Kp, Kp = K (float) or 2 ceil(K / 2) (bfloat16).
template <typename T>
struct Packed {
  int64_t K = 0, N = 0, Kp = 0, wide64 = 0, wide16 = 0;
  std::vector<T> data;
  int64_t width(int64_t j) const { return j < wide64 ? 64 : j < wide16 ? 16 : 1; }
  int64_t start(int64_t j) const {
    return j < wide64 ? j / 64 * 64 : j < wide16 ? wide64 + (j - wide64) / 16 * 16 : j;
  }
  const T* panel(int64_t j) const { return data.data() + j * Kp; }  // j: a panel's start
  int64_t index(int64_t k, int64_t n) const {
    const int64_t j0 = start(n), w = width(n), c = n - j0;
    if (std::is_same<T, float>::value) return j0 * Kp + k * w + c;
    return j0 * Kp + ((k / 2) * w + c) * 2 + k % 2;
  }
};

// w is (K, N) row-major when transpose is false, (N, K) when true (its transpose is packed).
template <typename T>
Packed<T> pack(const T* w, int64_t K, int64_t N, bool transpose) {
  Packed<T> p;
  p.K = K;
  p.N = N;
  p.Kp = std::is_same<T, float>::value ? K : 2 * ((K + 1) / 2);
  p.wide64 = N / 64 * 64;
  p.wide16 = p.wide64 + (N - p.wide64) / 16 * 16;
  p.data.assign(p.Kp * N, from_float<T>(0.0f));
  // Panel by panel, reading w along its rows (a pack runs once per op call: at 128 units it
  // was a tenth of a step's time when done element by element through index()).
  const bool pairs = !std::is_same<T, float>::value;
  for (int64_t j0 = 0; j0 < N; j0 += p.width(j0)) {
    const int64_t w_ = p.width(j0);
    T* dst = p.data.data() + j0 * p.Kp;
    auto at = [&](int64_t k, int64_t c) -> T& {
      return pairs ? dst[((k / 2) * w_ + c) * 2 + k % 2] : dst[k * w_ + c];
    };
    if (transpose) {
      for (int64_t c = 0; c < w_; ++c) {
        const T* src = w + (j0 + c) * K;
        for (int64_t k = 0; k < K; ++k) at(k, c) = src[k];
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const T* src = w + k * N + j0;
        for (int64_t c = 0; c < w_; ++c) at(k, c) = src[c];
      }
    }
  }
  return p;
}

// The weight is read in blocks of KBLOCK rows (pairs of rows in bfloat16): a (KBLOCK, 64)
// slab is 16 KB, so it stays in L1 while every row tile passes over it; partial sums go
// through C between blocks. (A whole (K, 64) slab is 64-128 KB at 512 units: L2 only.)
constexpr int64_t KBLOCK = 64;

// C (R rows x 16V columns from column j, row stride N) (+)= A[:, k0:k1] @ B[k0:k1, j:j+16V]:
// `tile`, for float and (where the CPU has its dot product) bfloat16.
#if defined(__AVX512F__)
// A tile's accumulators: zero on the first block of k, else the partial sums C holds.
template <int R, int V>
__attribute__((always_inline)) inline void load_tile(__m512 (&acc)[R][V], const float* C,
                                                     int64_t N, int64_t j, bool first) {
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v)
      acc[r][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(C + r * N + j + 16 * v);
}

template <int R, int V>
__attribute__((always_inline)) inline void store_tile(__m512 (&acc)[R][V], float* C,
                                                      int64_t N, int64_t j) {
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(C + r * N + j + 16 * v, acc[r][v]);
}

template <int R, int V>
inline void tile(const float* A, int64_t lda, const Packed<float>& B, float* C, int64_t j,
                 int64_t k0, int64_t k1) {
  __m512 acc[R][V];
  load_tile(acc, C, B.N, j, k0 == 0);
  const float* bp = B.panel(j);
  for (int64_t k = k0; k < k1; ++k) {
    __m512 b[V];
    for (int v = 0; v < V; ++v) {
      b[v] = _mm512_loadu_ps(bp + (k * V + v) * 16);
      // Keep b in a register: folded into each FMA as a memory operand, the weight was
      // loaded R times per k, and loads (not FMAs) bounded the tile at ~45 GFLOP/s a core.
      asm("" : "+v"(b[v]));
    }
    for (int r = 0; r < R; ++r) {
      __m512 a = _mm512_set1_ps(A[r * lda + k]);
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  store_tile(acc, C, B.N, j);
}
#else
template <int R, int V>
inline void tile(const float* A, int64_t lda, const Packed<float>& B, float* C, int64_t j,
                 int64_t k0, int64_t k1) {
  v16 acc[R][V];
  const int64_t N = B.N;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) {
      if (k0 == 0) {
        acc[r][v] = v16{};
      } else {
        std::memcpy(&acc[r][v], C + r * N + j + 16 * v, 64);
      }
    }
  for (int64_t k = k0; k < k1; ++k) {
    v16 b[V];
    for (int v = 0; v < V; ++v) std::memcpy(&b[v], B.panel(j) + (k * V + v) * 16, 64);
    for (int r = 0; r < R; ++r) {
      float a = A[r * lda + k];
      for (int v = 0; v < V; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) std::memcpy(C + r * N + j + 16 * v, &acc[r][v], 64);
}
#endif

// C[:, j0:N] = A @ B[:, j0:N] a column at a time: the columns right of the last 16-wide
// panel, and every column where no tile kernel applies.
template <typename T>
void plain_columns(const T* A, int64_t lda, const Packed<T>& B, float* C, int64_t rows,
                   int64_t j0) {
  for (int64_t j = j0; j < B.N; ++j)
    for (int64_t r = 0; r < rows; ++r) {
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < B.K; ++k)
        s += to_float(A[r * lda + k]) * to_float(B.data[B.index(k, j)]);
      C[r * B.N + j] = s;
    }
}

#if defined(__AVX512BF16__)
// In bfloat16, k counts pairs of rows: the unit of the dot product.
template <int R, int V>
inline void tile(const bfloat16* A, int64_t lda, const Packed<bfloat16>& B, float* C,
                 int64_t j, int64_t p0, int64_t p1) {
  __m512 acc[R][V];
  const int64_t pairs = (B.K + 1) / 2, odd = B.K % 2;
  load_tile(acc, C, B.N, j, p0 == 0);
  const bfloat16* bp = B.panel(j);
  for (int64_t p = p0; p < p1; ++p) {
    __m512bh b[V];
    for (int v = 0; v < V; ++v) {
      b[v] = (__m512bh)_mm512_loadu_si512(bp + ((p * V + v) * 16) * 2);
      asm("" : "+v"(b[v]));  // in a register, as in the float tile
    }
    for (int r = 0; r < R; ++r) {
      uint32_t pair;
      if (odd && p == pairs - 1) {
        uint16_t lo;
        std::memcpy(&lo, A + r * lda + 2 * p, 2);
        pair = lo;
      } else {
        std::memcpy(&pair, A + r * lda + 2 * p, 4);
      }
      __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
  }
  store_tile(acc, C, B.N, j);
}
#endif

// C[:, j:j+16V] (+)= A[:, k0:k1] @ B[k0:k1, j:j+16V], four rows at a time.
template <int V, typename T>
void columns(const T* A, int64_t lda, const Packed<T>& B, float* C, int64_t rows, int64_t j,
             int64_t k0, int64_t k1) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) tile<4, V>(A + r * lda, lda, B, C + r * B.N, j, k0, k1);
  for (; r < rows; ++r) tile<1, V>(A + r * lda, lda, B, C + r * B.N, j, k0, k1);
}

// C = A @ B by tiles: 64 and 16 columns wide, KBLOCK rows of B (pairs in bfloat16) at a
// time; the columns right of the last 16-wide panel one by one.
template <typename T>
void tiled_matmul(const T* A, int64_t lda, const Packed<T>& B, float* C, int64_t rows) {
  const int64_t N = B.N, K = std::is_same<T, float>::value ? B.K : (B.K + 1) / 2;
  for (int64_t k0 = 0; k0 < K; k0 += KBLOCK) {
    const int64_t k1 = std::min(K, k0 + KBLOCK);
    int64_t j = 0;
    for (; j + 64 <= N; j += 64) columns<4>(A, lda, B, C, rows, j, k0, k1);
    for (; j + 16 <= N; j += 16) columns<1>(A, lda, B, C, rows, j, k0, k1);
  }
  plain_columns(A, lda, B, C, rows, N / 16 * 16);
}

void matmul(const float* A, int64_t lda, const Packed<float>& B, float* C, int64_t rows) {
  tiled_matmul(A, lda, B, C, rows);
}

void matmul(const bfloat16* A, int64_t lda, const Packed<bfloat16>& B, float* C,
            int64_t rows) {
#if defined(__AVX512BF16__)
  tiled_matmul(A, lda, B, C, rows);
#else
  plain_columns(A, lda, B, C, rows, 0);  // no bfloat16 dot product: exact, in float, slower
#endif
}

// ------------------------------------------------------------------ threads

// Batch rows in blocks, one per intra-op thread; each block goes through every time step on
// its own (rows never interact), so a sequence needs one hand-off, not one per step.
struct Blocks {
  int64_t count = 1, per = 0, rows = 0;
};

Blocks plan_blocks(OpKernelContext* ctx, int64_t rows, int64_t cost) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  Blocks blocks;
  blocks.rows = rows;
  blocks.count = std::min<int64_t>(workers->num_threads, std::max<int64_t>(1, rows / 8));
  if (cost < 200000) blocks.count = 1;  // too little work to be worth a hand-off
  // Block edges on multiples of 4 rows: the matmul's row tile.
  blocks.per = ((rows + blocks.count - 1) / blocks.count + 3) / 4 * 4;
  blocks.count = std::max<int64_t>(1, (rows + blocks.per - 1) / std::max<int64_t>(1, blocks.per));
  return blocks;
}

// Runs fn(block, row_begin, row_end) for every block, in parallel.
template <typename Fn>
void for_blocks(OpKernelContext* ctx, const Blocks& blocks, Fn fn) {
  auto run = [&](int64_t b) {
    int64_t begin = std::min(blocks.rows, b * blocks.per);
    int64_t end = std::min(blocks.rows, (b + 1) * blocks.per);
    if (begin < end) fn(b, begin, end);
  };
  if (blocks.count <= 1) {
    run(0);
    return;
  }
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  workers->workers->ParallelFor(blocks.count, /*cost_per_unit=*/1 << 30,
                                [&](int64_t b0, int64_t b1) {
                                  for (int64_t b = b0; b < b1; ++b) run(b);
                                });
}

Status check(bool ok, const char* what) {
  return ok ? Status() : absl::InvalidArgumentError(what);
}

// Column sums of a block's rows of g (rows x G, row stride ldg) added into sums (G,), in
// float.
template <typename T>
inline void add_columns(const T* g, int64_t ldg, int64_t rows, int64_t G, float* sums) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = g + r * ldg;
#pragma omp simd
    for (int64_t j = 0; j < G; ++j) sums[j] += to_float(row[j]);
  }
}

// The ids input of a grad op: (B, S) values in [0, vocab) when vocab > 0 (then returned),
// anything when vocab is 0 (nullptr).
const int64_t* table_ids(OpKernelContext* ctx, int64_t vocab, int64_t B, int64_t S) {
  if (vocab == 0) return nullptr;
  const Tensor& ids_t = ctx->input(ctx->num_inputs() - 1);
  if (ids_t.NumElements() != B * S) {
    ctx->SetStatus(absl::InvalidArgumentError("ids must be (B, T) when vocab > 0"));
    return nullptr;
  }
  const int64_t* ids = ids_t.flat<int64_t>().data();
  for (int64_t n = 0; n < B * S; ++n)
    if (ids[n] < 0 || ids[n] >= vocab) {
      ctx->SetStatus(absl::InvalidArgumentError("id " + std::to_string(ids[n]) +
                                                " is outside [0, " + std::to_string(vocab) +
                                                ")"));
      return nullptr;
    }
  return ids;
}

// Rows of g (rows x G, row stride ldg) added into table (V, G) at their ids (row r's id at
// ids[r * ids_stride]), in float.
template <typename T>
inline void add_rows_by_id(const T* g, int64_t ldg, int64_t rows, int64_t G,
                           const int64_t* ids, int64_t ids_stride, float* table) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = g + r * ldg;
    float* sums = table + ids[r * ids_stride] * G;
#pragma omp simd
    for (int64_t j = 0; j < G; ++j) sums[j] += to_float(row[j]);
  }
}

// out (n) = the sum of `count` consecutive equal parts of tables (count n).
inline void sum_tables(const std::vector<float>& tables, int64_t count, float* out) {
  const int64_t n = static_cast<int64_t>(tables.size()) / std::max<int64_t>(count, 1);
  std::fill(out, out + n, 0.0f);
  for (int64_t p = 0; p < count; ++p) {
    const float* part = tables.data() + p * n;
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) out[k] += part[k];
  }
}

// ------------------------------------------------------------------ LSTM

// (batch, steps) of a forward op: from xz (B, T, G), or from ids (B, T) when vocab > 0.
Status sequence_dims(InferenceContext* c, DimensionHandle* batch, DimensionHandle* steps) {
  int64_t vocab;
  TF_RETURN_IF_ERROR(c->GetAttr("vocab", &vocab));
  ShapeHandle rows = vocab > 0 ? c->input(c->num_inputs() - 1) : c->input(0);
  *batch = c->Dim(rows, 0);
  *steps = c->Dim(rows, 1);
  return Status();
}

// A forward op's xz, checked: (B, S, G), or (vocab, G) with ids (B, S); S is returned.
int64_t sequence_steps(OpKernelContext* ctx, const Tensor& xz, int64_t vocab, int64_t B,
                       int64_t G) {
  const Tensor& ids = ctx->input(ctx->num_inputs() - 1);
  const bool ok = vocab > 0
      ? xz.dims() == 2 && xz.dim_size(0) == vocab && xz.dim_size(1) == G && ids.dims() == 2 &&
            ids.dim_size(0) == B
      : xz.dims() == 3 && xz.dim_size(0) == B && xz.dim_size(2) == G;
  if (!ok) {
    ctx->SetStatus(absl::InvalidArgumentError(
        vocab > 0 ? "xz must be (vocab, G) and ids (B, T)" : "xz must be (B, T, G)"));
    return 0;
  }
  return vocab > 0 ? ids.dim_size(1) : xz.dim_size(1);
}

// Output `index` allocated with `shape`: its data, or nullptr with the op's status set.
template <typename V>
V* output(OpKernelContext* ctx, int index, const TensorShape& shape) {
  Tensor* t = nullptr;
  const Status status = ctx->allocate_output(index, shape, &t);
  if (!status.ok()) {
    ctx->SetStatus(status);
    return nullptr;
  }
  return t->flat<V>().data();
}

// A gradient op's last two outputs: the bias sums of each block of rows (blocks, G), or
// (blocks, 2, G) with a recurrent bias of its own, and the embedding table (vocab, G).
Status grad_sums_shapes(InferenceContext* c, DimensionHandle G, bool two_biases) {
  int64_t vocab;
  TF_RETURN_IF_ERROR(c->GetAttr("vocab", &vocab));
  c->set_output(3, two_biases ? c->MakeShape({c->UnknownDim(), 2, G})
                              : c->Matrix(c->UnknownDim(), G));
  c->set_output(4, c->Matrix(c->MakeDim(vocab), G));
  return Status();
}

// The recurrent ops' base: the `vocab` attr (> 0: xz and its gradient go by input id).
class VocabKernel : public OpKernel {
 public:
  explicit VocabKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("vocab", &vocab_));
  }
  // A forward op's xz and ids for B rows, and u (H, gates x H), checked: the steps and the
  // ids (nullptr without vocab), or the op's status set (check ctx->status()).
  int64_t forward_steps(OpKernelContext* ctx, const Tensor& xz, const Tensor& u, int64_t B,
                        int64_t H, int gates, const int64_t** ids) const {
    const int64_t S = sequence_steps(ctx, xz, vocab_, B, gates * H);
    if (ctx->status().ok()) *ids = table_ids(ctx, vocab_, B, S);
    if (ctx->status().ok()) check_u(ctx, u, H, gates);
    return S;
  }
  // u (H, gates x H), or the op's status set.
  static void check_u(OpKernelContext* ctx, const Tensor& u, int64_t H, int gates) {
    if (!(u.dims() == 2 && u.dim_size(0) == H && u.dim_size(1) == gates * H))
      ctx->SetStatus(absl::InvalidArgumentError("u must be (H, " + std::to_string(gates) +
                                                "H)"));
  }

 protected:
  int64_t vocab_ = 0;
};

// The forward recurrence shared by both cells' ops: for each block of batch rows and each
// step, rz = h(t-1) @ u for the block's rows (h(-1): the state's h_first), then
// `cell.step(state, b, t, r, x, z)` computes batch row b's (the block's r-th) gates and new
// state from its xz row x (by id with a vocab) and its row z of rz, writing h(t) into hs.
template <typename T, typename Cell>
void forward_through_time(OpKernelContext* ctx, const Blocks& blocks, const Cell& cell,
                          const Tensor& u, const T* xz, const int64_t* ids, const T* hs) {
  const int64_t S = cell.S, H = cell.H, G = u.dim_size(1);
  const Packed<T> U = pack<T>(u.flat<T>().data(), H, G, false);
  for_blocks(ctx, blocks, [&](int64_t, int64_t b0, int64_t b1) {
    const int64_t rows = b1 - b0;
    std::vector<float> rz(rows * G);
    typename Cell::State state = cell.start(b0, b1);
    for (int64_t t = 0; t < S; ++t) {
      if (t == 0) {
        matmul(state.h_first.data(), H, U, rz.data(), rows);
      } else {
        matmul(hs + (b0 * S + t - 1) * H, S * H, U, rz.data(), rows);  // rows T apart
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = (b0 + r) * S + t;
        cell.step(state, b0 + r, t, r, xz + (ids != nullptr ? ids[row] : row) * G,
                  rz.data() + r * G);
      }
    }
    cell.finish(state, b0, b1);
  });
}

// Backpropagation through time, shared by both cells' gradient ops. For each block of batch
// rows and each step from the last to the first, `cell.step(state, b, t, r)` writes batch
// row b's (the block's r-th) gate gradients (G = gates x H wide) from the gradient reaching h(t) through the recurrence
// (state.dh_rec); the step's gradients are then summed into the block's biases and embedding
// table rows, and state.dh_rec = d_rec(t) @ u^T (u: (H, G)) carries the gradient to step
// t - 1. The blocks' bias rows and tables are summed by the caller (biases) and here (tables).
// d_in gets the input bias and the table, d_rec the recurrent bias (when it is another
// array: the GRU's (2, 3H) biases) and the matmul; the LSTM passes one array as both.
template <typename T, typename Cell>
void backward_through_time(OpKernelContext* ctx, const Blocks& blocks, const Cell& cell,
                           const T* d_in, const T* d_rec, const Tensor& u, const int64_t* ids,
                           int64_t vocab, float* d_bias, float* d_table) {
  const int64_t S = cell.S, H = cell.H, G = u.dim_size(1);
  const Packed<T> UT = pack<T>(u.flat<T>().data(), G, H, true);  // (G, H)
  const bool split = d_in != d_rec;
  std::fill(d_bias, d_bias + blocks.count * (split ? 2 : 1) * G, 0.0f);
  std::vector<float> tables(blocks.count * vocab * G, 0.0f);  // one per block
  const int64_t stride = S * G;  // one row's steps: rows of one step are T apart
  for_blocks(ctx, blocks, [&](int64_t block, int64_t b0, int64_t b1) {
    const int64_t rows = b1 - b0;
    typename Cell::State state = cell.start(b0, b1);
    float* bias = d_bias + block * (split ? 2 : 1) * G;
    for (int64_t t = S - 1; t >= 0; --t) {
      for (int64_t r = 0; r < rows; ++r) cell.step(state, b0 + r, t, r);
      const int64_t first = (b0 * S + t) * G;
      add_columns(d_in + first, stride, rows, G, bias);
      if (split) add_columns(d_rec + first, stride, rows, G, bias + G);
      if (ids != nullptr)
        add_rows_by_id(d_in + first, stride, rows, G, ids + b0 * S + t, S,
                       tables.data() + block * vocab * G);
      matmul(d_rec + first, stride, UT, state.dh_rec.data(), rows);
    }
    cell.finish(state, b0, b1);
  });
  sum_tables(tables, blocks.count, d_table);
}

// A forward op (CharlmLstmSequence, CharlmGruSequence). Both take xz, bias, u and h0 (B, H)
// first and ids last; Cell::open(ctx, S, B, H) checks the cell's other inputs, allocates
// its outputs (the op's status set on failure) and returns the cell: its kGates x H gate
// columns, kFlops x H x H flops per row and step (for plan_blocks) and outputs hs first.
template <typename T, typename Cell>
class SequenceOp : public VocabKernel {
 public:
  using VocabKernel::VocabKernel;
  void Compute(OpKernelContext* ctx) override {
    const Tensor &xz = ctx->input(0), &u = ctx->input(2), &h0 = ctx->input(3);
    OP_REQUIRES_OK(ctx, check(h0.dims() == 2, "h0 must be (B, H)"));
    const int64_t B = h0.dim_size(0), H = h0.dim_size(1);
    const int64_t* ids = nullptr;
    const int64_t S = forward_steps(ctx, xz, u, B, H, Cell::kGates, &ids);
    if (!ctx->status().ok()) return;
    const Cell cell = Cell::open(ctx, S, B, H);
    if (!ctx->status().ok()) return;
    forward_through_time(ctx, plan_blocks(ctx, B, S * B * H * Cell::kFlops * H), cell, u,
                         xz.flat<T>().data(), ids, cell.hs);
  }
};

// A gradient op (CharlmLstmSequenceGrad, CharlmGruSequenceGrad). Both take what the forward
// op saved (B, T, kSaved x H) first, a (B, H) state third, u and ids last; Cell::open checks
// the others and allocates outputs 0-2 (the gate gradients d_in and d_rec, one array for
// the LSTM, and the initial states'); outputs 3 and 4 are the sums of biases and table.
template <typename T, typename Cell>
class SequenceGradOp : public VocabKernel {
 public:
  using VocabKernel::VocabKernel;
  void Compute(OpKernelContext* ctx) override {
    const Tensor &saved = ctx->input(0), &state = ctx->input(2),
                 &u = ctx->input(ctx->num_inputs() - 2);
    OP_REQUIRES(ctx, state.dims() == 2, absl::InvalidArgumentError(
                                            std::string(Cell::kStateName) + " must be (B, H)"));
    const int64_t B = state.dim_size(0), H = state.dim_size(1), G = Cell::kGates * H;
    OP_REQUIRES(ctx,
                saved.dims() == 3 && saved.dim_size(0) == B &&
                    saved.dim_size(2) == Cell::kSaved * H,
                absl::InvalidArgumentError(std::string(Cell::kSavedName) + " must be (B, T, " +
                                           std::to_string(Cell::kSaved) + "H)"));
    const int64_t S = saved.dim_size(1);
    check_u(ctx, u, H, Cell::kGates);
    const int64_t* ids = ctx->status().ok() ? table_ids(ctx, vocab_, B, S) : nullptr;
    if (!ctx->status().ok()) return;
    const Blocks blocks = plan_blocks(ctx, B, S * B * H * Cell::kFlops * H);
    const Cell cell = Cell::open(ctx, S, B, H);
    float* d_bias = output<float>(ctx, 3, Cell::bias_shape(blocks.count, H));
    float* d_table = output<float>(ctx, 4, {vocab_, G});
    if (!ctx->status().ok()) return;
    backward_through_time(ctx, blocks, cell, cell.d_in, cell.d_rec, u, ids, vocab_, d_bias,
                          d_table);
  }
};

REGISTER_OP("CharlmLstmSequence")
    .Attr("T: {float, bfloat16}")
    .Input("xz: T")       // (B, T, 4H): x @ kernel, every step; or (vocab, 4H), see ids
    .Input("bias: float")  // (4H,)
    .Input("u: T")        // (H, 4H)
    .Input("h0: T")       // (B, H)
    .Input("c0: float")   // (B, H)
    .Input("ids: int64")  // (B, T) when vocab > 0: step t of row b reads xz[ids[b, t]]
    .Attr("vocab: int >= 0 = 0")
    .Output("hs: T")      // (B, T, H)
    .Output("gates: T")   // (B, T, 4H): i f g o
    .Output("cs: float")  // (B, T, H): the cell state after each step
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle batch, steps, units = c->Dim(c->input(4), 1);
      TF_RETURN_IF_ERROR(sequence_dims(c, &batch, &steps));
      c->set_output(0, c->MakeShape({batch, steps, units}));
      c->set_output(1, c->MakeShape({batch, steps, c->Dim(c->input(2), 1)}));
      c->set_output(2, c->MakeShape({batch, steps, units}));
      return Status();
    });

// The LSTM's step of forward_through_time: gates i f g o, c and h of one row; the gates
// and c are saved for the gradient op.
template <typename T>
struct LstmForward {
  static constexpr int kGates = 4, kFlops = 8;
  int64_t S, H;
  const float* bias;  // (4H,)
  const T* h0;        // (B, H)
  const float* c0;    // (B, H)
  T* hs;              // (B, T, H)
  T* gates;           // (B, T, 4H)
  float* cs;          // (B, T, H)
  struct State {
    std::vector<T> h_first;  // (rows, H)
  };
  State start(int64_t b0, int64_t b1) const {
    return {std::vector<T>(h0 + b0 * H, h0 + b1 * H)};
  }
  void step(State&, int64_t b, int64_t t, int64_t, const T* x, const float* z) const {
    const int64_t row = b * S + t;
    const float* bp = bias;
    T* gv = gates + row * 4 * H;
    float* cv = cs + row * H;
    const float* cprev = t > 0 ? cs + (row - 1) * H : c0 + b * H;
    T* h = hs + row * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      float i = sigmoid(to_float(x[j]) + bp[j] + z[j]);
      float f = sigmoid(to_float(x[H + j]) + bp[H + j] + z[H + j]);
      float g = tanh_(to_float(x[2 * H + j]) + bp[2 * H + j] + z[2 * H + j]);
      float o = sigmoid(to_float(x[3 * H + j]) + bp[3 * H + j] + z[3 * H + j]);
      float cn = f * cprev[j] + i * g;
      h[j] = from_float<T>(o * tanh_(cn));
      gv[j] = from_float<T>(i);
      gv[H + j] = from_float<T>(f);
      gv[2 * H + j] = from_float<T>(g);
      gv[3 * H + j] = from_float<T>(o);
      cv[j] = cn;
    }
  }
  void finish(const State&, int64_t, int64_t) const {}
  static LstmForward open(OpKernelContext* ctx, int64_t S, int64_t B, int64_t H) {
    const Tensor &bias = ctx->input(1), &h0 = ctx->input(3), &c0 = ctx->input(4);
    ctx->SetStatus(check(bias.NumElements() == 4 * H, "bias must be (4H,)"));
    ctx->SetStatus(check(c0.NumElements() == B * H, "c0 must be (B, H)"));
    return {S, H, bias.flat<float>().data(), h0.flat<T>().data(), c0.flat<float>().data(),
            output<T>(ctx, 0, {B, S, H}), output<T>(ctx, 1, {B, S, 4 * H}),
            output<float>(ctx, 2, {B, S, H})};
  }
};

// The LSTM's step of backward_through_time, from the gates (i f g o) and cell states the
// forward op saved; a block's state: the gradients reaching h and c through the recurrence.
template <typename T>
struct LstmBackward {
  static constexpr int kGates = 4, kSaved = 4, kFlops = 8;
  static constexpr const char *kSavedName = "gates", *kStateName = "c0";
  int64_t S, H;
  const T *gates, *d_out;                    // (B, T, 4H), (B, T, H)
  const float *cs, *c0, *dh_last, *dc_last;  // (B, T, H), then (B, H) each
  // (B, T, 4H): the gates' gradients, one array: the LSTM's one bias takes both sides' sums.
  T *d_in, *d_rec;
  float *dh0, *dc0;  // (B, H)
  struct State {
    std::vector<float> dh_rec, dc;  // (rows, H)
  };
  State start(int64_t b0, int64_t b1) const {
    return {std::vector<float>(dh_last + b0 * H, dh_last + b1 * H),
            std::vector<float>(dc_last + b0 * H, dc_last + b1 * H)};
  }
  void step(State& state, int64_t b, int64_t t, int64_t r) const {
    const int64_t row = b * S + t;
    const T* gv = gates + row * 4 * H;
    const float* cprev = t > 0 ? cs + (row - 1) * H : c0 + b * H;
    const float* c = cs + row * H;
    const T* dout = d_out + row * H;
    const float* dhr = state.dh_rec.data() + r * H;
    float* dcr = state.dc.data() + r * H;
    T* d = d_in + row * 4 * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      float i = to_float(gv[j]), f = to_float(gv[H + j]), g = to_float(gv[2 * H + j]),
            o = to_float(gv[3 * H + j]);
      float tc = tanh_(c[j]);
      float dh = to_float(dout[j]) + dhr[j];
      float dct = dcr[j] + dh * o * (1.0f - tc * tc);
      d[j] = from_float<T>(dct * g * i * (1.0f - i));
      d[H + j] = from_float<T>(dct * cprev[j] * f * (1.0f - f));
      d[2 * H + j] = from_float<T>(dct * i * (1.0f - g * g));
      d[3 * H + j] = from_float<T>(dh * tc * o * (1.0f - o));
      dcr[j] = dct * f;
    }
  }
  void finish(const State& state, int64_t b0, int64_t) const {
    std::copy(state.dh_rec.begin(), state.dh_rec.end(), dh0 + b0 * H);
    std::copy(state.dc.begin(), state.dc.end(), dc0 + b0 * H);
  }
  static TensorShape bias_shape(int64_t blocks, int64_t H) { return {blocks, 4 * H}; }
  static LstmBackward open(OpKernelContext* ctx, int64_t S, int64_t B, int64_t H) {
    const Tensor &cs = ctx->input(1), &c0 = ctx->input(2), &d_out = ctx->input(3),
                 &dh = ctx->input(4), &dc = ctx->input(5);
    ctx->SetStatus(check(cs.NumElements() == B * S * H, "cs must be (B, T, H)"));
    ctx->SetStatus(check(d_out.NumElements() == B * S * H, "d_out must be (B, T, H)"));
    ctx->SetStatus(check(dh.NumElements() == B * H && dc.NumElements() == B * H,
                         "dh and dc must be (B, H)"));
    T* dz = output<T>(ctx, 0, {B, S, 4 * H});
    return {S, H, ctx->input(0).flat<T>().data(), d_out.flat<T>().data(),
            cs.flat<float>().data(), c0.flat<float>().data(), dh.flat<float>().data(),
            dc.flat<float>().data(), dz, dz, output<float>(ctx, 1, {B, H}),
            output<float>(ctx, 2, {B, H})};
  }
};

REGISTER_OP("CharlmLstmSequenceGrad")
    .Attr("T: {float, bfloat16}")
    .Input("gates: T")      // (B, T, 4H): i f g o
    .Input("cs: float")     // (B, T, H)
    .Input("c0: float")     // (B, H)
    .Input("d_out: T")      // (B, T, H)
    .Input("dh: float")     // (B, H): gradient of the final h
    .Input("dc: float")     // (B, H): gradient of the final c
    .Input("u: T")          // (H, 4H)
    .Input("ids: int64")    // (B, T) input ids when vocab > 0, else empty
    .Attr("vocab: int >= 0 = 0")
    .Output("dz: T")        // (B, T, 4H): gradient of the gates' pre-activations
    .Output("dh0: float")   // (B, H)
    .Output("dc0: float")   // (B, H)
    .Output("d_bias: float")  // (P, 4H): dz summed over steps and rows, one row per block
    .Output("d_table: float")  // (vocab, 4H): dz summed by id
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle gates = c->input(0);  // (B, T, 4H)
      c->set_output(0, gates);
      c->set_output(1, c->input(2));  // dh0 and dc0 as c0: (B, H)
      c->set_output(2, c->input(2));
      return grad_sums_shapes(c, c->Dim(gates, 2), false);
    });

// ------------------------------------------------------------------ GRU

REGISTER_OP("CharlmGruSequence")
    .Attr("T: {float, bfloat16}")
    .Input("xz: T")                // (B, T, 3H): x @ kernel, every step; or (vocab, 3H)
    .Input("bias: float")          // (2, 3H): input, recurrent
    .Input("u: T")                 // (H, 3H)
    .Input("h0: float")            // (B, H)
    .Input("ids: int64")           // (B, T) when vocab > 0: xz rows by id, as in the LSTM
    .Attr("vocab: int >= 0 = 0")
    .Output("hs: T")               // (B, T, H)
    .Output("saved: float")        // (B, T, 5H): z r hh rh h_prev
    .Output("h: float")            // (B, H)
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle batch, steps, units = c->Dim(c->input(3), 1);
      TF_RETURN_IF_ERROR(sequence_dims(c, &batch, &steps));
      DimensionHandle five;
      TF_RETURN_IF_ERROR(c->Multiply(units, 5, &five));
      c->set_output(0, c->MakeShape({batch, steps, units}));
      c->set_output(1, c->MakeShape({batch, steps, five}));
      c->set_output(2, c->Matrix(batch, units));
      return Status();
    });

// The GRU's step of forward_through_time (Keras' reset_after form): z, r, the candidate hh
// and the new h of one row, with what the gradient op needs saved; a block's state is h in
// float (hs holds it in T).
template <typename T>
struct GruForward {
  static constexpr int kGates = 3, kFlops = 6;
  int64_t S, H;
  const float* bias;  // (2, 3H): input, recurrent
  const float* h0;    // (B, H)
  T* hs;              // (B, T, H)
  float* saved;       // (B, T, 5H): z r hh rh h_prev
  float* h_last;      // (B, H)
  struct State {
    std::vector<T> h_first;  // (rows, H)
    std::vector<float> h;    // (rows, H)
  };
  State start(int64_t b0, int64_t b1) const {
    State state{std::vector<T>((b1 - b0) * H), std::vector<float>(h0 + b0 * H, h0 + b1 * H)};
    for (int64_t k = 0; k < (b1 - b0) * H; ++k) state.h_first[k] = from_float<T>(state.h[k]);
    return state;
  }
  void step(State& state, int64_t b, int64_t t, int64_t r, const T* x, const float* z) const {
    const int64_t row = b * S + t;
    const float* ib = bias;
    const float* rb = bias + 3 * H;
    float* sv = saved + row * 5 * H;
    float* hr = state.h.data() + r * H;
    T* out = hs + row * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      float zg = sigmoid(to_float(x[j]) + ib[j] + z[j] + rb[j]);
      float rg = sigmoid(to_float(x[H + j]) + ib[H + j] + z[H + j] + rb[H + j]);
      float rh = z[2 * H + j] + rb[2 * H + j];
      float hh = tanh_(to_float(x[2 * H + j]) + ib[2 * H + j] + rg * rh);
      float prev = hr[j];
      float hn = hh + zg * (prev - hh);
      hr[j] = hn;
      out[j] = from_float<T>(hn);
      sv[j] = zg;
      sv[H + j] = rg;
      sv[2 * H + j] = hh;
      sv[3 * H + j] = rh;
      sv[4 * H + j] = prev;
    }
  }
  void finish(const State& state, int64_t b0, int64_t) const {
    std::copy(state.h.begin(), state.h.end(), h_last + b0 * H);
  }
  static GruForward open(OpKernelContext* ctx, int64_t S, int64_t B, int64_t H) {
    const Tensor &bias = ctx->input(1), &h0 = ctx->input(3);
    ctx->SetStatus(check(bias.NumElements() == 6 * H, "bias must be (2, 3H)"));
    return {S, H, bias.flat<float>().data(), h0.flat<float>().data(),
            output<T>(ctx, 0, {B, S, H}), output<float>(ctx, 1, {B, S, 5 * H}),
            output<float>(ctx, 2, {B, H})};
  }
};

// The GRU's step of backward_through_time, from z r hh rh h_prev the forward op saved; a
// block's state: the gradient reaching h(t) through u (dh_rec) and through h(t+1)'s z.
template <typename T>
struct GruBackward {
  static constexpr int kGates = 3, kSaved = 5, kFlops = 6;
  static constexpr const char *kSavedName = "saved", *kStateName = "dh";
  int64_t S, H;
  const float *saved, *dh_last;  // (B, T, 5H), (B, H)
  const T* d_out;                // (B, T, H)
  T *d_in, *d_rec;  // (B, T, 3H) each: the input side's gate gradients, the recurrent side's
  float* dh0;       // (B, H)
  struct State {
    std::vector<float> dh_rec, carry;  // (rows, H): dh(t+1) z(t+1), then the final h's
  };
  State start(int64_t b0, int64_t b1) const {
    return {std::vector<float>((b1 - b0) * H, 0.0f),
            std::vector<float>(dh_last + b0 * H, dh_last + b1 * H)};
  }
  void step(State& state, int64_t b, int64_t t, int64_t r) const {
    const int64_t row = b * S + t;
    const float* sv = saved + row * 5 * H;
    const T* dout = d_out + row * H;
    const float* dhr = state.dh_rec.data() + r * H;
    float* cr = state.carry.data() + r * H;
    T* di = d_in + row * 3 * H;
    T* dq = d_rec + row * 3 * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      float zg = sv[j], rg = sv[H + j], hh = sv[2 * H + j], rh = sv[3 * H + j];
      float prev = sv[4 * H + j];
      float dh = to_float(dout[j]) + dhr[j] + cr[j];
      float da = dh * (1.0f - zg) * (1.0f - hh * hh);
      float dzg = dh * (prev - hh) * zg * (1.0f - zg);
      float dr = da * rh * rg * (1.0f - rg);
      di[j] = from_float<T>(dzg);
      di[H + j] = from_float<T>(dr);
      di[2 * H + j] = from_float<T>(da);
      dq[j] = from_float<T>(dzg);
      dq[H + j] = from_float<T>(dr);
      dq[2 * H + j] = from_float<T>(da * rg);
      cr[j] = dh * zg;
    }
  }
  void finish(const State& state, int64_t b0, int64_t b1) const {
    for (int64_t k = 0; k < (b1 - b0) * H; ++k)
      dh0[b0 * H + k] = state.dh_rec[k] + state.carry[k];
  }
  static TensorShape bias_shape(int64_t blocks, int64_t H) { return {blocks, 2, 3 * H}; }
  static GruBackward open(OpKernelContext* ctx, int64_t S, int64_t B, int64_t H) {
    const Tensor& d_out = ctx->input(1);
    ctx->SetStatus(check(d_out.NumElements() == B * S * H, "d_out must be (B, T, H)"));
    return {S, H, ctx->input(0).flat<float>().data(), ctx->input(2).flat<float>().data(),
            d_out.flat<T>().data(), output<T>(ctx, 0, {B, S, 3 * H}),
            output<T>(ctx, 1, {B, S, 3 * H}), output<float>(ctx, 2, {B, H})};
  }
};

REGISTER_OP("CharlmGruSequenceGrad")
    .Attr("T: {float, bfloat16}")
    .Input("saved: float")   // (B, T, 5H)
    .Input("d_out: T")       // (B, T, H)
    .Input("dh: float")      // (B, H): gradient of the final state
    .Input("u: T")           // (H, 3H)
    .Input("ids: int64")     // (B, T) input ids when vocab > 0, else empty
    .Attr("vocab: int >= 0 = 0")
    .Output("d_in: T")       // (B, T, 3H): gradient of x @ kernel
    .Output("d_rec: T")      // (B, T, 3H): gradient of h @ u + recurrent bias
    .Output("dh0: float")    // (B, H)
    .Output("d_bias: float")  // (P, 2, 3H): d_in and d_rec summed, one row per block
    .Output("d_table: float")  // (vocab, 3H): d_in summed by id
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle saved = c->input(0);  // (B, T, 5H)
      DimensionHandle three;
      TF_RETURN_IF_ERROR(c->Multiply(c->Dim(c->input(2), 1), 3, &three));
      ShapeHandle gates = c->MakeShape({c->Dim(saved, 0), c->Dim(saved, 1), three});
      c->set_output(0, gates);
      c->set_output(1, gates);
      c->set_output(2, c->input(2));  // dh0 as dh: (B, H)
      return grad_sums_shapes(c, three, true);
    });

// ------------------------------------------------------------------ softmax cross-entropy

// The per-character loss, forward and backward, in one pass over each row of logits each way.
// TensorFlow's SparseSoftmaxCrossEntropyWithLogits (built for a baseline x86) and the ops
// around it took ~3 ms a batch at 128 units, batch 128: a tenth of the step.
//   forward  logits (N, V) float, labels (N,) int64 -> nll (N,) float, lse (N,) float (the
//            log-sum-exp of each row, for the backward pass)
//   backward logits, labels, lse, d_nll (N,) -> d_logits (N, V) = d_nll (softmax - onehot)

// The largest of row[0, V): by hand where AVX-512 is (where NaN is honoured, std::fmax is a
// call per logit and the pragma's max reduction compiled to code 1.7x slower); a NaN is
// passed over, and makes the loss's sum of exps NaN instead.
inline float row_max(const float* row, int64_t V) {
#if defined(__AVX512F__)
  const __m512 lowest = _mm512_set1_ps(-INFINITY);
  __m512 m = lowest;
  int64_t v = 0;
  for (; v + 16 <= V; v += 16) m = _mm512_max_ps(_mm512_loadu_ps(row + v), m);
  if (v < V)
    m = _mm512_max_ps(
        _mm512_mask_loadu_ps(lowest, static_cast<__mmask16>((1u << (V - v)) - 1u), row + v), m);
  return _mm512_reduce_max_ps(m);
#else
  float top = row[0];
#pragma omp simd reduction(max : top)
  for (int64_t v = 1; v < V; ++v) top = row[v] > top ? row[v] : top;
  return top;
#endif
}

REGISTER_OP("CharlmSparseXent")
    .Input("logits: float")   // (N, V)
    .Input("labels: int64")   // (N,)
    .Output("nll: float")     // (N,)
    .Output("lse: float")     // (N,)
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle rows = c->Dim(c->input(0), 0);
      c->set_output(0, c->Vector(rows));
      c->set_output(1, c->Vector(rows));
      return Status();
    });

class SparseXent : public OpKernel {
 public:
  explicit SparseXent(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor &logits_t = ctx->input(0), &labels_t = ctx->input(1);
    OP_REQUIRES_OK(ctx, check(logits_t.dims() == 2, "logits must be (N, V)"));
    const int64_t N = logits_t.dim_size(0), V = logits_t.dim_size(1);
    OP_REQUIRES_OK(ctx, check(labels_t.NumElements() == N, "labels must be (N,)"));
    const float* logits = logits_t.flat<float>().data();
    const int64_t* labels = labels_t.flat<int64_t>().data();
    for (int64_t n = 0; n < N; ++n)
      OP_REQUIRES(ctx, labels[n] >= 0 && labels[n] < V,
                  absl::InvalidArgumentError("label " + std::to_string(labels[n]) +
                                             " is outside [0, " + std::to_string(V) + ")"));
    float* nll = output<float>(ctx, 0, {N});
    float* lse = output<float>(ctx, 1, {N});
    if (!ctx->status().ok()) return;
    for_blocks(ctx, plan_blocks(ctx, N, N * V * 16), [&](int64_t, int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const float* row = logits + n * V;
        const float top = row_max(row, V);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t v = 0; v < V; ++v) sum += exp_(row[v] - top);
        lse[n] = top + std::log(sum);
        nll[n] = lse[n] - row[labels[n]];
      }
    });
  }
};

REGISTER_OP("CharlmSparseXentGrad")
    .Input("logits: float")   // (N, V)
    .Input("labels: int64")   // (N,)
    .Input("lse: float")      // (N,)
    .Input("d_nll: float")    // (N,)
    .Output("d_logits: float")  // (N, V)
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return Status();
    });

class SparseXentGrad : public OpKernel {
 public:
  explicit SparseXentGrad(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor &logits_t = ctx->input(0), &labels_t = ctx->input(1), &lse_t = ctx->input(2),
                 &d_t = ctx->input(3);
    OP_REQUIRES_OK(ctx, check(logits_t.dims() == 2, "logits must be (N, V)"));
    const int64_t N = logits_t.dim_size(0), V = logits_t.dim_size(1);
    OP_REQUIRES_OK(ctx, check(labels_t.NumElements() == N && lse_t.NumElements() == N &&
                                  d_t.NumElements() == N, "labels, lse and d_nll must be (N,)"));
    Tensor* out_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({N, V}), &out_t));
    const float* logits = logits_t.flat<float>().data();
    const int64_t* labels = labels_t.flat<int64_t>().data();
    const float* lse = lse_t.flat<float>().data();
    const float* d = d_t.flat<float>().data();
    float* out = out_t->flat<float>().data();
    for_blocks(ctx, plan_blocks(ctx, N, N * V * 16), [&](int64_t, int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const float* row = logits + n * V;
        float* o = out + n * V;
        const float scale = d[n], shift = lse[n];
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) o[v] = scale * exp_(row[v] - shift);
        const int64_t label = labels[n];
        if (label >= 0 && label < V) o[label] -= scale;
      }
    });
  }
};

// The instruction sets this build uses, as its compiler saw them (-march=native on the CPU
// that built it): the AVX-512 matmul tiles, AVX512_BF16 dot products, and what the compiler
// vectorises the gate math with. charlm.kernels reads it (ctypes) for `charlm kernels` and
// the record of every training.
extern "C" const char* charlm_kernel_features() {
  return ""
#if defined(__AVX2__)
         " avx2"
#endif
#if defined(__FMA__)
         " fma"
#endif
#if defined(__AVX512F__)
         " avx512f"
#endif
#if defined(__AVX512BF16__)
         " avx512_bf16"
#endif
#if defined(__ARM_NEON)
         " neon"
#endif
      ;
}

// The recurrent ops' kernels: one op class each way, for either cell.
template <typename T>
using LstmSequence = SequenceOp<T, LstmForward<T>>;
template <typename T>
using LstmSequenceGrad = SequenceGradOp<T, LstmBackward<T>>;
template <typename T>
using GruSequence = SequenceOp<T, GruForward<T>>;
template <typename T>
using GruSequenceGrad = SequenceGradOp<T, GruBackward<T>>;

#define REGISTER(NAME, KERNEL)                                                              \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name(NAME).Device(tensorflow::DEVICE_CPU).TypeConstraint<float>("T"), KERNEL<float>); \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name(NAME).Device(tensorflow::DEVICE_CPU).TypeConstraint<bfloat16>("T"), KERNEL<bfloat16>);

REGISTER("CharlmLstmSequence", LstmSequence)
REGISTER("CharlmLstmSequenceGrad", LstmSequenceGrad)
REGISTER("CharlmGruSequence", GruSequence)
REGISTER("CharlmGruSequenceGrad", GruSequenceGrad)
REGISTER_KERNEL_BUILDER(Name("CharlmSparseXent").Device(tensorflow::DEVICE_CPU), SparseXent);
REGISTER_KERNEL_BUILDER(Name("CharlmSparseXentGrad").Device(tensorflow::DEVICE_CPU),
                        SparseXentGrad);

}  // namespace charlm
