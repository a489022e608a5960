// Operator schemas of the assignlab_msda library and their CPU kernels. The CUDA kernels are a
// separate library (msda_cuda.cu) that registers implementations for the same schemas.
#include <torch/library.h>

#include "msda.h"

TORCH_LIBRARY(assignlab_msda, m) {
  m.def(
      "ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(assignlab_msda, CPU, m) {
  m.impl("ms_deform_attn", &assignlab_msda::ms_deform_attn_cpu);
  m.impl("ms_deform_attn_backward", &assignlab_msda::ms_deform_attn_backward_cpu);
}
