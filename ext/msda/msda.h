// Multi-scale deformable attention (Deformable-DETR), shared declarations.
//
// Layouts (all contiguous):
//   value               [N, S, M, D]        S = sum_l H_l * W_l, M heads, D channels per head
//   spatial_shapes      [L, 2] int64        (H_l, W_l)
//   level_start_index   [L] int64           offset of level l in S
//   sampling_locations  [N, Q, M, L, P, 2]  normalised (x, y); pixel = (x * W - 0.5, y * H - 0.5)
//   attention_weights   [N, Q, M, L, P]
//   output              [N, Q, M * D]
// Bilinear sampling matches grid_sample(align_corners=False, padding_mode="zeros").
#pragma once

#include <ATen/ATen.h>
#include <tuple>

namespace assignlab_msda {

at::Tensor ms_deform_attn_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// Last line of defence behind the Python checks in assignlab.ops.msda: a violated
// contract raises c10::Error (a Python RuntimeError) instead of reading out of bounds.
inline void check_inputs(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, at::DeviceType device) {
  TORCH_CHECK(value.dim() == 4, "value must be [N, S, M, D]");
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "sampling_locations must be [N, Q, M, L, P, 2]");
  TORCH_CHECK(attention_weights.dim() == 5, "attention_weights must be [N, Q, M, L, P]");
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "spatial_shapes must be [L, 2]");
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == spatial_shapes.size(0),
              "level_start_index must be [L]");
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "value, sampling_locations and attention_weights must share one dtype");
  for (const at::Tensor* t : {&value, &spatial_shapes, &level_start_index, &sampling_locations,
                              &attention_weights}) {
    TORCH_CHECK(t->device().type() == device, "all inputs must be on ", device);
    TORCH_CHECK(t->is_contiguous(), "all inputs must be contiguous");
  }
  const int64_t n = value.size(0), m = value.size(2);
  const int64_t q = sampling_locations.size(1), l = spatial_shapes.size(0);
  const int64_t p = sampling_locations.size(4);
  TORCH_CHECK(sampling_locations.size(0) == n && sampling_locations.size(2) == m &&
                  sampling_locations.size(3) == l,
              "sampling_locations does not match value / spatial_shapes");
  TORCH_CHECK(attention_weights.size(0) == n && attention_weights.size(1) == q &&
                  attention_weights.size(2) == m && attention_weights.size(3) == l &&
                  attention_weights.size(4) == p,
              "attention_weights does not match sampling_locations");
}

}  // namespace assignlab_msda
