#pragma once
// The binding of fastlstm::StreamPool<T> (host memory): NumPy arrays in and out, the GIL released
// around every call that takes the model's lock.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine_binding.hpp"
#include "fastlstm/step_batcher.hpp"
#include "fastlstm/stream_pool.hpp"

namespace fastlstm::python {

// UnknownStream, PoolFull and BatcherClosed as the package's own exceptions (fastlstm._errors): a
// KeyError and two RuntimeErrors that also say what they are.
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
    } catch (const BatcherClosed& e) {
      py::object type = py::module_::import("fastlstm._errors").attr("BatcherClosedError");
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

// A step submitted to a StepBatcher: its output (H_out,) once the batch that ran it is done.
template <typename T>
class StepFuture {
 public:
  explicit StepFuture(std::future<std::vector<T>> future) : future_(future.share()) {}

  bool done() const { return future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }

  // The output, waiting (without the GIL) at most `timeout` seconds (None: as long as it takes);
  // raises the step's error, or TimeoutError.
  py::array result(std::optional<double> timeout) const {
    bool ready = true;
    {
      py::gil_scoped_release release;
      if (timeout) {
        ready = future_.wait_for(std::chrono::duration<double>(std::max(*timeout, 0.0))) == std::future_status::ready;
      } else {
        future_.wait();
      }
    }
    if (!ready) {
      PyErr_SetString(PyExc_TimeoutError, "the step has not run yet");
      throw py::error_already_set();
    }
    const std::vector<T>& values = future_.get();  // rethrows the step's error
    py::array_t<T> output(static_cast<py::ssize_t>(values.size()));
    std::copy(values.begin(), values.end(), output.mutable_data());
    return output;
  }

 private:
  std::shared_future<std::vector<T>> future_;  // const waits from several threads are safe
};

template <typename T>
void bind_step_batcher(py::module_& m, const char* name) {
  using Batcher = StepBatcher<T>;
  py::class_<StepFuture<T>>(m, (std::string(name) + "Future").c_str())
      .def("done", &StepFuture<T>::done)
      .def("result", &StepFuture<T>::result, py::arg("timeout") = py::none());
  py::class_<Batcher>(m, name)
      .def(py::init([](StreamPool<T>& pool, int64_t max_batch, double max_delay_us) {
             if (!(max_delay_us >= 0.0 && max_delay_us <= 3.6e9)) {
               throw py::value_error("max_delay_us: expected a number of microseconds in [0, 3.6e9], got " +
                                     std::to_string(max_delay_us));
             }
             const auto delay = std::chrono::microseconds(static_cast<int64_t>(max_delay_us));
             return std::make_unique<Batcher>(pool, max_batch, delay);
           }),
           py::arg("pool"), py::arg("max_batch"), py::arg("max_delay_us"),
           py::keep_alive<1, 2>())  // the pool lives as long as the batcher
      .def(
          "submit",
          [](Batcher& batcher, StreamId id, const py::array& x_t) {
            const int64_t width = batcher.pool().model().config().input_size;
            const py::array readable_row = readable<T>(x_t);  // a misaligned row is copied first
            const TensorView<const T> row = numpy_view<T>(readable_row, "x_t");
            if (row.rank != 1 || row.shape[0] != width) {
              throw py::value_error("x_t: expected shape (" + std::to_string(width) + ",)");
            }
            if (row.strides[0] == 1 || width <= 1) return StepFuture<T>(batcher.submit(id, row.data));
            std::vector<T> packed(static_cast<size_t>(width));
            for (int64_t k = 0; k < width; ++k) packed[static_cast<size_t>(k)] = row.data[k * row.strides[0]];
            return StepFuture<T>(batcher.submit(id, packed.data()));
          },
          py::arg("id"), py::arg("x_t"))
      .def("close", &Batcher::close, py::arg("drain") = true, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("batches", &Batcher::batches)
      .def_property_readonly("steps", &Batcher::steps);
}

}  // namespace fastlstm::python
