// LstmConfig: the validation every constructor runs.
#include "fastlstm/config.hpp"

#include <string>

#include "checked_size.hpp"
#include "fastlstm/error.hpp"

namespace fastlstm {
namespace {

[[noreturn]] void invalid(const std::string& message) { throw InvalidArgument(message); }

}  // namespace

void LstmConfig::validate() const {
  // torch.nn.LSTM's messages, word for word: the Python class raises what torch raises.
  if (input_size < 1) invalid("input_size must be greater than zero");
  if (hidden_size < 1) invalid("hidden_size must be greater than zero");
  if (num_layers < 1) invalid("num_layers must be greater than zero");
  if (proj_size < 0) invalid("proj_size should be a positive integer or zero to disable projections");
  if (proj_size >= hidden_size) invalid("proj_size has to be smaller than hidden_size");
  if (reverse && bidirectional) {
    invalid("reverse: a single direction that runs backwards; a bidirectional LSTM has both directions already");
  }
  if (!(dropout >= 0 && dropout <= 1)) {  // NaN too
    invalid("dropout should be a number in range [0, 1] representing the probability of an element being zeroed");
  }
  // Every buffer the model holds or a call allocates is a product of these sizes: the weights
  // must be countable, and so must a row of each direction's gates and outputs.
  const int64_t D = num_directions(), H = hidden_size, P = output_size();
  const int64_t gates = checked_mul(4, H, "hidden_size");
  checked_mul(D, gates, "hidden_size");
  auto layer_weights = [&](int64_t layer_input, const char* what) {
    const int64_t per_gate_row = checked_add(checked_add(layer_input, P, what), 2, what);
    return checked_add(checked_mul(gates, per_gate_row, what), checked_mul(P, H, what), what);
  };
  const int64_t first = layer_weights(input_size, input_size > hidden_size ? "input_size" : "hidden_size");
  const int64_t later = layer_weights(checked_mul(D, P, "hidden_size"), "hidden_size");
  checked_mul(D, checked_add(first, checked_mul(num_layers - 1, later, "num_layers"), "num_layers"), "num_layers");
}

bool LstmConfig::same_parameters(const LstmConfig& other) const {
  return input_size == other.input_size && hidden_size == other.hidden_size && num_layers == other.num_layers &&
         bias == other.bias && bidirectional == other.bidirectional && proj_size == other.proj_size &&
         reverse == other.reverse && peephole == other.peephole;
}

}  // namespace fastlstm
