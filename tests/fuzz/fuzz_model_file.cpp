// libFuzzer target for the model file reader (csrc/model_file/). Every input must either
// raise fastlstm::InvalidArgument or read as weights that survive a write and a read unchanged;
// anything else (a crash, a sanitizer report, another exception, an allocation over
// -malloc_limit_mb) is a finding. Built and run by tests/test_model_file_fuzz.py:
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc/include -Icsrc \
//     -DFASTLSTM_VERSION='"fuzz"' -DFASTLSTM_SIMD_LEVEL='"fuzz"' -DFASTLSTM_BUILD_ISA='"baseline"' \
//     tests/fuzz/fuzz_model_file.cpp tests/fuzz/no_backend.cpp csrc/model_file/*.cpp csrc/lstm.cpp \
//     csrc/cpu_check.cpp csrc/fork_safety.cpp csrc/config.cpp csrc/weights.cpp csrc/version.cpp
//   ./a.out -dict=tests/fuzz/safetensors.dict -max_total_time=60 CORPUS tests/fuzz/corpus
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fastlstm/model_file.hpp"

namespace {

template <typename T>
bool same(const fastlstm::LstmWeights<T>& a, const fastlstm::LstmWeights<T>& b) {
  const fastlstm::LstmConfig &x = a.config(), &y = b.config();
  if (x.input_size != y.input_size || x.hidden_size != y.hidden_size || x.num_layers != y.num_layers ||
      x.bias != y.bias || x.batch_first != y.batch_first || x.bidirectional != y.bidirectional ||
      x.proj_size != y.proj_size || a.parameters().size() != b.parameters().size()) {
    return false;
  }
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    const auto &p = a.parameters()[i].values, &q = b.parameters()[i].values;
    // Bitwise: NaNs in a file must come back as the same NaNs.
    if (p.size() != q.size() || std::memcmp(p.data(), q.data(), p.size() * sizeof(T)) != 0) return false;
  }
  return true;
}

template <typename T>
void read_and_round_trip(const uint8_t* data, size_t size, const std::string& prefix) {
  const fastlstm::LstmWeights<T> weights = fastlstm::read_model_bytes<T>(data, size, prefix);
  const std::string bytes = fastlstm::model_file_bytes(weights);
  if (!same(weights, fastlstm::read_model_bytes<T>(bytes.data(), bytes.size()))) __builtin_trap();
}

}  // namespace

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

// Byte-level mutations of a whole file mostly break the 8-byte header length, and the reader stops
// there. Three times in four, this mutates the header or the data on their own and writes the
// length that fits, so that the JSON parser and the checks behind it see most of the inputs.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  uint64_t header_size = 0;
  for (int i = 7; size >= 8 && i >= 0; --i) header_size = (header_size << 8) | data[i];
  if (seed % 4 == 0 || size < 8 || header_size > size - 8) return LLVMFuzzerMutate(data, size, max_size);
  std::vector<uint8_t> header(data + 8, data + 8 + header_size), rest(data + 8 + header_size, data + size);
  std::vector<uint8_t>& part = (seed / 4) % 4 == 0 ? rest : header;  // the header three times in four
  const size_t other = 8 + (&part == &header ? rest.size() : header.size());
  if (max_size <= other) return LLVMFuzzerMutate(data, size, max_size);
  const size_t length = part.size();
  part.resize(max_size - other);
  part.resize(LLVMFuzzerMutate(part.data(), length, part.size()));
  const uint64_t new_header_size = header.size();
  for (int i = 0; i < 8; ++i) data[i] = static_cast<uint8_t>(new_header_size >> (8 * i));
  if (!header.empty()) std::memcpy(data + 8, header.data(), header.size());
  if (!rest.empty()) std::memcpy(data + 8 + header.size(), rest.data(), rest.size());
  return 8 + header.size() + rest.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (const char* prefix : {"", "rnn."}) {
    try {
      fastlstm::inspect_model_bytes(data, size, prefix);
    } catch (const fastlstm::InvalidArgument&) {
      continue;
    }
    // What inspects must read: an error now is a finding, and escapes as one.
    read_and_round_trip<float>(data, size, prefix);
    read_and_round_trip<double>(data, size, prefix);
  }
  return 0;
}
