// Reading a model file: its header, the LSTM its tensors hold, and their values cast to the
// model's type, all from one open source.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <type_traits>
#include <vector>

#include "byte_source.hpp"
#include "common.hpp"
#include "cpu_check.hpp"
#include "fastlstm/lstm.hpp"
#include "fastlstm/model_file.hpp"
#include "header.hpp"
#include "metadata.hpp"
#include "names.hpp"
#include "weight_format.hpp"

namespace fastlstm {
namespace {

using model_file::ByteSource;
using model_file::FileSource;
using model_file::invalid;
using model_file::MemorySource;
using model_file::ParsedFile;
using model_file::quote;
using model_file::TensorEntry;

// What inspect and read share: the parsed file, its LSTM and the file's description of it.
struct FileLstm {
  ParsedFile file;
  StateDictLstm lstm;
  ModelFileInfo info;
};

// An I8 matrix of `rows` rows needs its scales: an F32 tensor (rows,) under scale_name(key).
void check_scales(const ParsedFile& file, const std::string& key, int64_t rows) {
  const std::string name = model_file::scale_name(key);
  const auto found = std::find_if(file.header.tensors.begin(), file.header.tensors.end(),
                                  [&](const TensorEntry& entry) { return entry.name == name; });
  if (found == file.header.tensors.end()) {
    invalid("tensor " + quote(key) + " is I8 but the file has no tensor " + quote(name) + " of its row scales");
  }
  if (found->dtype != "F32" || found->shape != std::vector<int64_t>{rows}) {
    invalid("tensor " + quote(name) + " must be F32 of shape [" + std::to_string(rows) + "] (the scales of " +
            quote(key) + "'s rows)");
  }
}

FileLstm find_file_lstm(const ByteSource& source, const std::string& prefix) {
  FileLstm found;
  found.file = model_file::parse_file(source);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorEntry& entry : found.file.header.tensors) shapes.emplace(entry.name, entry.shape);
  found.lstm = infer_lstm(shapes, prefix);
  bool all_f64 = true, matrices_f16 = true, matrices_bf16 = true, matrices_i8 = true;
  for (const auto& [parameter, key] : found.lstm.keys) {
    const TensorEntry& entry = found.file.tensor(key);
    const bool matrix = parameter.rfind("weight", 0) == 0;
    if (entry.dtype != "F32" && entry.dtype != "F64" && entry.dtype != "F16" && entry.dtype != "BF16" &&
        !(matrix && entry.dtype == "I8")) {
      invalid("tensor " + quote(key) + " has dtype " + entry.dtype +
              "; fastlstm reads F32, F64, F16 and BF16, and I8 weight matrices with their scales");
    }
    if (entry.dtype == "I8") check_scales(found.file, key, entry.shape[0]);
    all_f64 = all_f64 && entry.dtype == "F64";
    if (matrix) {
      matrices_f16 = matrices_f16 && entry.dtype == "F16";
      matrices_bf16 = matrices_bf16 && entry.dtype == "BF16";
      matrices_i8 = matrices_i8 && entry.dtype == "I8";
    }
  }
  found.info.config = found.lstm.config;
  found.info.dtype = all_f64 ? DType::float64 : DType::float32;
  found.info.weight_format = matrices_f16    ? WeightFormat::float16
                             : matrices_bf16 ? WeightFormat::bfloat16
                             : matrices_i8   ? WeightFormat::int8
                                             : WeightFormat::native;
  model_file::apply_metadata(found.file.header.metadata, found.info);
  return found;
}

// S as T: a cast, as load_state_dict casts.
template <typename T, typename S>
T cast_value(S value) {
  return static_cast<T>(value);
}

// A tensor of `n` elements of S at `offset` of `source`, cast to T by `convert` (little-endian in
// the file).
template <typename T, typename S, T (*convert)(S) = cast_value<T, S>>
void copy_tensor(const ByteSource& source, uint64_t offset, std::vector<T>& values) {
  const size_t n = values.size();
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if constexpr (std::is_same_v<T, S>) {
    source.read(offset, n * sizeof(T), values.data());
    return;
  }
#endif
  // A piece at a time through a small buffer: no second copy of the tensor.
  constexpr size_t kPiece = 1024;  // 8 KB of stack at most
  unsigned char raw[kPiece * sizeof(S)];
  for (size_t i0 = 0; i0 < n; i0 += kPiece) {
    const size_t count = std::min(kPiece, n - i0);
    source.read(offset + i0 * sizeof(S), count * sizeof(S), raw);
    for (size_t i = 0; i < count; ++i) {
      unsigned char element[sizeof(S)];
      std::memcpy(element, raw + i * sizeof(S), sizeof(S));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
      std::reverse(element, element + sizeof(S));
#endif
      S value;
      std::memcpy(&value, element, sizeof(S));
      values[i0 + i] = convert(value);
    }
  }
}

// A 16-bit value's float, as T.
template <typename T, float (*widen)(uint16_t)>
T from_16_bits(uint16_t bits) {
  return static_cast<T>(widen(bits));
}

// An I8 matrix at `offset` and its scales (each finite and >= 0): for float, the codes and scales
// as an int8 model holds them (no values); for double, the values q * scale[row].
template <typename T>
void read_int8(const ByteSource& source, const ParsedFile& file, const std::string& key, uint64_t offset,
               Parameter<T>& target) {
  const int64_t rows = target.spec.shape[0], cols = target.spec.shape[1];
  std::vector<float> scales(static_cast<size_t>(rows));
  copy_tensor<float, float>(source, file.data_offset + static_cast<uint64_t>(file.tensor(model_file::scale_name(key)).begin),
                            scales);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = scales[static_cast<size_t>(r)];
    if (!std::isfinite(scale) || scale < 0) {
      invalid("tensor " + quote(model_file::scale_name(key)) + " holds " + std::to_string(scale) + " at [" +
              std::to_string(r) + "]; scales must be finite and >= 0");
    }
  }
  std::vector<int8_t> codes(static_cast<size_t>(rows * cols));
  source.read(offset, codes.size(), codes.data());
  target.scales = std::move(scales);
  target.codes = std::move(codes);
  if constexpr (std::is_same_v<T, float>) {
    std::vector<T>().swap(target.values);
  } else {
    for (size_t i = 0; i < target.values.size(); ++i) target.values[i] = target.value(i);
    target.codes.clear();
    target.scales.clear();
  }
}

