#pragma once
// The hyper-parameters of an LSTM, named and defaulted as torch.nn.LSTM's. A plain value: set the
// fields, then validate() (every constructor that takes a config validates it).
#include <cstdint>

namespace fastlstm {

struct LstmConfig {
  int64_t input_size = 0;   // H_in
  int64_t hidden_size = 0;  // H_cell: the size of c and of every gate
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;  // input and output are (N, L, features) instead of (L, N, features)
  bool bidirectional = false;
  int64_t proj_size = 0;  // > 0: h is projected to proj_size by weight_hr
  // Beyond torch, for ONNX's LSTM operator: one direction that runs from the last step to the
  // first (direction "reverse"; not with bidirectional), and peephole weights (peephole_l{k},
  // 3 * hidden_size: i, f, o), which add p_i * c_{t-1} to i, p_f * c_{t-1} to f and p_o * c_t to
  // o before their sigmoids.
  bool reverse = false;
  bool peephole = false;
  // Between layers in training. Inference applies none (torch's eval mode); it is kept so that a
  // saved model keeps the value its constructor was given.
  double dropout = 0.0;

  int64_t num_directions() const { return bidirectional ? 2 : 1; }
  // Whether direction `direction` (0, or 1 of a bidirectional model) runs from the last step.
  bool runs_backwards(int64_t direction) const { return direction == 1 || reverse; }
  // H_out: the size of h and of each direction's output.
  int64_t output_size() const { return proj_size > 0 ? proj_size : hidden_size; }
  // The width of the input that layer `layer` reads.
  int64_t layer_input_size(int64_t layer) const {
    return layer == 0 ? input_size : num_directions() * output_size();
  }

  // Throws InvalidArgument naming the first bad field (sizes < 1, proj_size outside
  // [0, hidden_size), dropout outside [0, 1], reverse with bidirectional, sizes whose buffers
  // would overflow).
  void validate() const;
  // Whether `other` has the same parameters, of the same shapes, and runs them the same way: every
  // field but batch_first and dropout, which the weights cannot tell.
  bool same_parameters(const LstmConfig& other) const;
};

}  // namespace fastlstm
