#pragma once
// The binding of fastlstm::Lstm<T>, shared by both modules: _core_<isa> (host memory) and _cuda
// (host memory and GPU arrays). What differs is how operands and results are converted: the
// `Conversion` policy (HostConversion here, the CUDA module's own there). The binding converts,
// releases the GIL around the engine's calls, and nothing else.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config_conversion.hpp"
#include "fastlstm/fastlstm.hpp"

namespace fastlstm::python {

namespace py = pybind11;

template <typename T>
TensorView<const T> numpy_view(const py::array& array, const char* name) {
  // isinstance compares dtypes by value (an unpickled float32 is not NumPy's float32 object).
  if (!py::isinstance<py::array_t<T>>(array)) {
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(array.dtype())));
  }
  if (array.ndim() > TensorView<T>::kMaxRank) {
    throw py::value_error(std::string(name) + ": at most 3 dimensions are supported");
  }
  TensorView<const T> view;
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

// A view's elements (rank <= 3, any strides) into `out`, in row-major order.
template <typename T>
void copy_to(const TensorView<const T>& view, T* out) {
  const int64_t e0 = view.rank > 0 ? view.shape[0] : 1, e1 = view.rank > 1 ? view.shape[1] : 1,
                e2 = view.rank > 2 ? view.shape[2] : 1;
  const int64_t s0 = view.rank > 0 ? view.strides[0] : 0, s1 = view.rank > 1 ? view.strides[1] : 0,
                s2 = view.rank > 2 ? view.strides[2] : 0;
  for (int64_t i = 0; i < e0; ++i)
    for (int64_t j = 0; j < e1; ++j)
      for (int64_t k = 0; k < e2; ++k) *out++ = view.data[i * s0 + j * s1 + k * s2];
}

// `array` itself where the engine reads it in place (aligned, strides non-negative multiples of the
// item size), else a C-contiguous copy; of another dtype, itself (numpy_view says what is wrong).
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

// Hands a host Tensor to NumPy: the array owns it through a capsule. `shape`, when given, is
// another shape of as many elements.
template <typename T>
py::array to_numpy(Tensor<T>&& tensor, const std::vector<int64_t>& shape = {}) {
  auto* owned = new Tensor<T>(std::move(tensor));
  py::capsule owner(owned, [](void* p) { delete static_cast<Tensor<T>*>(p); });
  return py::array_t<T>(shape.empty() ? owned->shape() : shape, owned->data(), owner);
}

// Hands a parameter's values to NumPy, as to_numpy hands a Tensor.
template <typename T>
py::array to_numpy(std::vector<T>&& values, const std::vector<int64_t>& shape) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), owner);
}

// A weight format from its Python name ("native", "float16", "bfloat16").
inline WeightFormat weight_format_from(const std::string& name) {
  if (name == "native") return WeightFormat::native;
  if (name == "float16") return WeightFormat::float16;
  if (name == "bfloat16") return WeightFormat::bfloat16;
  if (name == "int8") return WeightFormat::int8;
  throw py::value_error("weight_format: expected native, float16, bfloat16 or int8, got '" + name + "'");
}

// Host memory only: NumPy arrays in, NumPy arrays out.
struct HostConversion {
  template <typename T>
  static TensorView<const T> view(py::handle object, const char* name) {
    if (py::isinstance<py::array>(object)) return numpy_view<T>(py::reinterpret_borrow<py::array>(object), name);
    return numpy_view<T>(py::cast<py::array>(object), name);
  }
  template <typename T>
  static py::object result(Tensor<T>&& tensor, const std::vector<int64_t>& shape = {}) {
    return to_numpy(std::move(tensor), shape);
  }
};

// A view of one row (features) as a batch of one: (F,) -> (1, F).
template <typename T>
TensorView<const T> as_batch_of_one(TensorView<const T> row) {
  row.rank = 2;
  row.shape[1] = row.shape[0];
  row.strides[1] = row.strides[0];
  row.shape[0] = 1;
  row.strides[0] = 0;
  return row;
}

template <typename T, typename Conversion>
std::optional<StateView<T>> to_state(py::handle h0, py::handle c0) {
  if (h0.is_none() && c0.is_none()) return std::nullopt;
  if (h0.is_none() || c0.is_none()) throw py::value_error("hx: h_0 and c_0 must be given together");
  return StateView<T>{Conversion::template view<T>(h0, "h_0"), Conversion::template view<T>(c0, "c_0")};
}

template <typename T, typename Conversion>
py::tuple to_python(LstmOutput<T>&& result) {
  return py::make_tuple(Conversion::result(std::move(result.output)), Conversion::result(std::move(result.h_n)),
                        Conversion::result(std::move(result.c_n)));
}

