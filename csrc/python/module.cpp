// The Python binding: converts NumPy arrays to views and results to NumPy arrays (no copies),
// releases the GIL around compute, and nothing else. The torch-compatible behaviour lives in
// python/fastlstm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config_conversion.hpp"
#include "fastlstm/fastlstm.hpp"

namespace py = pybind11;
using fastlstm::python::config_dict;

namespace {

template <typename T>
fastlstm::TensorView<const T> to_view(const py::array& array, const char* name) {
  // isinstance compares dtypes by value (an unpickled float32 is not NumPy's float32 object).
  if (!py::isinstance<py::array_t<T>>(array)) {
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(array.dtype())));
  }
  if (array.ndim() > fastlstm::TensorView<T>::kMaxRank) {
    throw py::value_error(std::string(name) + ": at most 3 dimensions are supported");
  }
  fastlstm::TensorView<const T> view;
  view.data = static_cast<const T*>(array.data());
  view.rank = static_cast<int>(array.ndim());
  for (int d = 0; d < view.rank; ++d) {
    // The stride of a dimension of extent 0 or 1 is never used; NumPy leaves it arbitrary.
    const py::ssize_t stride = array.shape(d) > 1 ? array.strides(d) : 0;
    if (stride < 0 || stride % static_cast<py::ssize_t>(sizeof(T)) != 0) {
      throw py::value_error(std::string(name) + ": strides must be non-negative multiples of the item size");
    }
    view.shape[static_cast<size_t>(d)] = array.shape(d);
    view.strides[static_cast<size_t>(d)] = stride / static_cast<py::ssize_t>(sizeof(T));
  }
  return view;
}

// `array` itself where the engine reads it in place (aligned, strides non-negative multiples of the
// item size), else a C-contiguous copy; of another dtype, itself (to_view says what is wrong).
template <typename T>
py::array readable(const py::array& array) {
  if (!py::isinstance<py::array_t<T>>(array)) return array;
  bool in_place = reinterpret_cast<uintptr_t>(array.data()) % alignof(T) == 0;
  for (py::ssize_t d = 0; d < array.ndim(); ++d) {
    const py::ssize_t stride = array.shape(d) > 1 ? array.strides(d) : 0;
    in_place = in_place && stride >= 0 && stride % static_cast<py::ssize_t>(sizeof(T)) == 0;
  }
  return in_place ? array : py::array_t<T, py::array::c_style>::ensure(array);
}

// A view of one row (features) as a batch of one: (F,) -> (1, F).
template <typename T>
fastlstm::TensorView<const T> as_batch_of_one(fastlstm::TensorView<const T> row) {
  row.rank = 2;
  row.shape[1] = row.shape[0];
  row.strides[1] = row.strides[0];
  row.shape[0] = 1;
  row.strides[0] = 0;
  return row;
}

// Hands a result buffer to NumPy: the array owns the Tensor through a capsule. `shape`, when
// given, is another shape of as many elements.
template <typename T>
py::array to_numpy(fastlstm::Tensor<T>&& tensor, const std::vector<int64_t>& shape = {}) {
  auto* owned = new fastlstm::Tensor<T>(std::move(tensor));
  py::capsule owner(owned, [](void* p) { delete static_cast<fastlstm::Tensor<T>*>(p); });
  return py::array_t<T>(shape.empty() ? owned->shape() : shape, owned->data(), owner);
}

// Hands a parameter's values to NumPy, as to_numpy hands a Tensor.
template <typename T>
py::array to_numpy(std::vector<T>&& values, const std::vector<int64_t>& shape) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), owner);
}

template <typename T>
py::tuple to_python(fastlstm::LstmOutput<T>&& result) {
  return py::make_tuple(to_numpy(std::move(result.output)), to_numpy(std::move(result.h_n)),
                        to_numpy(std::move(result.c_n)));
}

// A writable view of a stream state's buffer, keeping the state alive.
template <typename T>
py::array state_view(py::object owner, fastlstm::Tensor<T>& tensor) {
  return py::array(py::dtype::of<T>(), tensor.shape(), {}, tensor.data(), owner);
}

template <typename T>
std::optional<fastlstm::StateView<T>> to_state(const std::optional<py::array>& h0,
                                               const std::optional<py::array>& c0) {
  if (!h0 && !c0) return std::nullopt;
  if (!h0 || !c0) throw py::value_error("hx: h_0 and c_0 must be given together");
  return fastlstm::StateView<T>{to_view<T>(*h0, "h_0"), to_view<T>(*c0, "c_0")};
}


