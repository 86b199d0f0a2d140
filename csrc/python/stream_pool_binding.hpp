#pragma once
// The binding of fastlstm::StreamPool<T> (host memory): NumPy arrays in and out, the GIL released
// around every call that takes the model's lock.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "engine_binding.hpp"
#include "fastlstm/stream_pool.hpp"

namespace fastlstm::python {

// UnknownStream and PoolFull as the package's own exceptions (fastlstm._errors): a KeyError and
// a RuntimeError that also say what they are.
inline void register_stream_pool_errors() {
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const UnknownStream& e) {
      py::object type = py::module_::import("fastlstm._errors").attr("UnknownStreamError");
      PyErr_SetObject(type.ptr(), py::make_tuple(e.id(), e.what()).ptr());
    } catch (const PoolFull& e) {
      py::object type = py::module_::import("fastlstm._errors").attr("PoolFullError");
      PyErr_SetString(type.ptr(), e.what());
    }
  });
}

template <typename T>
void bind_stream_pool(py::module_& m, const char* name) {
  using Pool = StreamPool<T>;
  auto state_of = [](py::handle h, py::handle c) {
    return StateView<T>{HostConversion::view<T>(h, "h"), HostConversion::view<T>(c, "c")};
  };
  py::class_<Pool>(m, name)
      .def(py::init<const Lstm<T>&, int64_t>(), py::arg("engine"), py::arg("capacity"),
           py::keep_alive<1, 2>())  // the engine lives as long as the pool
      .def_property_readonly("capacity", &Pool::capacity)
      .def("__len__", &Pool::size, py::call_guard<py::gil_scoped_release>())
      .def("__contains__", &Pool::contains, py::call_guard<py::gil_scoped_release>())
      .def(
          "open",
          [state_of](Pool& pool, py::handle h, py::handle c) {
            if (h.is_none() && c.is_none()) {
              py::gil_scoped_release release;
              return pool.open();
            }
            const StateView<T> state = state_of(h, c);
            py::gil_scoped_release release;
            return pool.open(state);
          },
          py::arg("h") = py::none(), py::arg("c") = py::none())
      .def("close", &Pool::close, py::arg("id"), py::call_guard<py::gil_scoped_release>())
      .def(
          "step",
          [](Pool& pool, const py::array_t<int64_t, py::array::c_style>& ids, const py::array& input,
             const py::array& output) {
            if (ids.ndim() != 1) throw py::value_error("ids: expected one dimension");
            if (!output.writeable()) throw py::value_error("out: must be writeable");
            const TensorView<const T> in = numpy_view<T>(readable<T>(input), "x");
            const TensorView<const T> out_view = numpy_view<T>(output, "out");
            TensorView<T> out;
            out.data = const_cast<T*>(out_view.data);  // a writeable array's own memory (the caller checks)
            out.rank = out_view.rank;
            out.shape = out_view.shape;
            out.strides = out_view.strides;
            py::gil_scoped_release release;
            pool.step(ids.data(), static_cast<int64_t>(ids.shape(0)), in, out);
          },
          py::arg("ids"), py::arg("x"), py::arg("out"))
      .def("get_state",
           [](const Pool& pool, StreamId id) {
             std::pair<Tensor<T>, Tensor<T>> state;
             {
               py::gil_scoped_release release;
               state = pool.get_state(id);
             }
             return py::make_tuple(to_numpy(std::move(state.first)), to_numpy(std::move(state.second)));
           })
      .def("set_state",
           [state_of](Pool& pool, StreamId id, py::handle h, py::handle c) {
             const StateView<T> state = state_of(h, c);
             py::gil_scoped_release release;
             pool.set_state(id, state);
           })
      .def("reset_state", &Pool::reset_state, py::call_guard<py::gil_scoped_release>());
}

}  // namespace fastlstm::python
