// The engine: validates what callers pass, allocates results, and hands the work to the backend of
// the model's device, the one place that chooses it (make_backend).
#include "fastlstm/lstm.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "arguments.hpp"
#include "backend.hpp"
#include "checked_size.hpp"
#include "fork_safety.hpp"
#include "shape_string.hpp"
#include "weight_format.hpp"
#include "fastlstm/error.hpp"
#include "fastlstm/version.hpp"

namespace fastlstm {

using arguments::check_device;
using arguments::check_host;
using arguments::check_padded_input;
using arguments::check_permutation;
using arguments::check_state;
using arguments::check_state_size;
using arguments::check_view;
using arguments::invalid;
using arguments::output_shape;
using arguments::packed_steps;
using arguments::padded_request;
using arguments::PaddedInput;

namespace {
LstmOptions resolve(LstmOptions options) {
  const int threads = options.num_threads;
  if (threads < 0) invalid("num_threads must be >= 0 (0 uses every core), got " + std::to_string(threads));
  if (threads > kMaxThreads) {
    invalid("num_threads must be at most " + std::to_string(kMaxThreads) + ", got " + std::to_string(threads));
  }
  if (threads == 0) options.num_threads = std::min(default_num_threads(), kMaxThreads);
  if (options.device.index < 0 || (options.device.is_cpu() && options.device.index != 0)) {
    invalid("device: no such device, " + options.device.str());
  }
  return options;
}

LstmOptions with_threads(int num_threads) {
  LstmOptions options;
  options.num_threads = num_threads;
  return options;
}

// The options of a model of T, checked and resolved.
template <typename T>
LstmOptions resolve_for(const LstmOptions& options) {
  if (options.weight_format != WeightFormat::native && !std::is_same_v<T, float>) {
    invalid(std::string("weight_format: ") + weight_format_name<float>(options.weight_format) +
            " weights need a float32 model");
  }
  if (options.int8_input_bits != 8 && options.int8_input_bits != 16) {
    invalid("int8_input_bits must be 8 or 16, got " + std::to_string(options.int8_input_bits));
  }
  if (options.weight_format == WeightFormat::int8 && options.device.kind == DeviceKind::cuda) {
    invalid("weight_format: int8 runs on the CPU; a model on " + options.device.str() +
            " takes float32, float16 or bfloat16 weights");
  }
  return resolve(options);
}

// The one place that maps a device to its backend.
template <typename T>
std::unique_ptr<Backend<T>> make_backend(const LstmConfig& config, const LstmOptions& options) {
  if (options.device.kind == DeviceKind::cuda) {
    // ONNX's operator features beyond torch run on the CPU backend only.
    if (config.reverse) invalid("reverse: a reverse LSTM runs on the CPU, not on " + options.device.str());
    if (config.peephole) invalid("peephole: an LSTM with peepholes runs on the CPU, not on " + options.device.str());
    return make_cuda_backend<T>(config, options);
  }
  return make_cpu_backend<T>(config, options);
}

bool is_weight_matrix(ParameterKind kind) {
  return kind == ParameterKind::weight_ih || kind == ParameterKind::weight_hh || kind == ParameterKind::weight_hr;
}

// int8 weights are integers times a finite scale: a weight that is not finite has no such value.
template <typename T>
void check_quantizable(const T* values, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride,
                       const std::string& name) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const T value = values[r * row_stride + c * col_stride];
      if (!std::isfinite(value)) {
        invalid(name + ": int8 weights must be finite, got " + std::to_string(value) + " at [" + std::to_string(r) +
                ", " + std::to_string(c) + "]");
      }
    }
  }
}
}  // namespace

// The zero model's backend is prepared by its first forward pass or weight update, not here: the
// weights of a model built this way are usually set next, and packing its zeros first would take as
// long as packing them.
template <typename T>
Lstm<T>::Lstm(const LstmConfig& config, int num_threads) : Lstm(config, with_threads(num_threads)) {}

template <typename T>
const char* weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::float16: return "float16";
    case WeightFormat::bfloat16: return "bfloat16";
    case WeightFormat::int8: return "int8";
    case WeightFormat::native: break;
  }
  return std::is_same_v<T, float> ? "float32" : "float64";
}

