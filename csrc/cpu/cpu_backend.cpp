// The CPU backend's translation unit: the backend (cpu_backend.hpp), its layer run
// (layer_run.hpp), and the factory the engine calls.
#include "cpu_backend.hpp"
#include "layer_run.hpp"

namespace fastlstm {
template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(const LstmConfig& config, const LstmOptions& options) {
  return std::make_unique<cpu::CpuBackend<T>>(config, options);
}

template std::unique_ptr<Backend<float>> make_cpu_backend<float>(const LstmConfig&, const LstmOptions&);
template std::unique_ptr<Backend<double>> make_cpu_backend<double>(const LstmConfig&, const LstmOptions&);

}  // namespace fastlstm
