// CPU kernels of multi-scale deformable attention (layouts in msda.h).
//
// Forward: work items are (n, m, q) in that order, split into contiguous ranges across threads,
// so a thread walks one head's value slice (L2-sized) query after query. The bilinear corners of
// a query's sampling points are resolved first, several points per SIMD instruction (row + weight);
// the channel loop is then four contiguous D-vector FMAs per point. A corner outside the map reads
// a row of zeros instead of branching.
//
// Backward: one task per (n, m) owns grad_value[n, :, m, :] and walks every query in order, so
// no two threads write the same element and the summation order is fixed: the result has the
// same bits on every run and for every thread count. The gradients of the sampling location
// and attention weight come from the same pass (the four corner dot products with grad_output).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "msda.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define MSDA_X86_DISPATCH 1
#endif

#if !defined(__GNUC__)
#error "msda_cpu.cpp uses GCC/Clang vector extensions and builtins"
#endif
#define MSDA_INLINE inline __attribute__((always_inline))
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)  // GCC >= 12, Clang
#define MSDA_HAS_SHUFFLEVECTOR 1
#endif
#endif
#ifndef MSDA_HAS_SHUFFLEVECTOR
#define MSDA_HAS_SHUFFLEVECTOR 0
#endif

namespace assignlab_msda {
namespace {

struct Sizes {
  int64_t batch, spatial, heads, channels, queries, levels, points;
};

// Per sampling point i = l * P + p (the same for every query and head): the size and offset of
// its level, so the footprint loop below runs over points without looking levels up.
template <typename scalar_t>
struct PointLevels {
  std::vector<scalar_t> width, height;
  std::vector<int64_t> start;  // level_start_index of the point's level