template <typename T>
Lstm<T>::Lstm(const LstmConfig& config, const LstmOptions& options)
    : weights_(LstmWeights<T>(config)),
      options_(resolve_for<T>(options)),
      backend_(make_backend<T>(weights_.config(), options_)),
      mutex_(std::make_unique<ForkSafeMutex>()) {
  for (Parameter<T>& parameter : weights_.parameters()) round_to_format(parameter);  // int8: the zeros' scales
}

template <typename T>
Lstm<T>::Lstm(LstmWeights<T> weights, int num_threads) : Lstm(std::move(weights), with_threads(num_threads)) {}

template <typename T>
Lstm<T>::Lstm(LstmWeights<T> weights, const LstmOptions& options)
    : weights_(std::move(weights)),
      options_(resolve_for<T>(options)),
      backend_(make_backend<T>(weights_.config(), options_)),
      mutex_(std::make_unique<ForkSafeMutex>()) {
  check_given_weights(weights_);
  for (Parameter<T>& parameter : weights_.parameters()) round_to_format(parameter);
  prepare();
}

// Weights handed to the model whole: each parameter's values (numel of them), or, for a weight
// matrix, int8 codes (numel) and a finite scale >= 0 per row; an int8 model also needs every
// value it quantizes finite, and scales, where given, one per row.
template <typename T>
void Lstm<T>::check_given_weights(const LstmWeights<T>& weights) const {
  for (const Parameter<T>& parameter : weights.parameters()) {
    const std::string& name = parameter.spec.name;
    const size_t numel = static_cast<size_t>(parameter.spec.numel()), rows = static_cast<size_t>(parameter.spec.shape[0]);
    const bool coded = !parameter.codes.empty();
    if (coded ? parameter.codes.size() != numel || !is_weight_matrix(parameter.spec.kind) : parameter.values.size() != numel) {
      invalid(name + ": expected " + std::to_string(numel) + (coded ? " int8 codes of a weight matrix" : " values"));
    }
    if ((coded || options_.weight_format == WeightFormat::int8) && !parameter.scales.empty() &&
        parameter.scales.size() != rows) {
      invalid(name + ": expected one int8 scale per row (" + std::to_string(rows) + "), got " +
              std::to_string(parameter.scales.size()));
    }
    if (coded && parameter.scales.size() != rows) invalid(name + ": int8 codes need one scale per row");
    for (float scale : parameter.scales) {
      if (!std::isfinite(scale) || scale < 0) invalid(name + ": int8 scales must be finite and >= 0, got " + std::to_string(scale));
    }
    if (options_.weight_format == WeightFormat::int8 && is_weight_matrix(parameter.spec.kind) && !coded) {
      const int64_t cols = parameter.spec.shape[1];
      check_quantizable(parameter.values.data(), parameter.spec.shape[0], cols, cols, 1, name);
    }
  }
}

namespace {
// A copy of a parameter as callers get one: its values (from codes where the model holds them).
template <typename T>
Parameter<T> with_values(const Parameter<T>& parameter) {
  Parameter<T> copy{parameter.spec, parameter.values, parameter.scales, {}};
  if (!parameter.codes.empty()) {
    copy.values.resize(parameter.codes.size());
    for (size_t i = 0; i < copy.values.size(); ++i) copy.values[i] = parameter.value(i);
  }
  return copy;
}
}  // namespace

// A matrix of an int8 model keeps the scales it came with (one per row) and takes max|row| / 127
// where it has none; its values become integers times them, held as codes (values released).
// Other formats round each value, and keep no scales or codes.
template <typename T>
void Lstm<T>::round_to_format(Parameter<T>& parameter) const {
  const WeightFormat format = options_.weight_format;
  if (format != WeightFormat::int8) {
    if (!parameter.codes.empty()) parameter = with_values(parameter);  // an int8 file's weights, in full
    parameter.scales.clear();
  }
  if (format == WeightFormat::native || !is_weight_matrix(parameter.spec.kind)) return;
  if constexpr (std::is_same_v<T, float>) {
    if (format != WeightFormat::int8) {
      for (float& value : parameter.values) value = weight_format::round(value, format);
      return;
    }
    if (parameter.values.empty()) return;  // held as codes already
    const int64_t rows = parameter.spec.shape[0], cols = parameter.spec.shape[1];
    const bool scaled = static_cast<int64_t>(parameter.scales.size()) == rows;
    if (!scaled) parameter.scales.resize(static_cast<size_t>(rows));
    parameter.codes.resize(parameter.values.size());
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = parameter.values.data() + r * cols;
      float& scale = parameter.scales[static_cast<size_t>(r)];
      if (!scaled) scale = weight_format::int8_row_scale(row, cols);
      for (int64_t c = 0; c < cols; ++c) parameter.codes[static_cast<size_t>(r * cols + c)] = weight_format::to_int8(row[c], scale);
    }
    std::vector<T>().swap(parameter.values);
  }
}

