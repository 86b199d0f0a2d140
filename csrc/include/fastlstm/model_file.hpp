#pragma once
// The model file: a safetensors file holding an LSTM's parameters under torch's names
// (weight_ih_l0, ..., weight_hr_l1_reverse), F32 or F64, with the configuration as strings in
// its __metadata__ (input_size, hidden_size, num_layers, bias, batch_first, bidirectional,
// proj_size, dropout, dtype; dropout may be absent, as in files of earlier versions). Files
// written by other tools load too: the configuration is inferred from the tensors' names and
// shapes, under a key prefix for an LSTM inside a larger network.
//
// Reading never trusts the file: every size, offset and shape is checked against the file's
// length before anything is allocated or read, and anything malformed raises InvalidArgument
// naming the file and the problem (a header over 16 MiB among them). Failing to open, read or
// write a file raises FileError; so does a path that is not a regular file (a FIFO, device,
// socket or directory), refused at once without waiting on it. A path with a NUL byte is
// InvalidArgument.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fastlstm/config.hpp"
#include "fastlstm/error.hpp"
#include "fastlstm/lstm.hpp"
#include "fastlstm/weights.hpp"

namespace fastlstm {

enum class DType { float32, float64 };

// "float32" or "float64".
const char* dtype_name(DType dtype);

// The LSTM among a state_dict's tensors: its configuration (batch_first false: the tensors
// cannot tell) and, in torch's parameter order, the key that holds each parameter.
struct StateDictLstm {
  LstmConfig config;
  std::vector<std::pair<std::string, std::string>> keys;  // (parameter name, state_dict key)
};

// Infers an LSTM from tensor names and shapes, as torch.nn.LSTM's state_dict names them
// (weight_ih_l{k}, ..._reverse, bias_*, weight_hr_l{k}) or torch.nn.LSTMCell's (weight_ih,
// weight_hh, bias_ih, bias_hh: a one-layer LSTM). Only keys `prefix` + name with no further '.'
// are the LSTM's; keys outside the prefix are ignored. Throws InvalidArgument naming the first
// missing, unexpected or wrongly shaped key. Thread-safe (a pure function).
StateDictLstm infer_lstm(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix = "");

// What a model file holds, before its tensors are read.
struct ModelFileInfo {
  LstmConfig config;  // batch_first and dropout from the metadata; false and 0 without
  DType dtype;        // the metadata's dtype; without, float64 if every LSTM tensor is F64, else float32
  // The metadata's weight_format; without, float16 (bfloat16) if every weight matrix is F16 (BF16).
  // Lstm<float>::load gives the model this format unless its options name one.
  WeightFormat weight_format = WeightFormat::native;
  int int8_input_bits = 16;  // the metadata's int8_input_bits (int8 models), as the model was saved
};

// Reads the header of the file at `path` (and nothing more), checks it and infers the LSTM under
// `prefix` (see infer_lstm); a configuration in the metadata must agree with the tensors. Throws
// FileError when the file cannot be read, InvalidArgument ("<path>: <problem>") when it is
// malformed, holds no LSTM under the prefix, or its LSTM tensors are not F32, F64, F16 or BF16. Thread-safe.
// Files are read, not memory-mapped: one that another process truncates meanwhile raises
// FileError (EIO) instead of crashing the process.
ModelFileInfo inspect_model_file(const std::string& path, const std::string& prefix = "");

// As inspect_model_file, then reads the LSTM's tensors cast to T (as load_state_dict casts)
// straight into the weights: allocates only those (at most twice the file's size) and the
// header. Thread-safe.
template <typename T>
LstmWeights<T> read_model_file(const std::string& path, const std::string& prefix = "");

// A model file opened once: its header read and checked (as inspect_model_file checks it) when
// constructed, its tensors read later from the same open file. Another process that replaces the
// file meanwhile (renames a new one over the path, as save does) changes nothing of what this
// reads: the information and the weights always come from one version of the file. Throws as
// inspect_model_file. Thread-safe for concurrent reads.
class ModelFileReader {
 public:
  explicit ModelFileReader(const std::string& path, const std::string& prefix = "");
  ~ModelFileReader();
  ModelFileReader(ModelFileReader&&) noexcept;
  ModelFileReader& operator=(ModelFileReader&&) noexcept;

  const ModelFileInfo& info() const;
  // The LSTM's tensors cast to T (as read_model_file reads them). The I8 weight matrices of an
  // int8 model come, for float, as codes and scales (Parameter::codes; no values), as an int8
  // model holds them; for double, as their values.
  template <typename T>
  LstmWeights<T> read_weights() const;

 private:
  struct Open;
  std::unique_ptr<Open> open_;
};

extern template LstmWeights<float> ModelFileReader::read_weights<float>() const;
extern template LstmWeights<double> ModelFileReader::read_weights<double>() const;

// The same for a model file already in memory (`size` bytes at `data`); `name` stands for the
// file in error messages. Reads nothing outside [data, data + size). Thread-safe.
ModelFileInfo inspect_model_bytes(const void* data, size_t size, const std::string& prefix = "",
                                  const std::string& name = "<memory>");
template <typename T>
LstmWeights<T> read_model_bytes(const void* data, size_t size, const std::string& prefix = "",
                                const std::string& name = "<memory>");

// The model file of `weights`: tensors in torch's order, F32 for float and F64 for double,
// the configuration in the metadata. (Lstm::save writes a model's 16-bit weight matrices as F16
// or BF16 tensors, its format in the metadata.) Thread-safe for concurrent readers of `weights`.
template <typename T>
std::string model_file_bytes(const LstmWeights<T>& weights);

// Writes model_file_bytes(weights) to `path` through a temporary file in the same directory,
// renamed over `path` once complete: a failed save leaves no partial file. Throws FileError.
template <typename T>
void save_model_file(const std::string& path, const LstmWeights<T>& weights);

extern template LstmWeights<float> read_model_file<float>(const std::string&, const std::string&);
extern template LstmWeights<double> read_model_file<double>(const std::string&, const std::string&);
extern template LstmWeights<float> read_model_bytes<float>(const void*, size_t, const std::string&,
                                                           const std::string&);
extern template LstmWeights<double> read_model_bytes<double>(const void*, size_t, const std::string&,
                                                             const std::string&);
extern template std::string model_file_bytes<float>(const LstmWeights<float>&);
extern template std::string model_file_bytes<double>(const LstmWeights<double>&);
extern template void save_model_file<float>(const std::string&, const LstmWeights<float>&);
extern template void save_model_file<double>(const std::string&, const LstmWeights<double>&);

}  // namespace fastlstm
