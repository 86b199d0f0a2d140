#pragma once
// The configuration as strings in a model file's __metadata__: read and checked against the
// tensors, and written so that any locale reads it back.
#include <map>
#include <string>

#include "fastlstm/model_file.hpp"

namespace fastlstm::model_file {

// Checks the configuration in the metadata, if any, against the one the tensors give (in `info`),
// and takes what they cannot give (batch_first, dropout, dtype) from it.
void apply_metadata(const std::map<std::string, std::string>& metadata, ModelFileInfo& info);

// The shortest decimal that reads back as `value` ("0", "0.25", "0.1"), in any locale.
std::string exact_decimal(double value);

}  // namespace fastlstm::model_file
