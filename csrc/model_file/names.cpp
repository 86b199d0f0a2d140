// Inferring an LSTM from the names and shapes of a state_dict's tensors (infer_lstm).
#include "names.hpp"

#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "common.hpp"
#include "fastlstm/model_file.hpp"
#include "shape_string.hpp"

namespace fastlstm {
namespace model_file {

std::string config_string(const LstmConfig& c) {
  std::ostringstream out;
  out << "input_size=" << c.input_size << ", hidden_size=" << c.hidden_size << ", num_layers=" << c.num_layers
      << ", bias=" << (c.bias ? "True" : "False") << ", bidirectional=" << (c.bidirectional ? "True" : "False")
      << ", proj_size=" << c.proj_size;
  if (c.reverse) out << ", reverse=True";
  if (c.peephole) out << ", peephole=True";
  return out.str();
}

namespace {

// A parameter name of torch.nn.LSTM (weight_ih_l3_reverse) or torch.nn.LSTMCell (weight_ih).
struct ParsedName {
  ParameterKind kind = ParameterKind::weight_ih;
  bool cell = false;
  int64_t layer = 0;
  int64_t direction = 0;
};

bool parse_parameter_name(const std::string& name, ParsedName* out) {
  static const std::pair<const char*, ParameterKind> kinds[] = {{"weight_ih", ParameterKind::weight_ih},
                                                                {"weight_hh", ParameterKind::weight_hh},
                                                                {"bias_ih", ParameterKind::bias_ih},
                                                                {"bias_hh", ParameterKind::bias_hh},
                                                                {"weight_hr", ParameterKind::weight_hr},
                                                                {"peephole", ParameterKind::peephole}};
  for (const auto& [stem, kind] : kinds) {
    const size_t n = std::strlen(stem);
    if (name.compare(0, n, stem) != 0) continue;
    std::string rest = name.substr(n);
    out->kind = kind;
    if (rest.empty()) {  // LSTMCell has no projection
      out->cell = true;
      return kind != ParameterKind::weight_hr;
    }
    out->cell = false;
    out->direction = 0;
    const std::string reverse = "_reverse";
    if (rest.size() > reverse.size() && rest.compare(rest.size() - reverse.size(), reverse.size(), reverse) == 0) {
      out->direction = 1;
      rest.resize(rest.size() - reverse.size());
    }
    if (rest.size() < 3 || rest.compare(0, 2, "_l") != 0) return false;
    const std::string digits = rest.substr(2);
    if (digits.size() > 18 || (digits.size() > 1 && digits[0] == '0')) return false;
    int64_t layer = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      layer = layer * 10 + (c - '0');
    }
    out->layer = layer;
    return true;
  }
  return false;
}

}  // namespace
}  // namespace model_file

using model_file::config_string;
using model_file::invalid;
using model_file::ParsedName;
using model_file::parse_parameter_name;
using model_file::quote;