  PointLevels(const int64_t* shapes, const int64_t* starts, int64_t levels, int64_t points) {
    for (int64_t l = 0; l < levels; ++l) {
      for (int64_t p = 0; p < points; ++p) {
        height.push_back(static_cast<scalar_t>(shapes[2 * l]));
        width.push_back(static_cast<scalar_t>(shapes[2 * l + 1]));
        start.push_back(starts[l]);
      }
    }
  }
};

// Bilinear footprints of up to kBlock consecutive sampling points of one (query, head). Corners are
// ordered (y0,x0), (y0,x1), (y1,x0), (y1,x1); a corner outside the map has weight 0 and inside 0.
constexpr int kBlock = 16;

template <typename scalar_t>
struct Footprints {
  int32_t row[4][kBlock];      // y * W + x within the level, 0 outside the map
  int32_t inside[4][kBlock];   // 1 inside the map, 0 outside
  scalar_t weight[4][kBlock];  // bilinear weight, 0 outside the map
  scalar_t fx[kBlock], fy[kBlock];
};

// SIMD types of the footprint pass (GCC/Clang vector extensions; the compiler maps them to AVX2 in
// the AVX2 build and to pairs of SSE registers in the portable one).
template <typename scalar_t>
struct Simd;
template <>
struct Simd<float> {
  static constexpr int kLanes = 8;
  typedef float Vector __attribute__((vector_size(32)));
  typedef int32_t Index __attribute__((vector_size(32)));
  static MSDA_INLINE float sum(Vector v) {  // lane-halving tree, the same order on every call
#if MSDA_HAS_SHUFFLEVECTOR
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
    v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
    return v[0];
#else
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
#endif
  }
};
template <>
struct Simd<double> {
  static constexpr int kLanes = 4;
  typedef double Vector __attribute__((vector_size(32)));
  typedef int32_t Index __attribute__((vector_size(16)));
  static MSDA_INLINE double sum(Vector v) {
#if MSDA_HAS_SHUFFLEVECTOR
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1);
    v += __builtin_shufflevector(v, v, 1, 0, 3, 2);
    return v[0];
#else
    return (v[0] + v[2]) + (v[1] + v[3]);
#endif
  }
};

// Footprints of `count` <= kBlock consecutive points, kLanes points at a time. Range tests happen in
// floating point before any integer conversion, so huge or NaN locations cannot overflow one, and
// corners outside the map are masked by selects, not branches. A non-finite location reads only the
// zero row but carries NaN weights and fractions, so its output and gradients are NaN.
template <typename scalar_t>
MSDA_INLINE void compute_footprints(const scalar_t* loc, const PointLevels<scalar_t>& levels, int64_t first,
                                    int count, Footprints<scalar_t>& f) {
  using V = typename Simd<scalar_t>::Vector;
  using I = typename Simd<scalar_t>::Index;
  constexpr int kLanes = Simd<scalar_t>::kLanes;
  scalar_t xs[kBlock], ys[kBlock], ws[kBlock], hs[kBlock];
  for (int j = 0; j < kBlock; ++j) {  // de-interleave (x, y); lanes past `count` get a harmless point
    const bool used = j < count;
    xs[j] = used ? loc[2 * (first + j)] : scalar_t(0);
    ys[j] = used ? loc[2 * (first + j) + 1] : scalar_t(0);
    ws[j] = used ? levels.width[first + j] : scalar_t(1);
    hs[j] = used ? levels.height[first + j] : scalar_t(1);
  }
  const V zero = V{} + scalar_t(0), one = zero + scalar_t(1), half = zero + scalar_t(0.5), low = zero - 2;
  for (int j0 = 0; j0 < count; j0 += kLanes) {
    V x, y, width, height;
    std::memcpy(&x, xs + j0, sizeof(V));
    std::memcpy(&y, ys + j0, sizeof(V));
    std::memcpy(&width, ws + j0, sizeof(V));
    std::memcpy(&height, hs + j0, sizeof(V));
    x = x * width - half;
    y = y * height - half;
    // A NaN or infinite location yields NaN (as grid_sample does) through NaN weights and fractions.
    const auto finite = ((x - x) == zero) & ((y - y) == zero);
    const V poison = finite ? zero : zero + std::numeric_limits<scalar_t>::quiet_NaN();
    // Clamp to [-2, size + 1]: beyond that no corner is on the map; NaN compares false and lands on -2.
    x = x > low ? (x < width + one ? x : width + one) : low;
    y = y > low ? (y < height + one ? y : height + one) : low;
    const V xt = __builtin_convertvector(__builtin_convertvector(x, I), V);  // truncation toward zero
    const V yt = __builtin_convertvector(__builtin_convertvector(y, I), V);
    const V x0 = xt > x ? xt - one : xt, y0 = yt > y ? yt - one : yt;  // floor
    const V fx = x - x0 + poison, fy = y - y0 + poison;
    const auto in_x0 = (x0 >= zero) & (x0 <= width - one), in_x1 = (x0 >= -one) & (x0 <= width - 2);
    const auto in_y0 = (y0 >= zero) & (y0 <= height - one), in_y1 = (y0 >= -one) & (y0 <= height - 2);
    const V row = y0 * width + x0;  // exact: check_levels keeps H * W below 2^24
    const decltype(in_x0) inside[4] = {in_y0 & in_x0, in_y0 & in_x1, in_y1 & in_x0, in_y1 & in_x1};
    const V rows[4] = {row, row + one, row + width, row + width + one};
    const V bilinear[4] = {(one - fy) * (one - fx), (one - fy) * fx, fy * (one - fx), fy * fx};
    for (int c = 0; c < 4; ++c) {
      const I corner_row = __builtin_convertvector(inside[c] ? rows[c] : zero, I);
      const I corner_inside = __builtin_convertvector(inside[c] ? one : zero, I);
      const V corner_weight = inside[c] ? bilinear[c] : poison;
      std::memcpy(f.row[c] + j0, &corner_row, sizeof(I));
      std::memcpy(f.inside[c] + j0, &corner_inside, sizeof(I));
      std::memcpy(f.weight[c] + j0, &corner_weight, sizeof(V));
    }
    std::memcpy(f.fx + j0, &fx, sizeof(V));
    std::memcpy(f.fy + j0, &fy, sizeof(V));
  }
}

// Consecutive queries of one head are a row (M * L * P values) apart in sampling_locations and
// attention_weights, a stride the hardware prefetchers follow too late: ask for the rows of the
// query kAhead steps on.
constexpr int64_t kAhead = 2;

template <typename scalar_t>
MSDA_INLINE void prefetch_query(const scalar_t* loc, const scalar_t* attn, int64_t lp) {
  constexpr int64_t per_line = 64 / sizeof(scalar_t);
  for (int64_t k = 0; k < 2 * lp; k += per_line) __builtin_prefetch(loc + k);
  for (int64_t k = 0; k < lp; k += per_line) __builtin_prefetch(attn + k);
}

// The corner rows of a point are scattered over the map: fetch those of the point kPointsAhead
// on while the current one is processed (outside corners fetch row 0 of the level, harmlessly).
constexpr int kPointsAhead = 2;

template <bool kWrite, typename scalar_t>
MSDA_INLINE void prefetch_corners(const scalar_t* level, const Footprints<scalar_t>& f, int j, int64_t row_stride,
                                  int64_t row_bytes) {
  for (int c = 0; c < 4; ++c) {
    const char* row = reinterpret_cast<const char*>(level + f.row[c][j] * row_stride);
    for (int64_t offset = 0; offset < row_bytes; offset += 64) __builtin_prefetch(row + offset, kWrite);
  }
}

template <typename scalar_t>
struct ForwardArgs {
  Sizes size;
  const scalar_t* value;
  const scalar_t* locations;
  const scalar_t* weights;
  const scalar_t* zeros;  // D zeros: the row read for corners outside the map
  const PointLevels<scalar_t>* point_levels;
  scalar_t* output;
};

// kD > 0: the channel count is a compile-time constant (the common head sizes), so the channel
// loops unroll fully and the accumulator stays in registers; kD == 0 handles any D.
template <typename scalar_t, int kD>
MSDA_INLINE void forward_items(const ForwardArgs<scalar_t>& a, int64_t begin, int64_t end) {
  const Sizes& s = a.size;
  const int64_t D = kD > 0 ? kD : s.channels, row_stride = s.heads * D, lp = s.levels * s.points;
  scalar_t local[kD > 0 ? kD : 1];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t q = item % s.queries;
    const int64_t m = (item / s.queries) % s.heads;
    const int64_t n = item / (s.queries * s.heads);
    const int64_t nqm = (n * s.queries + q) * s.heads + m;
    scalar_t* const out = a.output + nqm * D;
    scalar_t* __restrict__ acc = kD > 0 ? local : out;
    const scalar_t* loc = a.locations + nqm * lp * 2;
    const scalar_t* attn = a.weights + nqm * lp;
    const scalar_t* value_nm = a.value + n * s.spatial * row_stride + m * D;
    if (q + kAhead < s.queries) prefetch_query(loc + kAhead * s.heads * lp * 2, attn + kAhead * s.heads * lp, lp);
    for (int64_t d = 0; d < D; ++d) acc[d] = 0;
    Footprints<scalar_t> f;
    for (int64_t first = 0; first < lp; first += kBlock) {
      const int count = static_cast<int>(std::min<int64_t>(kBlock, lp - first));
      compute_footprints(loc, *a.point_levels, first, count, f);
      for (int j = 0; j < count; ++j) {
        if (j + kPointsAhead < count) {
          const int64_t ahead = a.point_levels->start[first + j + kPointsAhead] * row_stride;
          prefetch_corners<false>(value_nm + ahead, f, j + kPointsAhead, row_stride, D * sizeof(scalar_t));
        }
        const scalar_t w = attn[first + j];
        // Indexing by the inside flag selects the zero row without a branch or a select that the
        // compiler could sink into the channel loop (which would stop its vectorisation).
        const scalar_t* const bases[2] = {a.zeros, value_nm + a.point_levels->start[first + j] * row_stride};
        const scalar_t* __restrict__ v0 = bases[f.inside[0][j]] + f.row[0][j] * row_stride;
        const scalar_t* __restrict__ v1 = bases[f.inside[1][j]] + f.row[1][j] * row_stride;
        const scalar_t* __restrict__ v2 = bases[f.inside[2][j]] + f.row[2][j] * row_stride;
        const scalar_t* __restrict__ v3 = bases[f.inside[3][j]] + f.row[3][j] * row_stride;
        const scalar_t w0 = w * f.weight[0][j], w1 = w * f.weight[1][j];
        const scalar_t w2 = w * f.weight[2][j], w3 = w * f.weight[3][j];
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) {
          acc[d] += w0 * v0[d] + w1 * v1[d] + w2 * v2[d] + w3 * v3[d];
        }
      }
    }
    if (kD > 0) {
      for (int64_t d = 0; d < D; ++d) out[d] = acc[d];
    }
  }
}