template <typename T>
void bind_engine(py::module_& m, const char* name) {
  using Engine = fastlstm::Lstm<T>;
  using State = typename Engine::State;
  py::class_<State>(m, (std::string(name) + "State").c_str())
      .def_property_readonly("h", [](py::object self) { return state_view(self, self.cast<State&>().h); })
      .def_property_readonly("c", [](py::object self) { return state_view(self, self.cast<State&>().c); });

  py::class_<Engine>(m, name)
      .def(py::init([](const py::dict& config, int num_threads) {
             return Engine(fastlstm::python::config_from_dict(config), num_threads);
           }),
           py::arg("config"), py::arg("num_threads"))
      .def_property_readonly("num_threads", &Engine::num_threads)
      .def(
          "parameter_shapes",
          [](const Engine& engine) {
            std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;  // fixed by the configuration
            for (const auto& parameter : engine.weights().parameters()) {
              shapes.emplace_back(parameter.spec.name, parameter.spec.shape);
            }
            return shapes;
          },
          "[(name, shape)] of every parameter, in torch's order.")
      .def_property_readonly("config", [](const Engine& engine) { return config_dict(engine.config()); })
      .def(
          "parameter",
          [](const Engine& engine, const std::string& name) {
            fastlstm::Tensor<T> copy;
            {
              py::gil_scoped_release release;
              copy = engine.parameter(name);
            }
            return to_numpy(std::move(copy));
          },
          "A snapshot of the named parameter.")
      .def(
          "copy_weights",
          [](const Engine& engine) {
            fastlstm::LstmWeights<T> weights = [&] {
              py::gil_scoped_release release;
              return engine.copy_weights();
            }();
            py::list result;
            for (auto& parameter : weights.parameters()) {
              result.append(py::make_tuple(parameter.spec.name, to_numpy(std::move(parameter.values), parameter.spec.shape)));
            }
            return result;
          },
          "[(name, array)]: a snapshot of every parameter, in torch's order.")
      .def("set_parameter",
           [](Engine& engine, const std::string& name, const py::array& values) {
             auto view = to_view<T>(values, name.c_str());
             py::gil_scoped_release release;
             engine.set_parameter(name, view);
           })
      .def("set_parameters",
           [](Engine& engine, const std::vector<std::pair<std::string, py::array>>& values) {
             std::vector<std::pair<std::string, fastlstm::TensorView<const T>>> views;
             for (const auto& [name, array] : values) views.emplace_back(name, to_view<T>(array, name.c_str()));
             py::gil_scoped_release release;
             engine.set_parameters(views);
           })
      .def("forward",
           [](const Engine& engine, const py::array& input, const std::optional<py::array>& h0,
              const std::optional<py::array>& c0) {
             auto view = to_view<T>(input, "input");
             auto state = to_state<T>(h0, c0);
             fastlstm::LstmOutput<T> result;
             {
               py::gil_scoped_release release;
               result = engine.forward(view, state ? &*state : nullptr);
             }
             return to_python(std::move(result));
           },
           py::arg("input"), py::arg("h_0") = py::none(), py::arg("c_0") = py::none())
      .def("forward_packed",
           [](const Engine& engine, const py::array& data, const std::vector<int64_t>& batch_sizes,
              const std::optional<py::array>& h0, const std::optional<py::array>& c0) {
             auto view = to_view<T>(data, "data");
             auto state = to_state<T>(h0, c0);
             fastlstm::LstmOutput<T> result;
             {
               py::gil_scoped_release release;
               result = engine.forward_packed(view, batch_sizes, state ? &*state : nullptr);
             }
             return to_python(std::move(result));
           },
           py::arg("data"), py::arg("batch_sizes"), py::arg("h_0") = py::none(), py::arg("c_0") = py::none())
      .def("make_state", &Engine::make_state, py::arg("batch_size"))
      .def("step",
           [](const Engine& engine, const py::array& input_t, State& state, std::optional<py::array> output_t) {
             // A one-row input (H_in,) is the row of a batch of one, and gives a one-row output.
             const bool row = input_t.ndim() == 1;
             auto input = to_view<T>(readable<T>(input_t), "input_t");
             if (row) input = as_batch_of_one(input);
             if (!output_t) {
               fastlstm::Tensor<T> output;
               {
                 py::gil_scoped_release release;
                 output = engine.step(input, state);
               }
               if (!row) return to_numpy(std::move(output));
               const std::vector<int64_t> shape{output.shape()[1]};  // the row's own rank
               return to_numpy(std::move(output), shape);
             }
             if (!output_t->writeable()) throw py::value_error("output_t: must be writeable");
             auto output = to_view<T>(*output_t, "output_t");
             if (output.rank == 1) output = as_batch_of_one(output);
             fastlstm::TensorView<T> out;
             out.data = const_cast<T*>(output.data);
             out.rank = output.rank;
             out.shape = output.shape;
             out.strides = output.strides;
             {
               py::gil_scoped_release release;
               engine.step(input, state, out);
             }
             return *output_t;
           },
           py::arg("input_t"), py::arg("state"), py::arg("output_t") = py::none())
      .def("forward_chunk", [](const Engine& engine, const py::array& chunk, State& state) {
        auto view = to_view<T>(chunk, "chunk");
        fastlstm::Tensor<T> output;
        {
          py::gil_scoped_release release;
          output = engine.forward(view, state);
        }
        return to_numpy(std::move(output));
      });
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
            py::gil_scoped_release release;
            return Engine(file.read_weights<T>(), num_threads);
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
          "dtype", [](const fastlstm::ModelFileReader& file) { return fastlstm::dtype_name(file.info().dtype); });
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
  bind_engine<float>(m, "LstmFloat32");
  bind_engine<double>(m, "LstmFloat64");
  bind_model_file(m);
  m.def("version", &fastlstm::version);
  m.def("simd_level", &fastlstm::simd_level);
  m.def("compiler", &fastlstm::compiler);
  m.def("default_num_threads", &fastlstm::default_num_threads);
  m.attr("MAX_THREADS") = fastlstm::kMaxThreads;
}