StateDictLstm infer_lstm(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix) {
  std::map<std::string, ParsedName> lstm_keys, cell_keys;  // key -> what it names
  std::vector<std::string> unexpected;
  std::set<std::string> other_prefixes;  // where LSTM parameters are, when not under `prefix`
  for (const auto& [key, shape] : shapes) {
    ParsedName parsed;
    const bool under_prefix = key.compare(0, prefix.size(), prefix) == 0 && key.size() > prefix.size() &&
                              key.find('.', prefix.size()) == std::string::npos;
    if (!under_prefix) {
      const size_t dot = key.rfind('.');
      const std::string stem = dot == std::string::npos ? key : key.substr(dot + 1);
      if (parse_parameter_name(stem, &parsed)) other_prefixes.insert(key.substr(0, key.size() - stem.size()));
      continue;
    }
    if (!parse_parameter_name(key.substr(prefix.size()), &parsed)) {
      unexpected.push_back(key);
    } else {
      (parsed.cell ? cell_keys : lstm_keys).emplace(key, parsed);
    }
  }
  if (lstm_keys.empty() && cell_keys.empty()) {
    std::string message = "no LSTM parameters under prefix " + quote(prefix) + " (no key " +
                          quote(prefix + "weight_ih_l0") + " or " + quote(prefix + "weight_ih") + ")";
    if (!other_prefixes.empty()) {
      message += "; there are LSTM parameters under prefix";
      int listed = 0;
      for (const std::string& other : other_prefixes) {
        if (listed++ == 3) {
          message += ", ...";
          break;
        }
        message += (listed > 1 ? ", " : " ") + quote(other);
      }
    }
    invalid(message);
  }
  if (!lstm_keys.empty() && !cell_keys.empty()) {
    invalid("keys " + quote(lstm_keys.begin()->first) + " (torch.nn.LSTM) and " + quote(cell_keys.begin()->first) +
            " (torch.nn.LSTMCell) mix two kinds of module");
  }
  if (!unexpected.empty()) invalid("unexpected key " + quote(unexpected.front()) + ": not an LSTM parameter");

  // Each parameter of the inferred configuration, by torch's name, and the key that holds it.
  const bool cell = !cell_keys.empty();
  std::map<std::string, std::string> key_of;
  std::set<int64_t> layers;
  LstmConfig config;
  config.bias = false;
  const std::vector<int64_t>* proj_shape = nullptr;
  for (const auto& [key, parsed] : cell ? cell_keys : lstm_keys) {
    std::string name = key.substr(prefix.size()) + (cell ? "_l0" : "");
    key_of.emplace(name, key);
    layers.insert(parsed.layer);
    config.bidirectional = config.bidirectional || parsed.direction == 1;
    config.bias = config.bias || parsed.kind == ParameterKind::bias_ih || parsed.kind == ParameterKind::bias_hh;
    config.peephole = config.peephole || parsed.kind == ParameterKind::peephole;
    if (parsed.kind == ParameterKind::weight_hr && !proj_shape) proj_shape = &shapes.at(key);
  }
  auto missing = [&](const std::string& name) -> std::string {
    const std::string key = cell ? prefix + name.substr(0, name.size() - 3) : prefix + name;
    return "missing key " + quote(key);
  };
  int64_t expected_layer = 0;
  for (int64_t layer : layers) {
    if (layer != expected_layer) invalid(missing("weight_ih_l" + std::to_string(expected_layer)));
    ++expected_layer;
  }
  config.num_layers = expected_layer;
  auto first = key_of.find("weight_ih_l0");
  if (first == key_of.end()) invalid(missing("weight_ih_l0"));
  const std::vector<int64_t>& ih = shapes.at(first->second);
  if (ih.size() != 2 || ih[0] % 4 != 0 || ih[0] == 0 || ih[1] == 0) {
    invalid(quote(first->second) + " has shape " + shape_string(ih) + ", expected (4 * hidden_size, input_size)");
  }
  config.hidden_size = ih[0] / 4;
  config.input_size = ih[1];
  if (proj_shape) {
    if (proj_shape->size() != 2 || proj_shape->front() == 0) {
      invalid("weight_hr has shape " + shape_string(*proj_shape) + ", expected (proj_size, hidden_size)");
    }
    config.proj_size = proj_shape->front();
  }
  try {
    config.validate();
  } catch (const InvalidArgument& error) {
    invalid(std::string("the tensors give an invalid LSTM (") + config_string(config) + "): " + error.what());
  }

  StateDictLstm result;
  result.config = config;
  for (const ParameterSpec& spec : parameter_specs(config)) {
    auto it = key_of.find(spec.name);
    if (it == key_of.end()) invalid(missing(spec.name));
    const std::vector<int64_t>& shape = shapes.at(it->second);
    if (shape != spec.shape) {
      invalid(quote(it->second) + " has shape " + shape_string(shape) + ", expected " + shape_string(spec.shape) +
              " for an LSTM with " + config_string(config));
    }
    result.keys.emplace_back(spec.name, it->second);
    key_of.erase(it);
  }
  if (!key_of.empty()) {
    invalid("unexpected key " + quote(key_of.begin()->second) + " for an LSTM with " + config_string(config));
  }
  return result;
}

}  // namespace fastlstm