template <typename T>
void Lstm<T>::prepare() const {
  backend_->prepare(weights_);
  prepared_ = true;
}

template <typename T>
void Lstm<T>::run(const ForwardRequest<T>& request) const {
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  run_locked(request);
}

template <typename T>
void Lstm<T>::run_locked(const ForwardRequest<T>& request) const {
  if (!prepared_) prepare();
  backend_->forward(request);
}

template <typename T>
Lstm<T>::~Lstm() = default;
template <typename T>
Lstm<T>::Lstm(Lstm&&) noexcept = default;
template <typename T>
Lstm<T>& Lstm<T>::operator=(Lstm&&) noexcept = default;

template <typename T>
int64_t Lstm<T>::graph_replays() const {
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  return backend_->graph_replays();
}

// Results on the host are the engine's own; on a device, the backend's.
template <typename T>
Tensor<T> Lstm<T>::allocate(std::vector<int64_t> shape, Device device) const {
  if (device.is_cpu()) return Tensor<T>(std::move(shape));
  return backend_->allocate(std::move(shape));
}

template <typename T>
Tensor<T> Lstm<T>::parameter(const std::string& name) const {
  const Parameter<T>* parameter = weights_.find(name);
  if (!parameter) invalid("unknown parameter '" + name + "'");
  Tensor<T> copy(parameter->spec.shape);
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  for (size_t i = 0; i < static_cast<size_t>(copy.numel()); ++i) copy.data()[i] = parameter->value(i);
  return copy;
}

template <typename T>
LstmWeights<T> Lstm<T>::copy_weights() const {
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  LstmWeights<T> copy = weights_;
  for (Parameter<T>& parameter : copy.parameters()) {
    if (!parameter.codes.empty()) parameter = with_values(parameter);
  }
  return copy;
}

template <typename T>
void Lstm<T>::set_parameter(const std::string& name, TensorView<const T> values) {
  set_parameters({{name, values}});
}

template <typename T>
void Lstm<T>::set_parameters(const std::vector<std::pair<std::string, TensorView<const T>>>& values) {
  std::vector<Parameter<T>*> targets;
  for (const auto& [name, view] : values) {
    Parameter<T>* parameter = weights_.find(name);
    if (!parameter) invalid("unknown parameter '" + name + "'");
    check_view(view, name.c_str());
    check_host(view.device, name.c_str());
    const std::vector<int64_t>& shape = parameter->spec.shape;
    bool ok = view.rank == static_cast<int>(shape.size());
    for (int d = 0; ok && d < view.rank; ++d) ok = view.shape[static_cast<size_t>(d)] == shape[static_cast<size_t>(d)];
    if (!ok) invalid(name + ": expected shape " + shape_string(shape) + ", got " + shape_string(view));
    if (options_.weight_format == WeightFormat::int8 && is_weight_matrix(parameter->spec.kind)) {
      check_quantizable(view.data, shape[0], shape[1], view.strides[0], view.strides[1], name);
    }
    targets.push_back(parameter);
  }
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  for (size_t i = 0; i < values.size(); ++i) {
    const TensorView<const T>& view = values[i].second;
    const std::vector<int64_t>& shape = targets[i]->spec.shape;
    const int64_t rows = shape[0], cols = shape.size() > 1 ? shape[1] : 1;
    const int64_t col_stride = shape.size() > 1 ? view.strides[1] : 0;
    targets[i]->values.resize(static_cast<size_t>(rows * cols));  // an int8 matrix held as codes has none
    T* dst = targets[i]->values.data();
    for (int64_t r = 0; r < rows; ++r) {
      const T* src = view.data + r * view.strides[0];
      if (col_stride == 1) {
        std::copy_n(src, cols, dst + r * cols);  // rows of contiguous values: a memcpy each
      } else {
        for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = src[c * col_stride];
      }
    }
    targets[i]->scales.clear();  // new values, new scales
    targets[i]->codes.clear();
    round_to_format(*targets[i]);
  }
  prepare();
}