template <typename T>
LstmWeights<T> read_weights(const ByteSource& source, const FileLstm& found) {
  LstmWeights<T> weights(found.info.config);
  for (const auto& [parameter, key] : found.lstm.keys) {
    const TensorEntry& entry = found.file.tensor(key);
    Parameter<T>& target = *weights.find(parameter);
    std::vector<T>& values = target.values;
    const uint64_t offset = found.file.data_offset + static_cast<uint64_t>(entry.begin);
    if (entry.dtype == "I8") {
      read_int8(source, found.file, key, offset, target);
    } else if (entry.dtype == "F32") {
      copy_tensor<T, float>(source, offset, values);
    } else if (entry.dtype == "F64") {
      copy_tensor<T, double>(source, offset, values);
    } else if (entry.dtype == "F16") {
      copy_tensor<T, uint16_t, from_16_bits<T, weight_format::from_float16>>(source, offset, values);
    } else {
      copy_tensor<T, uint16_t, from_16_bits<T, weight_format::from_bfloat16>>(source, offset, values);
    }
  }
  return weights;
}

// Runs `body` and puts "<name>: " before the message of any InvalidArgument it throws.
template <typename F>
auto naming_file(const std::string& name, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const InvalidArgument& error) {
    throw InvalidArgument(name + ": " + error.what());
  }
}

}  // namespace

ModelFileInfo inspect_model_bytes(const void* data, size_t size, const std::string& prefix,
                                  const std::string& name) {
  const MemorySource source(data, size);
  return naming_file(name, [&] { return find_file_lstm(source, prefix).info; });
}

template <typename T>
LstmWeights<T> read_model_bytes(const void* data, size_t size, const std::string& prefix, const std::string& name) {
  const MemorySource source(data, size);
  return naming_file(name, [&] { return read_weights<T>(source, find_file_lstm(source, prefix)); });
}

struct ModelFileReader::Open {
  explicit Open(const std::string& path_) : path(path_), source(path_) {}
  std::string path;
  FileSource source;
  FileLstm found;
};

ModelFileReader::ModelFileReader(const std::string& path, const std::string& prefix)
    : open_(std::make_unique<Open>(path)) {
  open_->found = naming_file(path, [&] { return find_file_lstm(open_->source, prefix); });
}

ModelFileReader::~ModelFileReader() = default;
ModelFileReader::ModelFileReader(ModelFileReader&&) noexcept = default;
ModelFileReader& ModelFileReader::operator=(ModelFileReader&&) noexcept = default;

const ModelFileInfo& ModelFileReader::info() const { return open_->found.info; }

template <typename T>
LstmWeights<T> ModelFileReader::read_weights() const {
  return naming_file(open_->path, [&] { return fastlstm::read_weights<T>(open_->source, open_->found); });
}

ModelFileInfo inspect_model_file(const std::string& path, const std::string& prefix) {
  return ModelFileReader(path, prefix).info();
}

template <typename T>
LstmWeights<T> read_model_file(const std::string& path, const std::string& prefix) {
  return ModelFileReader(path, prefix).read_weights<T>();
}

template <typename T>
Lstm<T> Lstm<T>::load(const std::string& path, const std::string& prefix, int num_threads) {
  LstmOptions options;
  options.num_threads = num_threads;
  return load(path, prefix, options);
}

template <typename T>
Lstm<T> Lstm<T>::load(const std::string& path, const std::string& prefix, const LstmOptions& options) {
  detail::require_supported_cpu();
  const ModelFileReader file(path, prefix);
  LstmOptions resolved = options;
  if (resolved.weight_format == WeightFormat::native && std::is_same_v<T, float>) {
    resolved.weight_format = file.info().weight_format;  // a model saved with 16-bit or int8 weights keeps them
    resolved.int8_input_bits = file.info().int8_input_bits;
  }
  return Lstm<T>(file.read_weights<T>(), resolved);
}

template LstmWeights<float> read_model_file<float>(const std::string&, const std::string&);
template LstmWeights<double> read_model_file<double>(const std::string&, const std::string&);
template LstmWeights<float> read_model_bytes<float>(const void*, size_t, const std::string&, const std::string&);
template LstmWeights<double> read_model_bytes<double>(const void*, size_t, const std::string&, const std::string&);
template LstmWeights<float> ModelFileReader::read_weights<float>() const;
template LstmWeights<double> ModelFileReader::read_weights<double>() const;
template Lstm<float> Lstm<float>::load(const std::string&, const std::string&, int);
template Lstm<double> Lstm<double>::load(const std::string&, const std::string&, int);
template Lstm<float> Lstm<float>::load(const std::string&, const std::string&, const LstmOptions&);
template Lstm<double> Lstm<double>::load(const std::string&, const std::string&, const LstmOptions&);

}  // namespace fastlstm