// One stream step: x_t (N, H_in), or a single row (H_in,) for a batch of one, which gives a row.
template <typename T, typename Conversion>
py::object step(const Lstm<T>& engine, py::handle input_t, typename Lstm<T>::State& state,
                std::optional<py::array> output_t) {
  py::object input_object = py::reinterpret_borrow<py::object>(input_t);
  if (py::isinstance<py::array>(input_t)) input_object = readable<T>(py::reinterpret_borrow<py::array>(input_t));
  TensorView<const T> input = Conversion::template view<T>(input_object, "input_t");
  const bool row = input.rank == 1;
  if (row) input = as_batch_of_one(input);
  if (!output_t) {
    Tensor<T> output;
    {
      py::gil_scoped_release release;
      output = engine.step(input, state);
    }
    if (!row) return Conversion::result(std::move(output));
    const std::vector<int64_t> shape{output.shape()[1]};  // the row's own rank
    return Conversion::result(std::move(output), shape);
  }
  if (!output_t->writeable()) throw py::value_error("output_t: must be writeable");
  TensorView<const T> output = numpy_view<T>(*output_t, "output_t");
  if (output.rank == 1) output = as_batch_of_one(output);
  TensorView<T> out;
  out.data = const_cast<T*>(output.data);  // a writeable array's own memory
  out.rank = output.rank;
  out.shape = output.shape;
  out.strides = output.strides;
  {
    py::gil_scoped_release release;
    engine.step(input, state, out);
  }
  return *output_t;
}

