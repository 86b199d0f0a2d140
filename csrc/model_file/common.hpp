#pragma once
// What the parts of the model file reader and writer share: how they report a bad file.
#include <string>

#include "fastlstm/error.hpp"

namespace fastlstm::model_file {

[[noreturn]] inline void invalid(const std::string& message) { throw InvalidArgument(message); }

inline std::string quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace fastlstm::model_file