template <typename scalar_t>
struct BackwardArgs {
  Sizes size;
  const scalar_t* grad_output;
  const scalar_t* value;
  const scalar_t* locations;
  const scalar_t* weights;
  const scalar_t* zeros;
  const PointLevels<scalar_t>* point_levels;
  scalar_t* grad_value;
  scalar_t* grad_locations;
  scalar_t* grad_weights;
};

// Items are (n, m) pairs; `sink` (4 * D scratch values) absorbs the grad_value updates of
// corners outside the map so the channel loop needs no branch.
template <typename scalar_t, int kD>
MSDA_INLINE void backward_items(const BackwardArgs<scalar_t>& a, int64_t begin, int64_t end, scalar_t* sink) {
  const Sizes& s = a.size;
  const int64_t D = kD > 0 ? kD : s.channels, row_stride = s.heads * D, lp = s.levels * s.points;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t m = item % s.heads, n = item / s.heads;
    const int64_t offset_nm = n * s.spatial * row_stride + m * D;
    const scalar_t* value_nm = a.value + offset_nm;
    scalar_t* grad_value_nm = a.grad_value + offset_nm;
    for (int64_t q = 0; q < s.queries; ++q) {
      const int64_t nqm = (n * s.queries + q) * s.heads + m;
      const scalar_t* __restrict__ g = a.grad_output + nqm * D;
      const scalar_t* loc = a.locations + nqm * lp * 2;
      const scalar_t* attn = a.weights + nqm * lp;
      scalar_t* grad_loc = a.grad_locations + nqm * lp * 2;
      scalar_t* grad_attn = a.grad_weights + nqm * lp;
      if (q + kAhead < s.queries) {
        prefetch_query(loc + kAhead * s.heads * lp * 2, attn + kAhead * s.heads * lp, lp);
        for (int64_t d = 0; d < D; d += 64 / sizeof(scalar_t)) __builtin_prefetch(g + kAhead * row_stride + d);
      }
      Footprints<scalar_t> f;
      for (int64_t first = 0; first < lp; first += kBlock) {
        const int count = static_cast<int>(std::min<int64_t>(kBlock, lp - first));
        compute_footprints(loc, *a.point_levels, first, count, f);
        for (int j = 0; j < count; ++j) {
          const int64_t i = first + j;
          if (j + kPointsAhead < count) {
            const int64_t ahead = a.point_levels->start[i + kPointsAhead] * row_stride;
            prefetch_corners<false>(value_nm + ahead, f, j + kPointsAhead, row_stride, D * sizeof(scalar_t));
            prefetch_corners<true>(grad_value_nm + ahead, f, j + kPointsAhead, row_stride, D * sizeof(scalar_t));
          }
          const scalar_t w = attn[i];
          const int64_t start = a.point_levels->start[i] * row_stride;
          const scalar_t* const value_bases[2] = {a.zeros, value_nm + start};
          const scalar_t* __restrict__ v[4];
          scalar_t* __restrict__ gv[4];
          for (int c = 0; c < 4; ++c) {
            scalar_t* const grad_bases[2] = {sink + c * D, grad_value_nm + start};
            v[c] = value_bases[f.inside[c][j]] + f.row[c][j] * row_stride;
            gv[c] = grad_bases[f.inside[c][j]] + f.row[c][j] * row_stride;
          }
          const scalar_t b0 = f.weight[0][j], b1 = f.weight[1][j], b2 = f.weight[2][j], b3 = f.weight[3][j];
          const scalar_t fx = f.fx[j], fy = f.fy[j];
          const scalar_t w0 = w * b0, w1 = w * b1, w2 = w * b2, w3 = w * b3;
          const scalar_t *v0 = v[0], *v1 = v[1], *v2 = v[2], *v3 = v[3];
          scalar_t *gv0 = gv[0], *gv1 = gv[1], *gv2 = gv[2], *gv3 = gv[3];
          scalar_t d_attn, d_fx, d_fy;  // gradients w.r.t. the attention weight and the cell fractions
          if constexpr (kD > 0 && kD % Simd<scalar_t>::kLanes == 0) {
            // Whole vectors of channels: corner dot products stay per lane, are combined into the three
            // gradients lane by lane, and only those three are summed across lanes.
            using V = typename Simd<scalar_t>::Vector;
            constexpr int L = Simd<scalar_t>::kLanes;
            const V zero = V{} + scalar_t(0);
            const V w0v = zero + w0, w1v = zero + w1, w2v = zero + w2, w3v = zero + w3;
            V s0 = zero, s1 = zero, s2 = zero, s3 = zero;
            for (int d0 = 0; d0 < kD; d0 += L) {
              V gd, a0, a1, a2, a3, r0, r1, r2, r3;
              std::memcpy(&gd, g + d0, sizeof(V));
              std::memcpy(&a0, v0 + d0, sizeof(V));
              std::memcpy(&a1, v1 + d0, sizeof(V));
              std::memcpy(&a2, v2 + d0, sizeof(V));
              std::memcpy(&a3, v3 + d0, sizeof(V));
              std::memcpy(&r0, gv0 + d0, sizeof(V));
              std::memcpy(&r1, gv1 + d0, sizeof(V));
              std::memcpy(&r2, gv2 + d0, sizeof(V));
              std::memcpy(&r3, gv3 + d0, sizeof(V));
              s0 += a0 * gd;
              s1 += a1 * gd;
              s2 += a2 * gd;
              s3 += a3 * gd;
              r0 += w0v * gd;
              r1 += w1v * gd;
              r2 += w2v * gd;
              r3 += w3v * gd;
              std::memcpy(gv0 + d0, &r0, sizeof(V));
              std::memcpy(gv1 + d0, &r1, sizeof(V));
              std::memcpy(gv2 + d0, &r2, sizeof(V));
              std::memcpy(gv3 + d0, &r3, sizeof(V));
            }
            const V fxv = zero + fx, fyv = zero + fy, one = zero + scalar_t(1);
            d_attn = Simd<scalar_t>::sum((zero + b0) * s0 + (zero + b1) * s1 + (zero + b2) * s2 + (zero + b3) * s3);
            d_fx = Simd<scalar_t>::sum((one - fyv) * (s1 - s0) + fyv * (s3 - s2));
            d_fy = Simd<scalar_t>::sum((one - fxv) * (s2 - s0) + fxv * (s3 - s1));
          } else {
            scalar_t dot0 = 0, dot1 = 0, dot2 = 0, dot3 = 0;
#pragma omp simd reduction(+ : dot0, dot1, dot2, dot3)
            for (int64_t d = 0; d < D; ++d) {
              const scalar_t gd = g[d];
              dot0 += v0[d] * gd;
              dot1 += v1[d] * gd;
              dot2 += v2[d] * gd;
              dot3 += v3[d] * gd;
              gv0[d] += w0 * gd;
              gv1[d] += w1 * gd;
              gv2[d] += w2 * gd;
              gv3[d] += w3 * gd;
            }
            d_attn = b0 * dot0 + b1 * dot1 + b2 * dot2 + b3 * dot3;
            d_fx = (1 - fy) * (dot1 - dot0) + fy * (dot3 - dot2);
            d_fy = (1 - fx) * (dot2 - dot0) + fx * (dot3 - dot1);
          }
          grad_attn[i] = d_attn;
          grad_loc[2 * i] = w * a.point_levels->width[i] * d_fx;
          grad_loc[2 * i + 1] = w * a.point_levels->height[i] * d_fy;
        }
      }
    }
  }
}