template <typename T>
void Lstm<T>::set_weights(const LstmWeights<T>& weights) {
  if (!weights.config().same_parameters(config())) invalid("weights: configuration differs from the model's");
  check_given_weights(weights);
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  auto& dst = weights_.parameters();
  for (size_t i = 0; i < dst.size(); ++i) {
    dst[i] = with_values(weights.parameters()[i]);
    round_to_format(dst[i]);
  }
  prepare();
}


template <typename T>
LstmOutput<T> Lstm<T>::forward(TensorView<const T> input, const StateView<T>* initial_state) const {
  const LstmConfig& cfg = config();
  const PaddedInput shape = check_padded_input(input, cfg, device(), "input");
  check_state_size(cfg, shape.batch, "input");
  if (initial_state) check_state(*initial_state, cfg, shape.batch, device());
  const int64_t layers = cfg.num_directions() * cfg.num_layers;
  LstmOutput<T> result{allocate(output_shape<T>(shape, cfg), input.device),
                       allocate({layers, shape.batch, cfg.output_size()}, input.device),
                       allocate({layers, shape.batch, cfg.hidden_size}, input.device)};
  ForwardRequest<T> request = padded_request(input, shape, cfg, result.output);
  request.initial_state = initial_state;
  request.h_n = result.h_n.data();
  request.c_n = result.c_n.data();
  request.final_state_device = input.device;
  run(request);
  return result;
}

template <typename T>
LstmOutput<T> Lstm<T>::forward_packed(TensorView<const T> data, const std::vector<int64_t>& batch_sizes,
                                      const StateView<T>* initial_state,
                                      const std::vector<int64_t>* sorted_indices) const {
  const LstmConfig& cfg = config();
  check_view(data, "data");
  check_device(data.device, device(), "data");
  if (data.rank != 2) invalid("data: expected 2 dimensions (rows, H_in), got " + std::to_string(data.rank));
  if (data.shape[1] != cfg.input_size) {
    invalid("data: expected data.size(-1) == input_size = " + std::to_string(cfg.input_size) + ", got " +
            std::to_string(data.shape[1]));
  }
  const auto [step_starts, total] = packed_steps(batch_sizes);
  if (total != data.shape[0]) {
    invalid("batch_sizes: sum is " + std::to_string(total) + " but data has " + std::to_string(data.shape[0]) +
            " rows");
  }
  const int64_t batch = batch_sizes[0];
  check_state_size(cfg, batch, "batch_sizes");
  if (sorted_indices) check_permutation(*sorted_indices, batch, "sorted_indices");
  if (initial_state) check_state(*initial_state, cfg, batch, device());

  const int64_t D = cfg.num_directions(), P = cfg.output_size();
  checked_mul(total, D * 4 * cfg.hidden_size, "data");
  LstmOutput<T> result{allocate({total, D * P}, data.device), allocate({D * cfg.num_layers, batch, P}, data.device),
                       allocate({D * cfg.num_layers, batch, cfg.hidden_size}, data.device)};
  ForwardRequest<T> request;
  request.batch_sizes = {static_cast<int64_t>(batch_sizes.size()), batch, batch_sizes.data()};
  request.step_starts = step_starts.data();
  request.sorted_indices = sorted_indices ? sorted_indices->data() : nullptr;
  request.input = data.data;
  request.input_rows.row_stride = data.strides[0];
  request.input_rows.step_starts = step_starts.data();
  request.input_feature_stride = data.strides[1];
  request.input_device = data.device;
  request.initial_state = initial_state;
  request.output = result.output.data();
  request.output_rows.row_stride = D * P;
  request.output_rows.step_starts = step_starts.data();
  request.h_n = result.h_n.data();
  request.c_n = result.c_n.data();
  request.output_device = data.device;
  request.final_state_device = data.device;

  run(request);
  return result;
}

template class Lstm<float>;
template class Lstm<double>;
template const char* weight_format_name<float>(WeightFormat);
template const char* weight_format_name<double>(WeightFormat);

}  // namespace fastlstm
