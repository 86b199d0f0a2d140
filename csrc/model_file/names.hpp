#pragma once
// torch's parameter names: what a state_dict key names, and the configuration it implies.
#include <string>

#include "fastlstm/config.hpp"

namespace fastlstm::model_file {

// "input_size=.., hidden_size=.., ...": a configuration as messages show it.
std::string config_string(const LstmConfig& config);

}  // namespace fastlstm::model_file
