#pragma once
// The canonical weights of an LSTM: torch's parameters, under torch's names, in torch's layout
// (gate rows ordered i, f, g, o) and torch's order (the order of nn.LSTM.state_dict()).
#include <cstdint>
#include <string>
#include <vector>

#include "fastlstm/config.hpp"

namespace fastlstm {

enum class ParameterKind { weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, peephole };

// One named parameter and its shape, e.g. weight_hh_l1_reverse: (4 * hidden_size, H_out).
struct ParameterSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t layer = 0;
  int64_t direction = 0;  // 0 forward, 1 reverse
  ParameterKind kind = ParameterKind::weight_ih;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t extent : shape) n *= extent;
    return n;
  }
};

// The parameters a configuration has, in torch's order. Throws InvalidArgument for an invalid
// config (see LstmConfig::validate). Thread-safe (a pure function).
std::vector<ParameterSpec> parameter_specs(const LstmConfig& config);

template <typename T>
struct Parameter {
  ParameterSpec spec;
  std::vector<T> values;  // row-major, spec.numel() elements (see codes)
  // The weight matrices of an int8 model: one scale per row, each value of row r an integer in
  // [-128, 127] times scales[r]. Empty otherwise.
  std::vector<float> scales;
  // Those integers, row-major, where an int8 model holds its matrices compactly: the weights a
  // model keeps (Lstm::weights()) have codes and no values there; every copy it hands out
  // (parameter(), copy_weights()) has the values. Empty otherwise.
  std::vector<int8_t> codes;

  // Value i, from values or from codes and scales.
  T value(size_t i) const {
    if (codes.empty()) return values[i];
    return static_cast<T>(float(codes[i]) * scales[i / static_cast<size_t>(spec.shape[1])]);
  }
};

// All parameters of one configuration. The storage of each parameter never moves once built,
// so pointers to it stay valid for the lifetime of the object. A plain value: many threads may
// read one; writing needs the caller's own synchronisation.
template <typename T>
class LstmWeights {
 public:
  // Every parameter present and zero-filled. Throws InvalidArgument for an invalid config.
  explicit LstmWeights(const LstmConfig& config);

  const LstmConfig& config() const { return config_; }
  const std::vector<Parameter<T>>& parameters() const { return parameters_; }
  std::vector<Parameter<T>>& parameters() { return parameters_; }

  // The parameter called `name`, or nullptr when the configuration has none of that name.
  const Parameter<T>* find(const std::string& name) const;
  Parameter<T>* find(const std::string& name);
  // The parameter of `kind` for a layer and direction, or nullptr where the configuration has
  // none (biases with bias=false, weight_hr without projection).
  const Parameter<T>* find(int64_t layer, int64_t direction, ParameterKind kind) const;

 private:
  LstmConfig config_;
  std::vector<Parameter<T>> parameters_;
};

extern template class LstmWeights<float>;
extern template class LstmWeights<double>;

}  // namespace fastlstm
