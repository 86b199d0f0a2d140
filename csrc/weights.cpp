// The canonical weights: torch's parameters of a configuration, zero-filled, found by name or role.
#include "fastlstm/weights.hpp"

#include <string>
#include <utility>
#include <vector>

#include "checked_size.hpp"
#include "cpu_check.hpp"

namespace fastlstm {

std::vector<ParameterSpec> parameter_specs(const LstmConfig& config) {
  config.validate();
  const int64_t H = config.hidden_size, P = config.output_size();
  // Reserved at once: a configuration of absurdly many layers fails here with std::bad_alloc
  // instead of growing the list until the system runs out of memory.
  const int64_t per_direction = 2 + (config.bias ? 2 : 0) + (config.proj_size > 0 ? 1 : 0) + (config.peephole ? 1 : 0);
  std::vector<ParameterSpec> specs;
  specs.reserve(static_cast<size_t>(
      checked_mul(checked_mul(config.num_layers, config.num_directions(), "num_layers"), per_direction, "num_layers")));
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (int64_t dir = 0; dir < config.num_directions(); ++dir) {
      const std::string suffix = "_l" + std::to_string(layer) + (dir ? "_reverse" : "");
      auto add = [&](const char* name, ParameterKind kind, std::vector<int64_t> shape) {
        specs.push_back({name + suffix, std::move(shape), layer, dir, kind});
      };
      add("weight_ih", ParameterKind::weight_ih, {4 * H, config.layer_input_size(layer)});
      add("weight_hh", ParameterKind::weight_hh, {4 * H, P});
      if (config.bias) {
        add("bias_ih", ParameterKind::bias_ih, {4 * H});
        add("bias_hh", ParameterKind::bias_hh, {4 * H});
      }
      if (config.proj_size > 0) add("weight_hr", ParameterKind::weight_hr, {P, H});
      if (config.peephole) add("peephole", ParameterKind::peephole, {3 * H});
    }
  }
  return specs;
}

namespace {
// Checks the CPU before anything else of a model is built.
const LstmConfig& on_supported_cpu(const LstmConfig& config) {
  detail::require_supported_cpu();
  return config;
}
}  // namespace

template <typename T>
LstmWeights<T>::LstmWeights(const LstmConfig& config) : config_(on_supported_cpu(config)) {
  std::vector<ParameterSpec> specs = parameter_specs(config);
  parameters_.reserve(specs.size());
  for (ParameterSpec& spec : specs) {
    const auto count = static_cast<size_t>(spec.numel());
    parameters_.push_back({std::move(spec), std::vector<T>(count, T(0)), {}, {}});
  }
}

template <typename T>
const Parameter<T>* LstmWeights<T>::find(const std::string& name) const {
  for (const auto& parameter : parameters_) {
    if (parameter.spec.name == name) return &parameter;
  }
  return nullptr;
}

template <typename T>
Parameter<T>* LstmWeights<T>::find(const std::string& name) {
  return const_cast<Parameter<T>*>(static_cast<const LstmWeights&>(*this).find(name));
}

template <typename T>
const Parameter<T>* LstmWeights<T>::find(int64_t layer, int64_t direction, ParameterKind kind) const {
  for (const auto& parameter : parameters_) {
    const ParameterSpec& spec = parameter.spec;
    if (spec.layer == layer && spec.direction == direction && spec.kind == kind) return &parameter;
  }
  return nullptr;
}

template class LstmWeights<float>;
template class LstmWeights<double>;

}  // namespace fastlstm