// One portable instantiation plus, on x86-64, an AVX2+FMA one picked at run time: the library
// stays loadable on any x86-64 machine while the channel loops use 256-bit FMAs where present.
template <typename scalar_t, int kD>
void forward_portable(const ForwardArgs<scalar_t>& a, int64_t b, int64_t e) { forward_items<scalar_t, kD>(a, b, e); }
template <typename scalar_t, int kD>
void backward_portable(const BackwardArgs<scalar_t>& a, int64_t b, int64_t e, scalar_t* sink) {
  backward_items<scalar_t, kD>(a, b, e, sink);
}
#ifdef MSDA_X86_DISPATCH
template <typename scalar_t, int kD>
__attribute__((target("avx2,fma"))) void forward_avx2(const ForwardArgs<scalar_t>& a, int64_t b, int64_t e) {
  forward_items<scalar_t, kD>(a, b, e);
}
template <typename scalar_t, int kD>
__attribute__((target("avx2,fma"))) void backward_avx2(const BackwardArgs<scalar_t>& a, int64_t b, int64_t e,
                                                       scalar_t* sink) {
  backward_items<scalar_t, kD>(a, b, e, sink);
}
// ASSIGNLAB_MSDA_PORTABLE=1 forces the portable path (so tests can check it on AVX2 machines).
bool has_avx2() {
  static const bool supported = std::getenv("ASSIGNLAB_MSDA_PORTABLE") == nullptr &&
                                __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
}
#endif

