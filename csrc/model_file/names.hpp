#pragma once
// torch's parameter names: what a state_dict key names, and the configuration it implies.
#include <string>

#include "fastlstm/config.hpp"

namespace fastlstm::model_file {

// "input_size=.., hidden_size=.., ...": a configuration as messages show it.
std::string config_string(const LstmConfig& config);

// The F32 tensor (rows,) that holds the row scales of an int8 weight matrix stored under `key`
// (an I8 tensor): "<key>.scale". Its weight r, c is the integer at r, c times scale[r].
inline std::string scale_name(const std::string& key) { return key + ".scale"; }

}  // namespace fastlstm::model_file
