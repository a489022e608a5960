// CUDA kernels of multi-scale deformable attention (layouts in msda.h).
//
// Forward: one thread per output element (n, q, m, d); neighbouring threads read neighbouring
// channels of the same corner row, so value reads coalesce. No batch-divisibility constraint:
// the grid covers N * Q * M * D directly.
// Backward: one warp per (n, q, m). Lanes stride over channels, scatter grad_value with
// atomicAdd (coalesced across lanes) and warp-reduce the corner dot products into the location
// and attention-weight gradients. The atomics make grad_value's rounding order vary between
// runs, so the op reports itself to torch.use_deterministic_algorithms.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "msda.h"

namespace assignlab_msda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

// Corners ordered (y0,x0), (y0,x1), (y1,x0), (y1,x1); row -1 and weight 0 outside the map.
template <typename scalar_t>
struct Footprint {
  int64_t row[4];
  scalar_t weight[4];
  scalar_t fx, fy;
  scalar_t poison;  // 0, or NaN for a NaN / infinite location (grid_sample returns NaN there)
};

template <typename scalar_t>
__device__ __forceinline__ Footprint<scalar_t> footprint(scalar_t loc_x, scalar_t loc_y, int64_t height,
                                                         int64_t width) {
  Footprint<scalar_t> f;
  const scalar_t x = loc_x * static_cast<scalar_t>(width) - scalar_t(0.5);
  const scalar_t y = loc_y * static_cast<scalar_t>(height) - scalar_t(0.5);
  f.poison = (isfinite(x) && isfinite(y)) ? scalar_t(0) : static_cast<scalar_t>(NAN);
  const scalar_t x0 = floor(x), y0 = floor(y);
  f.fx = x - x0;
  f.fy = y - y0;
  const scalar_t w_last = static_cast<scalar_t>(width - 1), h_last = static_cast<scalar_t>(height - 1);
  const bool in_x0 = x0 >= 0 && x0 <= w_last, in_x1 = x0 >= -1 && x0 < w_last;
  const bool in_y0 = y0 >= 0 && y0 <= h_last, in_y1 = y0 >= -1 && y0 < h_last;
  const int64_t ix0 = in_x0 ? static_cast<int64_t>(x0) : 0, ix1 = in_x1 ? static_cast<int64_t>(x0) + 1 : 0;
  const int64_t iy0 = in_y0 ? static_cast<int64_t>(y0) : 0, iy1 = in_y1 ? static_cast<int64_t>(y0) + 1 : 0;
  const scalar_t gx = 1 - f.fx, gy = 1 - f.fy;
  f.row[0] = (in_y0 && in_x0) ? iy0 * width + ix0 : -1;
  f.row[1] = (in_y0 && in_x1) ? iy0 * width + ix1 : -1;
  f.row[2] = (in_y1 && in_x0) ? iy1 * width + ix0 : -1;
  f.row[3] = (in_y1 && in_x1) ? iy1 * width + ix1 : -1;
  f.weight[0] = f.row[0] >= 0 ? gy * gx : scalar_t(0);
  f.weight[1] = f.row[1] >= 0 ? gy * f.fx : scalar_t(0);
  f.weight[2] = f.row[2] >= 0 ? f.fy * gx : scalar_t(0);
  f.weight[3] = f.row[3] >= 0 ? f.fy * f.fx : scalar_t(0);
  return f;
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t warp_sum(scalar_t v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const scalar_t* __restrict__ locations,
                               const scalar_t* __restrict__ weights, scalar_t* __restrict__ output,
                               int64_t total, int64_t spatial, int64_t heads, int64_t channels,
                               int64_t queries, int64_t levels, int64_t points) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= total) return;
  const int64_t d = index % channels;
  const int64_t nqm = index / channels;
  const int64_t m = nqm % heads;
  const int64_t n = nqm / (heads * queries);
  const int64_t row_stride = heads * channels, lp = levels * points;
  const scalar_t* value_nm = value + n * spatial * row_stride + m * channels + d;
  const scalar_t* loc = locations + nqm * lp * 2;
  const scalar_t* attn = weights + nqm * lp;
  scalar_t acc = 0;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    const scalar_t* level = value_nm + starts[l] * row_stride;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t i = l * points + p;
      const Footprint<scalar_t> f = footprint(loc[2 * i], loc[2 * i + 1], height, width);
      scalar_t sample = 0;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        if (f.row[c] >= 0) sample += f.weight[c] * level[f.row[c] * row_stride];
      }
      acc += attn[i] * (sample + f.poison);
    }
  }
  output[index] = acc;
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_output, const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes, const int64_t* __restrict__ starts,
                                const scalar_t* __restrict__ locations, const scalar_t* __restrict__ weights,
                                scalar_t* grad_value, scalar_t* __restrict__ grad_locations,
                                scalar_t* __restrict__ grad_weights, int64_t total_warps, int64_t spatial,
                                int64_t heads, int64_t channels, int64_t queries, int64_t levels,
                                int64_t points) {
  const int64_t nqm = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (nqm >= total_warps) return;  // uniform per warp, so the shuffles below see all 32 lanes
  const int64_t m = nqm % heads;
  const int64_t n = nqm / (heads * queries);
  const int64_t row_stride = heads * channels, lp = levels * points;
  const int64_t offset_nm = n * spatial * row_stride + m * channels;
  const scalar_t* g = grad_output + nqm * channels;
  const scalar_t* loc = locations + nqm * lp * 2;
  const scalar_t* attn = weights + nqm * lp;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    const int64_t level = offset_nm + starts[l] * row_stride;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t i = l * points + p;
      const Footprint<scalar_t> f = footprint(loc[2 * i], loc[2 * i + 1], height, width);
      const scalar_t w = attn[i];
      scalar_t dot[4] = {0, 0, 0, 0};
      for (int64_t d = lane; d < channels; d += kWarp) {
        const scalar_t gd = g[d];
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          if (f.row[c] >= 0) {
            const int64_t at = level + f.row[c] * row_stride + d;
            dot[c] += value[at] * gd;
            atomicAdd(grad_value + at, w * f.weight[c] * gd);
          }
        }
      }
      const scalar_t d_attn =
          warp_sum(f.weight[0] * dot[0] + f.weight[1] * dot[1] + f.weight[2] * dot[2] + f.weight[3] * dot[3]);
      const scalar_t d_fx = warp_sum((1 - f.fy) * (dot[1] - dot[0]) + f.fy * (dot[3] - dot[2]));
      const scalar_t d_fy = warp_sum((1 - f.fx) * (dot[2] - dot[0]) + f.fx * (dot[3] - dot[1]));
      if (lane == 0) {
        grad_weights[nqm * lp + i] = d_attn + f.poison;
        grad_locations[(nqm * lp + i) * 2] = w * static_cast<scalar_t>(width) * (d_fx + f.poison);
        grad_locations[(nqm * lp + i) * 2 + 1] = w * static_cast<scalar_t>(height) * (d_fy + f.poison);
      }
    }
  }
}

