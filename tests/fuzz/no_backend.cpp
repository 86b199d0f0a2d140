// The fuzz target reads files and never runs a model: a backend that cannot be made keeps Eigen and
// the thread pool out of the sanitizer build (lstm.cpp, which the reader needs for LstmWeights,
// refers to make_cpu_backend).
#include "backend.hpp"
#include "fastlstm/error.hpp"

namespace fastlstm {

template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(const LstmConfig&, const LstmOptions&) {
  throw Error("the fuzz build of fastlstm has no backend");
}

template std::unique_ptr<Backend<float>> make_cpu_backend<float>(const LstmConfig&, const LstmOptions&);
template std::unique_ptr<Backend<double>> make_cpu_backend<double>(const LstmConfig&, const LstmOptions&);

}  // namespace fastlstm