template <typename scalar_t, int kD>
void forward_isa(const ForwardArgs<scalar_t>& a, int64_t b, int64_t e) {
#ifdef MSDA_X86_DISPATCH
  if (has_avx2()) return forward_avx2<scalar_t, kD>(a, b, e);
#endif
  forward_portable<scalar_t, kD>(a, b, e);
}

template <typename scalar_t, int kD>
void backward_isa(const BackwardArgs<scalar_t>& a, int64_t b, int64_t e, scalar_t* sink) {
#ifdef MSDA_X86_DISPATCH
  if (has_avx2()) return backward_avx2<scalar_t, kD>(a, b, e, sink);
#endif
  backward_portable<scalar_t, kD>(a, b, e, sink);
}

template <typename scalar_t>
void forward_range(const ForwardArgs<scalar_t>& a, int64_t b, int64_t e) {
  switch (a.size.channels) {
    case 8: return forward_isa<scalar_t, 8>(a, b, e);
    case 16: return forward_isa<scalar_t, 16>(a, b, e);
    case 32: return forward_isa<scalar_t, 32>(a, b, e);
    case 64: return forward_isa<scalar_t, 64>(a, b, e);
    default: return forward_isa<scalar_t, 0>(a, b, e);
  }
}

template <typename scalar_t>
void backward_range(const BackwardArgs<scalar_t>& a, int64_t b, int64_t e, scalar_t* sink) {
  switch (a.size.channels) {
    case 8: return backward_isa<scalar_t, 8>(a, b, e, sink);
    case 16: return backward_isa<scalar_t, 16>(a, b, e, sink);
    case 32: return backward_isa<scalar_t, 32>(a, b, e, sink);
    case 64: return backward_isa<scalar_t, 64>(a, b, e, sink);
    default: return backward_isa<scalar_t, 0>(a, b, e, sink);
  }
}

