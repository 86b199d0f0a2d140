// The CUDA backend's factory in a core built without it (FASTLSTM_CUDA=OFF, or a Python module
// other than fastlstm._cuda): a model asked for on a GPU is refused with the reason.
#include "backend.hpp"
#include "fastlstm/error.hpp"

namespace fastlstm {

template <typename T>
std::unique_ptr<Backend<T>> make_cuda_backend(const LstmConfig&, const LstmOptions& options) {
  throw Error("device: " + options.device.str() + " needs CUDA, and this build of fastlstm has none (build it with "
              "FASTLSTM_CUDA=ON)");
}

template std::unique_ptr<Backend<float>> make_cuda_backend<float>(const LstmConfig&, const LstmOptions&);
template std::unique_ptr<Backend<double>> make_cuda_backend<double>(const LstmConfig&, const LstmOptions&);

}  // namespace fastlstm
