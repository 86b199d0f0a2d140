#pragma once
// LstmConfig to and from the dict the Python package holds it in (torch.nn.LSTM's argument names),
// for both modules (_core_<isa>, _cuda).
#include <pybind11/pybind11.h>

#include "fastlstm/config.hpp"

namespace fastlstm::python {

inline LstmConfig config_from_dict(const pybind11::dict& values) {
  LstmConfig config;
  config.input_size = values["input_size"].cast<int64_t>();
  config.hidden_size = values["hidden_size"].cast<int64_t>();
  config.num_layers = values["num_layers"].cast<int64_t>();
  config.bias = values["bias"].cast<bool>();
  config.batch_first = values["batch_first"].cast<bool>();
  config.bidirectional = values["bidirectional"].cast<bool>();
  config.proj_size = values["proj_size"].cast<int64_t>();
  config.dropout = values["dropout"].cast<double>();
  if (values.contains("reverse")) config.reverse = values["reverse"].cast<bool>();
  if (values.contains("peephole")) config.peephole = values["peephole"].cast<bool>();
  return config;
}

inline pybind11::dict config_dict(const LstmConfig& config) {
  pybind11::dict result;
  result["input_size"] = config.input_size;
  result["hidden_size"] = config.hidden_size;
  result["num_layers"] = config.num_layers;
  result["bias"] = config.bias;
  result["batch_first"] = config.batch_first;
  result["bidirectional"] = config.bidirectional;
  result["proj_size"] = config.proj_size;
  result["dropout"] = config.dropout;
  result["reverse"] = config.reverse;
  result["peephole"] = config.peephole;
  return result;
}

}  // namespace fastlstm::python