int64_t blocks_for(int64_t threads) { return (threads + kThreads - 1) / kThreads; }

at::Tensor ms_deform_attn_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                               const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                               const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, at::kCUDA);
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t batch = value.size(0), spatial = value.size(1), heads = value.size(2), channels = value.size(3);
  const int64_t queries = sampling_locations.size(1), levels = sampling_locations.size(3),
                points = sampling_locations.size(4);
  at::Tensor output = at::empty({batch, queries, heads * channels}, value.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  TORCH_CHECK(blocks_for(total) < (int64_t{1} << 31), "ms_deform_attn: input too large for one launch");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cuda", [&] {
    forward_kernel<scalar_t><<<static_cast<unsigned>(blocks_for(total)), kThreads, 0, stream>>>(
        value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_locations.data_ptr<scalar_t>(), attention_weights.data_ptr<scalar_t>(),
        output.data_ptr<scalar_t>(), total, spatial, heads, channels, queries, levels, points);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, at::kCUDA);
  const int64_t batch = value.size(0), spatial = value.size(1), heads = value.size(2), channels = value.size(3);
  const int64_t queries = sampling_locations.size(1), levels = sampling_locations.size(3),
                points = sampling_locations.size(4);
  TORCH_CHECK(grad_output.is_cuda() && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.is_contiguous() && grad_output.dim() == 3 && grad_output.size(0) == batch &&
                  grad_output.size(1) == queries && grad_output.size(2) == heads * channels,
              "grad_output must be a contiguous [N, Q, M * D] CUDA tensor of value's dtype");
  at::globalContext().alertNotDeterministic("assignlab_msda::ms_deform_attn_backward (CUDA)");
  const c10::cuda::CUDAGuard guard(value.device());
  at::Tensor grad_value = at::zeros_like(value);
  at::Tensor grad_locations = at::zeros_like(sampling_locations);
  at::Tensor grad_weights = at::zeros_like(attention_weights);
  const int64_t warps = batch * queries * heads;
  if (warps == 0 || channels == 0) return {grad_value, grad_locations, grad_weights};
  TORCH_CHECK(blocks_for(warps * kWarp) < (int64_t{1} << 31), "ms_deform_attn: input too large for one launch");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
    backward_kernel<scalar_t><<<static_cast<unsigned>(blocks_for(warps * kWarp)), kThreads, 0, stream>>>(
        grad_output.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
        level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
        attention_weights.data_ptr<scalar_t>(), grad_value.data_ptr<scalar_t>(),
        grad_locations.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), warps, spatial, heads,
        channels, queries, levels, points);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace
}  // namespace assignlab_msda

TORCH_LIBRARY_IMPL(assignlab_msda, CUDA, m) {
  m.impl("ms_deform_attn", &assignlab_msda::ms_deform_attn_cuda);
  m.impl("ms_deform_attn_backward", &assignlab_msda::ms_deform_attn_backward_cuda);
}
