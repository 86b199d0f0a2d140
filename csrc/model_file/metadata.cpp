#include "metadata.hpp"

#include <locale>
#include <sstream>
#include <vector>

#include "common.hpp"
#include "names.hpp"

namespace fastlstm::model_file {
namespace {

constexpr const char* kConfigKeys[] = {"input_size", "hidden_size",   "num_layers", "bias",
                                       "batch_first", "bidirectional", "proj_size"};

int64_t metadata_int(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const std::string& text = metadata.at(key);
  bool ok = !text.empty() && text.size() <= 18;
  int64_t value = 0;
  for (char c : text) {
    ok = ok && c >= '0' && c <= '9';
    if (ok) value = value * 10 + (c - '0');
  }
  if (!ok) invalid("metadata " + key + " = " + quote(text) + " is not a non-negative integer");
  return value;
}

bool metadata_bool(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const std::string& text = metadata.at(key);
  if (text == "true" || text == "True" || text == "1") return true;
  if (text == "false" || text == "False" || text == "0") return false;
  invalid("metadata " + key + " = " + quote(text) + " is not 'true' or 'false'");
}

// A decimal number, read as C reads it whatever the program's locale (a service may have set
// one whose decimal separator is a comma); false unless all of `text` is the number.
bool parse_decimal(const std::string& text, double* value) {
  if (text.empty() || text.size() > 32 || text.find_first_not_of("0123456789.eE+-") != std::string::npos) {
    return false;
  }
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  in >> *value;
  return !in.fail() && in.peek() == std::char_traits<char>::eof();
}

// A number in [0, 1], as exact_decimal writes it.
double metadata_probability(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const std::string& text = metadata.at(key);
  double value = 0;
  if (!parse_decimal(text, &value) || !(value >= 0 && value <= 1)) {
    invalid("metadata " + key + " = " + quote(text) + " is not a number in [0, 1]");
  }
  return value;
}

}  // namespace

void apply_metadata(const std::map<std::string, std::string>& metadata, ModelFileInfo& info) {
  std::vector<std::string> present, absent;
  for (const char* key : kConfigKeys) (metadata.count(key) ? present : absent).push_back(key);
  if (!present.empty() && !absent.empty()) {
    invalid("metadata has " + present.front() + " but no " + absent.front() +
            " (a configuration in the metadata must be complete)");
  }
  if (!present.empty()) {
    LstmConfig stated;
    stated.input_size = metadata_int(metadata, "input_size");
    stated.hidden_size = metadata_int(metadata, "hidden_size");
    stated.num_layers = metadata_int(metadata, "num_layers");
    stated.bias = metadata_bool(metadata, "bias");
    stated.bidirectional = metadata_bool(metadata, "bidirectional");
    stated.proj_size = metadata_int(metadata, "proj_size");
    // Beyond torch's configuration: absent in files of other tools and of earlier versions.
    stated.peephole = metadata.count("peephole") ? metadata_bool(metadata, "peephole") : info.config.peephole;
    stated.reverse = metadata.count("reverse") ? metadata_bool(metadata, "reverse") : false;
    info.config.reverse = stated.reverse;  // the tensors cannot tell it
    const LstmConfig& found = info.config;
    if (!stated.same_parameters(found)) {
      invalid("the metadata describes an LSTM with " + config_string(stated) + " but the tensors hold one with " +
              config_string(found));
    }
    info.config.batch_first = metadata_bool(metadata, "batch_first");
    if (metadata.count("dropout")) info.config.dropout = metadata_probability(metadata, "dropout");
  }
  auto format = metadata.find("weight_format");
  if (format != metadata.end()) {
    if (format->second == "float16") {
      info.weight_format = WeightFormat::float16;
    } else if (format->second == "bfloat16") {
      info.weight_format = WeightFormat::bfloat16;
    } else if (format->second == "int8") {
      info.weight_format = WeightFormat::int8;
    } else if (format->second == "float32" || format->second == "float64") {
      info.weight_format = WeightFormat::native;
    } else {
      invalid("metadata weight_format = " + quote(format->second) + " is not 'float16', 'bfloat16', 'int8', 'float32' "
              "or 'float64'");
    }
  }
  auto input_bits = metadata.find("int8_input_bits");
  if (input_bits != metadata.end()) {
    if (input_bits->second != "8" && input_bits->second != "16") {
      invalid("metadata int8_input_bits = " + quote(input_bits->second) + " is not '8' or '16'");
    }
    info.int8_input_bits = input_bits->second == "8" ? 8 : 16;
  }
  auto dtype = metadata.find("dtype");
  if (!present.empty() && dtype != metadata.end()) {
    if (dtype->second == "float32") {
      info.dtype = DType::float32;
    } else if (dtype->second == "float64") {
      info.dtype = DType::float64;
    } else {
      invalid("metadata dtype = " + quote(dtype->second) + " is not 'float32' or 'float64'");
    }
  }
}

std::string exact_decimal(double value) {
  std::string text;
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream out;
    out.imbue(std::locale::classic());
    out.precision(digits);
    out << value;
    text = out.str();
    double back = 0;
    if (parse_decimal(text, &back) && back == value) break;
  }
  return text;
}

}  // namespace fastlstm::model_file