// Binds Lstm<T> as `name` (with its stream State as `name`State). Extra arguments go to py::class_
// (the CUDA module makes its classes module-local).
template <typename T, typename Conversion, typename... Extra>
py::class_<Lstm<T>> bind_engine(py::module_& m, const char* name, const Extra&... extra) {
  using Engine = Lstm<T>;
  using State = typename Engine::State;
  py::class_<State>(m, (std::string(name) + "State").c_str(), extra...)
      .def_property_readonly("batch_size", &State::batch_size);

  py::class_<Engine> engine(m, name, extra...);
  engine.def_property_readonly("num_threads", &Engine::num_threads)
      .def_property_readonly("device", [](const Engine& e) { return e.device().str(); })
      .def_property_readonly("allow_tf32", [](const Engine& e) { return e.options().allow_tf32; })
      .def_property_readonly("weight_format",
                             [](const Engine& e) { return weight_format_name<T>(e.weight_format()); })
      .def_property_readonly("int8_input_bits", &Engine::int8_input_bits)
      .def_property_readonly("graph_replays", &Engine::graph_replays)
      .def(
          "parameter_shapes",
          [](const Engine& e) {
            std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;  // fixed by the configuration
            for (const auto& parameter : e.weights().parameters()) {
              shapes.emplace_back(parameter.spec.name, parameter.spec.shape);
            }
            return shapes;
          },
          "[(name, shape)] of every parameter, in torch's order.")
      .def_property_readonly("config", [](const Engine& e) { return config_dict(e.config()); })
      .def(
          "parameter",
          [](const Engine& e, const std::string& parameter) {
            Tensor<T> copy;
            {
              py::gil_scoped_release release;
              copy = e.parameter(parameter);
            }
            return to_numpy(std::move(copy));
          },
          "A snapshot of the named parameter.")
      .def(
          "copy_weights",
          [](const Engine& e) {
            LstmWeights<T> weights = [&] {
              py::gil_scoped_release release;
              return e.copy_weights();
            }();
            py::list result;
            for (auto& parameter : weights.parameters()) {
              result.append(py::make_tuple(parameter.spec.name, to_numpy(std::move(parameter.values), parameter.spec.shape)));
            }
            return result;
          },
          "[(name, array)]: a snapshot of every parameter, in torch's order.")
      .def(
          "copy_scales",
          [](const Engine& e) {
            LstmWeights<T> weights = [&] {
              py::gil_scoped_release release;
              return e.copy_weights();
            }();
            py::dict result;
            for (auto& parameter : weights.parameters()) {
              if (parameter.scales.empty()) continue;
              const std::vector<int64_t> shape{static_cast<int64_t>(parameter.scales.size())};
              result[py::str(parameter.spec.name)] = to_numpy(std::move(parameter.scales), shape);
            }
            return result;
          },
          "{name: row scales} of the int8 weight matrices (empty for other formats).")
      .def(
          "set_weights",
          [](Engine& e, const std::vector<std::pair<std::string, py::array>>& values, const py::dict& scales) {
            LstmWeights<T> weights(e.config());
            for (const auto& [name, array] : values) {
              Parameter<T>* parameter = weights.find(name);
              if (!parameter) throw py::value_error("unknown parameter '" + name + "'");
              const auto view = numpy_view<T>(array, name.c_str());
              if (view.numel() != parameter->spec.numel()) throw py::value_error(name + ": wrong number of values");
              copy_to(view, parameter->values.data());
            }
            for (const auto& [key, array] : scales) {
              const std::string name = py::str(key);
              if (!py::isinstance<py::array>(array)) throw py::type_error(name + ": scales must be a NumPy array");
              Parameter<T>* parameter = weights.find(name);
              if (!parameter) throw py::value_error("scales: unknown parameter '" + name + "'");
              const auto view = numpy_view<float>(py::reinterpret_borrow<py::array>(array), name.c_str());
              if (view.rank != 1 || view.shape[0] != parameter->spec.shape[0]) {
                throw py::value_error(name + ": expected one scale per row (" + std::to_string(parameter->spec.shape[0]) + ")");
              }
              parameter->scales.resize(static_cast<size_t>(view.shape[0]));
              copy_to(view, parameter->scales.data());
            }
            py::gil_scoped_release release;
            e.set_weights(weights);
          },
          py::arg("values"), py::arg("scales"),
          "Replaces every parameter; int8 matrices given in `scales` keep those row scales.")
      .def("set_parameter",
           [](Engine& e, const std::string& parameter, const py::array& values) {
             auto view = numpy_view<T>(values, parameter.c_str());
             py::gil_scoped_release release;
             e.set_parameter(parameter, view);
           })
      .def("set_parameters",
           [](Engine& e, const std::vector<std::pair<std::string, py::array>>& values) {
             std::vector<std::pair<std::string, TensorView<const T>>> views;
             for (const auto& [parameter, array] : values) views.emplace_back(parameter, numpy_view<T>(array, parameter.c_str()));
             py::gil_scoped_release release;
             e.set_parameters(views);
           })
      .def(
          "forward",
          [](const Engine& e, py::handle input, py::handle h0, py::handle c0) {
            const auto view = Conversion::template view<T>(input, "input");
            const auto state = to_state<T, Conversion>(h0, c0);
            LstmOutput<T> result;
            {
              py::gil_scoped_release release;
              result = e.forward(view, state ? &*state : nullptr);
            }
            return to_python<T, Conversion>(std::move(result));
          },
          py::arg("input"), py::arg("h_0") = py::none(), py::arg("c_0") = py::none())
      .def(
          "forward_packed",
          [](const Engine& e, py::handle data, const std::vector<int64_t>& batch_sizes, py::handle h0, py::handle c0,
             const std::optional<std::vector<int64_t>>& sorted_indices) {
            const auto view = Conversion::template view<T>(data, "data");
            const auto state = to_state<T, Conversion>(h0, c0);
            LstmOutput<T> result;
            {
              py::gil_scoped_release release;
              result = e.forward_packed(view, batch_sizes, state ? &*state : nullptr,
                                        sorted_indices ? &*sorted_indices : nullptr);
            }
            return to_python<T, Conversion>(std::move(result));
          },
          py::arg("data"), py::arg("batch_sizes"), py::arg("h_0") = py::none(), py::arg("c_0") = py::none(),
          py::arg("sorted_indices") = py::none())
      .def("make_state", &Engine::make_state, py::arg("batch_size"))
      .def("read_state",
           [](const Engine& e, const State& state) {
             std::pair<Tensor<T>, Tensor<T>> values;
             {
               py::gil_scoped_release release;
               values = e.read_state(state);
             }
             return py::make_tuple(to_numpy(std::move(values.first)), to_numpy(std::move(values.second)));
           },
           "(h, c): copies in host memory.")
      .def("set_state",
           [](const Engine& e, State& state, py::handle h, py::handle c) {
             const StateView<T> values{Conversion::template view<T>(h, "h"), Conversion::template view<T>(c, "c")};
             py::gil_scoped_release release;
             e.set_state(state, values);
           })
      .def("reset_state",
           [](const Engine& e, State& state) {
             py::gil_scoped_release release;
             e.reset_state(state);
           })
      .def("step", &step<T, Conversion>, py::arg("input_t"), py::arg("state"), py::arg("output_t") = py::none())
      .def("forward_chunk", [](const Engine& e, py::handle chunk, State& state) {
        const auto view = Conversion::template view<T>(chunk, "chunk");
        Tensor<T> output;
        {
          py::gil_scoped_release release;
          output = e.forward(view, state);
        }
        return Conversion::result(std::move(output));
      });
  return engine;
}

}  // namespace fastlstm::python
