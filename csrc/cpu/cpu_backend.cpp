// The CPU backend's translation unit: the backend (cpu_backend.hpp), its layer run
// (layer_run.hpp), and the factory the engine calls.
#include "cpu_backend.hpp"
#include "layer_run.hpp"

namespace fastlstm {
template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(const LstmConfig& config, int num_threads, WeightFormat weight_format) {
  return std::make_unique<cpu::CpuBackend<T>>(config, num_threads, weight_format);
}

template std::unique_ptr<Backend<float>> make_cpu_backend<float>(const LstmConfig&, int, WeightFormat);
template std::unique_ptr<Backend<double>> make_cpu_backend<double>(const LstmConfig&, int, WeightFormat);

}  // namespace fastlstm
