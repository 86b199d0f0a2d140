// The Python binding of the CPU core: the engine (engine_binding.hpp) over NumPy arrays, the model
// file, and the build's facts. It converts, releases the GIL around compute, and nothing else. The
// torch-compatible behaviour lives in python/fastlstm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "config_conversion.hpp"
#include "engine_binding.hpp"
#include "stream_pool_binding.hpp"
#include "fastlstm/fastlstm.hpp"

namespace py = pybind11;
using fastlstm::python::config_dict;

namespace {

using fastlstm::python::HostConversion;
using fastlstm::python::to_numpy;

// The engine on the CPU: made from a config and a thread count.
template <typename T>
void bind_cpu_engine(py::module_& m, const char* name) {
  using Engine = fastlstm::Lstm<T>;
  fastlstm::python::bind_engine<T, HostConversion>(m, name).def(
      py::init([](const py::dict& config, int num_threads, const std::string& weight_format, int int8_input_bits) {
        fastlstm::LstmOptions options;
        options.num_threads = num_threads;
        options.weight_format = fastlstm::python::weight_format_from(weight_format);
        options.int8_input_bits = int8_input_bits;
        return Engine(fastlstm::python::config_from_dict(config), options);
      }),
      py::arg("config"), py::arg("num_threads"), py::arg("weight_format") = "native", py::arg("int8_input_bits") = 16);
}

// The model file (model_file.hpp): saving and loading engines, and the inference of an LSTM from
// tensor shapes that LSTM.from_state_dict uses.
template <typename T>
void bind_model_file_methods(py::module_& m, const char* name) {
  using Engine = fastlstm::Lstm<T>;
  auto engine = py::reinterpret_borrow<py::class_<Engine>>(m.attr(name));
  engine
      .def_static(
          "load",
          [](const std::string& path, const std::string& prefix, int num_threads) {
            py::gil_scoped_release release;
            return Engine::load(path, prefix, num_threads);
          },
          py::arg("path"), py::arg("prefix") = "", py::arg("num_threads") = 0)
      .def_static(
          "from_model_file",
          [](const fastlstm::ModelFileReader& file, int num_threads) {
            fastlstm::LstmOptions options;
            options.num_threads = num_threads;
            if (std::is_same_v<T, float>) {  // as saved
              options.weight_format = file.info().weight_format;
              options.int8_input_bits = file.info().int8_input_bits;
            }
            py::gil_scoped_release release;
            return Engine(file.read_weights<T>(), options);
          },
          py::arg("file"), py::arg("num_threads") = 0)
      .def(
          "save",
          [](const Engine& engine, const std::string& path) {
            py::gil_scoped_release release;
            engine.save(path);
          },
          py::arg("path"));
}

void bind_model_file(py::module_& m) {
  // Registered last, so tried before the translator of its base class fastlstm::Error.
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const fastlstm::FileError& e) {
      // OSError(errno, message, filename): FileNotFoundError and kin, with fastlstm's message.
      py::object filename = py::reinterpret_steal<py::object>(PyUnicode_DecodeFSDefaultAndSize(
          e.path().data(), static_cast<py::ssize_t>(e.path().size())));
      if (!filename) {
        PyErr_Clear();
        filename = py::none();
      }
      py::object error = py::reinterpret_borrow<py::object>(PyExc_OSError)(e.errno_value(), e.what(), filename);
      PyErr_SetObject(PyExc_OSError, error.ptr());
    }
  });
  py::class_<fastlstm::ModelFileReader>(m, "ModelFileReader",
                                        "A model file opened once: its header checked, its tensors read on demand.")
      .def(py::init([](const std::string& path, const std::string& prefix) {
             py::gil_scoped_release release;
             return fastlstm::ModelFileReader(path, prefix);
           }),
           py::arg("path"), py::arg("prefix") = "")
      .def_property_readonly("config",
                             [](const fastlstm::ModelFileReader& file) { return config_dict(file.info().config); })
      .def_property_readonly(
          "dtype", [](const fastlstm::ModelFileReader& file) { return fastlstm::dtype_name(file.info().dtype); })
      .def_property_readonly("weight_format", [](const fastlstm::ModelFileReader& file) {
        return fastlstm::weight_format_name<float>(file.info().weight_format);
      });
  bind_model_file_methods<float>(m, "LstmFloat32");
  bind_model_file_methods<double>(m, "LstmFloat64");
  m.def(
      "infer_lstm",
      [](const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix) {
        fastlstm::StateDictLstm found = fastlstm::infer_lstm(shapes, prefix);
        return py::make_tuple(config_dict(found.config), found.keys);
      },
      py::arg("shapes"), py::arg("prefix") = "",
      "(config, [(parameter name, key)]) of the LSTM among {key: shape}.");
}

}  // namespace

// The same binding is built once per instruction set: _core_avx512, _core_avx2, _core_baseline
// (see CMakeLists.txt); the package imports one (python/fastlstm/_native.py).
#ifndef FASTLSTM_MODULE_NAME
#error "FASTLSTM_MODULE_NAME names the module (_core_<isa>)"
#endif

PYBIND11_MODULE(FASTLSTM_MODULE_NAME, m) {
  m.doc() = "fastlstm's compiled core (use fastlstm.LSTM)";
  // pybind11 tries the most recently registered translator first: the derived class goes last.
  py::register_exception<fastlstm::Error>(m, "Error", PyExc_RuntimeError);
  py::register_exception<fastlstm::InvalidArgument>(m, "InvalidArgument", PyExc_ValueError);
  bind_cpu_engine<float>(m, "LstmFloat32");
  bind_cpu_engine<double>(m, "LstmFloat64");
  bind_model_file(m);
  fastlstm::python::bind_stream_pool<float>(m, "StreamPoolFloat32");
  fastlstm::python::bind_stream_pool<double>(m, "StreamPoolFloat64");
  fastlstm::python::bind_step_batcher<float>(m, "StepBatcherFloat32");
  fastlstm::python::bind_step_batcher<double>(m, "StepBatcherFloat64");
  fastlstm::python::register_stream_pool_errors();  // after bind_model_file's: tried first
  m.def("version", &fastlstm::version);
  m.def("simd_level", &fastlstm::simd_level);
  m.def("compiler", &fastlstm::compiler);
  m.def("default_num_threads", &fastlstm::default_num_threads);
  m.def("thread_budget", [] {
    const fastlstm::ThreadBudget budget = fastlstm::thread_budget();
    return std::make_pair(budget.threads, budget.source);
  });
  m.attr("MAX_THREADS") = fastlstm::kMaxThreads;
}