Sizes sizes_of(const at::Tensor& value, const at::Tensor& sampling_locations) {
  return Sizes{value.size(0), value.size(1), value.size(2), value.size(3),
               sampling_locations.size(1), sampling_locations.size(3), sampling_locations.size(4)};
}

void check_levels(const at::Tensor& spatial_shapes, const at::Tensor& level_start_index, int64_t spatial) {
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  for (int64_t l = 0; l < spatial_shapes.size(0); ++l) {
    TORCH_CHECK(shapes[2 * l] >= 1 && shapes[2 * l + 1] >= 1, "spatial_shapes must be positive");
    TORCH_CHECK(shapes[2 * l] * shapes[2 * l + 1] < (int64_t{1} << 24), "level ", l, " has over 2^24 positions");
    TORCH_CHECK(starts[l] >= 0 && starts[l] + shapes[2 * l] * shapes[2 * l + 1] <= spatial,
                "level ", l, " does not fit in value's S dimension");
  }
}

}  // namespace

at::Tensor ms_deform_attn_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, at::kCPU);
  check_levels(spatial_shapes, level_start_index, value.size(1));
  const Sizes s = sizes_of(value, sampling_locations);
  at::Tensor output = at::empty({s.batch, s.queries, s.heads * s.channels}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu", [&] {
    const std::vector<scalar_t> zeros(static_cast<size_t>(s.channels) + 1, scalar_t(0));
    const PointLevels<scalar_t> point_levels(spatial_shapes.data_ptr<int64_t>(),
                                             level_start_index.data_ptr<int64_t>(), s.levels, s.points);
    const ForwardArgs<scalar_t> args{s, value.data_ptr<scalar_t>(), sampling_locations.data_ptr<scalar_t>(),
                                     attention_weights.data_ptr<scalar_t>(), zeros.data(), &point_levels,
                                     output.data_ptr<scalar_t>()};
    const int64_t items = s.batch * s.heads * s.queries;
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, s.levels * s.points * s.channels));
    at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) { forward_range(args, begin, end); });
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, at::kCPU);
  check_levels(spatial_shapes, level_start_index, value.size(1));
  const Sizes s = sizes_of(value, sampling_locations);
  TORCH_CHECK(grad_output.device().is_cpu() && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.is_contiguous(),
              "grad_output must be a contiguous CPU tensor of value's dtype");
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == s.batch && grad_output.size(1) == s.queries &&
                  grad_output.size(2) == s.heads * s.channels,
              "grad_output must be [N, Q, M * D]");
  at::Tensor grad_value = at::zeros_like(value);
  at::Tensor grad_locations = at::empty_like(sampling_locations);
  at::Tensor grad_weights = at::empty_like(attention_weights);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    const std::vector<scalar_t> zeros(static_cast<size_t>(s.channels) + 1, scalar_t(0));
    const PointLevels<scalar_t> point_levels(spatial_shapes.data_ptr<int64_t>(),
                                             level_start_index.data_ptr<int64_t>(), s.levels, s.points);
    const BackwardArgs<scalar_t> args{s, grad_output.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(),
                                      sampling_locations.data_ptr<scalar_t>(),
                                      attention_weights.data_ptr<scalar_t>(), zeros.data(), &point_levels,
                                      grad_value.data_ptr<scalar_t>(), grad_locations.data_ptr<scalar_t>(),
                                      grad_weights.data_ptr<scalar_t>()};
    at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> sink(4 * static_cast<size_t>(s.channels) + 1);
      backward_range(args, begin, end, sink.data());
    });
  });
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace assignlab_msda
