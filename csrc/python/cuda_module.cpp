// The CUDA extension module (fastlstm._cuda), built with FASTLSTM_CUDA=ON and imported only when
// a model is put on a GPU. Converts: NumPy arrays (host), device arrays handed over through
// __cuda_array_interface__ or DLPack, and results (NumPy arrays, or DeviceArrays that export
// both protocols). The torch-compatible behaviour lives in python/fastlstm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "config_conversion.hpp"
#include "../cuda/cuda_lstm.hpp"
#include "dlpack_abi.hpp"
#include "fastlstm/fastlstm.hpp"

namespace py = pybind11;
namespace cuda = fastlstm::cuda;

namespace {

// A device array received from Python: pointer, shape and strides (elements), element size.
// Keeps what owns the memory alive: the producer object, or a consumed DLPack tensor.
class DeviceTensor {
 public:
  DeviceTensor(uintptr_t pointer, std::vector<int64_t> shape, std::vector<int64_t> strides, int itemsize,
               py::object owner)
      : pointer_(pointer), shape_(std::move(shape)), strides_(std::move(strides)), itemsize_(itemsize),
        owner_(std::move(owner)) {
    if (shape_.size() != strides_.size()) throw py::value_error("DeviceTensor: shape and strides differ in length");
    device_ = cuda::pointer_device(reinterpret_cast<const void*>(pointer_));
  }

  // Consumes a "dltensor" capsule (DLPack 0.8): renames it "used_dltensor" and calls its deleter
  // when this tensor goes away.
  static std::unique_ptr<DeviceTensor> from_dlpack(py::capsule capsule) {
    if (std::string(capsule.name() ? capsule.name() : "") != "dltensor") {
      throw py::type_error("expected a DLPack capsule named 'dltensor' (an unused, unversioned DLPack tensor)");
    }
    auto* managed = static_cast<fastlstm::dlpack::ManagedTensor*>(capsule.get_pointer());
    const auto& t = managed->dl_tensor;
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim), strides(static_cast<size_t>(t.ndim));
    int64_t stride = 1;
    for (int d = t.ndim - 1; d >= 0; --d) {
      strides[static_cast<size_t>(d)] = t.strides ? t.strides[d] : stride;
      stride *= shape[static_cast<size_t>(d)];
    }
    const bool is_float = t.dtype.code == fastlstm::dlpack::kFloat && t.dtype.lanes == 1;
    const int itemsize = is_float && (t.dtype.bits == 32 || t.dtype.bits == 64) ? t.dtype.bits / 8 : 0;
    if (PyCapsule_SetName(capsule.ptr(), "used_dltensor") != 0) throw py::error_already_set();
    auto tensor = std::make_unique<DeviceTensor>(
        reinterpret_cast<uintptr_t>(static_cast<char*>(t.data) + t.byte_offset), std::move(shape), std::move(strides),
        itemsize, py::none());
    tensor->managed_ = managed;
    const bool cuda_memory = t.device.device_type == fastlstm::dlpack::kCUDA ||
                             t.device.device_type == fastlstm::dlpack::kCUDAManaged;
    tensor->device_ = cuda_memory ? t.device.device_id : -1;
    if (itemsize == 0) tensor->dtype_error_ = "dtype code " + std::to_string(t.dtype.code) + ", " +
                                              std::to_string(t.dtype.bits) + " bits";
    return tensor;
  }

  ~DeviceTensor() {
    if (managed_ && managed_->deleter) managed_->deleter(managed_);
  }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  py::tuple shape() const { return py::cast(shape_); }
  py::tuple strides() const { return py::cast(strides_); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t extent : shape_) n *= extent;
    return n;
  }
  int itemsize() const { return itemsize_; }
  int device() const { return device_; }
  uintptr_t pointer() const { return pointer_; }
  const std::string& dtype_error() const { return dtype_error_; }

  // A view, with one size-1 axis inserted at `axis` (for unbatched input and states).
  std::unique_ptr<DeviceTensor> unsqueeze(int axis) const {
    auto shape = shape_, strides = strides_;
    shape.insert(shape.begin() + axis, 1);
    strides.insert(strides.begin() + axis, 0);
    auto view = std::make_unique<DeviceTensor>(pointer_, shape, strides, itemsize_, owner_);
    view->device_ = device_;
    view->dtype_error_ = dtype_error_;
    return view;  // the binding keeps `this` (which may own a DLPack tensor) alive with the view
  }

  template <typename T>
  cuda::Operand<T> operand(const char* name) const {
    if (itemsize_ != static_cast<int>(sizeof(T))) {
      throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                           " (the model's dtype; fastlstm does not cast silently)" +
                           (dtype_error_.empty() ? "" : ", got " + dtype_error_));
    }
    if (shape_.size() > 3) throw py::value_error(std::string(name) + ": at most 3 dimensions are supported");
    cuda::Operand<T> op;
    op.memory = cuda::Memory::device;
    op.view.data = reinterpret_cast<const T*>(pointer_);
    op.view.rank = static_cast<int>(shape_.size());
    for (size_t d = 0; d < shape_.size(); ++d) {
      if (strides_[d] < 0 && shape_[d] > 1) {
        throw py::value_error(std::string(name) + ": negative strides are not supported");
      }
      op.view.shape[d] = shape_[d];
      op.view.strides[d] = shape_[d] > 1 ? strides_[d] : 0;
    }
    return op;
  }

 private:
  uintptr_t pointer_ = 0;
  std::vector<int64_t> shape_, strides_;
  int itemsize_ = 0;
  int device_ = -1;
  py::object owner_;
  fastlstm::dlpack::ManagedTensor* managed_ = nullptr;
  std::string dtype_error_;
};

// What forward returns on the GPU: a contiguous device array exporting DLPack and
// __cuda_array_interface__, so that torch.from_dlpack / cupy.from_dlpack take it without a copy.
class PyDeviceArray {
 public:
  using Variant = std::variant<cuda::DeviceArray<float>, cuda::DeviceArray<double>>;
  explicit PyDeviceArray(Variant array) : array_(std::move(array)) {}

  std::vector<int64_t> shape() const {
    return std::visit([](const auto& a) { return a.shape(); }, array_);
  }
  int itemsize() const { return array_.index() == 0 ? 4 : 8; }
  int device() const {
    return std::visit([](const auto& a) { return a.device(); }, array_);
  }
  uintptr_t pointer() const {
    return std::visit([](const auto& a) { return reinterpret_cast<uintptr_t>(a.data()); }, array_);
  }
  int64_t size() const {
    return std::visit([](const auto& a) { return a.numel(); }, array_);
  }
  PyDeviceArray reshape(const std::vector<int64_t>& shape) const {
    return PyDeviceArray(std::visit([&](const auto& a) { return Variant(a.reshaped(shape)); }, array_));
  }
  py::dtype dtype() const { return array_.index() == 0 ? py::dtype::of<float>() : py::dtype::of<double>(); }

  py::array numpy() const {
    return std::visit(
        [](const auto& a) -> py::array {
          using T = std::remove_pointer_t<decltype(a.data())>;
          py::array_t<T> host(a.shape());
          {
            py::gil_scoped_release release;
            a.copy_to_host(host.mutable_data());
          }
          return host;
        },
        array_);
  }

  py::dict cuda_array_interface() const {
    py::dict d;
    d["shape"] = py::tuple(py::cast(shape()));
    d["typestr"] = itemsize() == 4 ? "<f4" : "<f8";
    d["data"] = py::make_tuple(pointer(), false);
    d["version"] = 3;
    d["strides"] = py::none();
    d["stream"] = py::none();  // forward has finished writing it
    return d;
  }

  // A "dltensor" capsule over this array's memory; the capsule keeps the memory alive.
  py::capsule dlpack() const {
    struct Context {
      Variant array;
      std::vector<int64_t> shape;
      fastlstm::dlpack::ManagedTensor managed;
    };
    auto* context = new Context{array_, shape(), {}};
    auto& t = context->managed.dl_tensor;
    t.data = reinterpret_cast<void*>(pointer());
    t.device = {fastlstm::dlpack::kCUDA, device()};
    t.ndim = static_cast<int32_t>(context->shape.size());
    t.dtype = {fastlstm::dlpack::kFloat, static_cast<uint8_t>(itemsize() * 8), 1};
    t.shape = context->shape.data();
    t.strides = nullptr;
    t.byte_offset = 0;
    context->managed.manager_ctx = context;
    context->managed.deleter = [](fastlstm::dlpack::ManagedTensor* self) {
      delete static_cast<Context*>(self->manager_ctx);
    };
    PyObject* capsule = PyCapsule_New(&context->managed, "dltensor", [](PyObject* object) {
      // Unconsumed (still named "dltensor"): the capsule owns the tensor. Consumed: the consumer
      // does. PyCapsule_IsValid sets no error, so an exception in flight (this may run while one
      // unwinds) is left alone.
      if (!PyCapsule_IsValid(object, "dltensor")) return;
      auto* managed = static_cast<fastlstm::dlpack::ManagedTensor*>(PyCapsule_GetPointer(object, "dltensor"));
      if (managed && managed->deleter) managed->deleter(managed);
    });
    if (!capsule) {
      delete context;
      throw py::error_already_set();
    }
    return py::reinterpret_steal<py::capsule>(capsule);
  }

 private:
  Variant array_;
};

std::string device_string(int device) { return "cuda:" + std::to_string(device); }

template <typename T>
cuda::Operand<T> to_operand(py::handle object, const char* name, int model_device) {
  if (py::isinstance<DeviceTensor>(object)) {
    const auto& tensor = object.cast<const DeviceTensor&>();
    if (tensor.device() != model_device && tensor.numel() > 0) {
      throw fastlstm::InvalidArgument(std::string(name) + ": expected an array on " + device_string(model_device) +
                                      " (the model's device), got one on " +
                                      (tensor.device() < 0 ? std::string("the host") : device_string(tensor.device())));
    }
    return tensor.operand<T>(name);
  }
  auto array = py::cast<py::array>(object);
  if (!py::isinstance<py::array_t<T>>(array)) {
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(array.dtype())));
  }
  if (!(array.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": must be C-contiguous");
  if (array.ndim() > 3) throw py::value_error(std::string(name) + ": at most 3 dimensions are supported");
  cuda::Operand<T> op;
  op.memory = cuda::Memory::host;
  op.view.data = static_cast<const T*>(array.data());
  op.view.rank = static_cast<int>(array.ndim());
  int64_t stride = 1;
  for (int d = op.view.rank - 1; d >= 0; --d) {
    op.view.shape[static_cast<size_t>(d)] = array.shape(d);
    op.view.strides[static_cast<size_t>(d)] = stride;
    stride *= array.shape(d);
  }
  return op;
}

template <typename T>
void bind_engine(py::module_& m, const char* name) {
  using Engine = cuda::CudaLstm<T>;
  py::class_<Engine>(m, name)
      .def(py::init([](const py::dict& config, int device, bool allow_tf32, bool use_graphs) {
             const fastlstm::LstmConfig lstm_config = fastlstm::python::config_from_dict(config);
             cuda::CudaOptions options;
             options.device = device;
             options.allow_tf32 = allow_tf32;
             options.use_graphs = use_graphs;
             py::gil_scoped_release release;
             return std::make_unique<Engine>(lstm_config, options);
           }),
           py::arg("config"), py::arg("device"), py::arg("allow_tf32"), py::arg("use_graphs"))
      .def_property_readonly("stream_handle", &Engine::stream_handle)
      .def_property_readonly("graph_launches", &Engine::graph_launches)
      .def_property_readonly("device", [](const Engine& e) { return e.options().device; })
      .def_property_readonly("allow_tf32", [](const Engine& e) { return e.options().allow_tf32; })
      .def("set_weights",
           [](Engine& engine, const std::vector<std::pair<std::string, py::array_t<T, py::array::c_style>>>& values) {
             fastlstm::LstmWeights<T> weights(engine.config());
             for (const auto& [key, array] : values) {
               auto* parameter = weights.find(key);
               if (!parameter) throw py::key_error(key);
               if (static_cast<int64_t>(array.size()) != parameter->spec.numel()) {
                 throw py::value_error(key + ": wrong number of elements");
               }
               std::copy(array.data(), array.data() + array.size(), parameter->values.begin());
             }
             py::gil_scoped_release release;
             engine.set_weights(weights);
           })
      .def(
          "forward",
          [](Engine& engine, py::handle input, py::handle h_0, py::handle c_0,
             std::optional<std::vector<int64_t>> batch_sizes, std::optional<std::vector<int64_t>> sorted_indices,
             uintptr_t producer_stream, bool to_host) -> py::tuple {
            const int device = engine.options().device;
            cuda::CudaRequest<T> request;
            request.input = to_operand<T>(input, "input", device);
            std::optional<cuda::Operand<T>> h, c;
            if (!h_0.is_none()) h = to_operand<T>(h_0, "h_0", device);
            if (!c_0.is_none()) c = to_operand<T>(c_0, "c_0", device);
            request.h_0 = h ? &*h : nullptr;
            request.c_0 = c ? &*c : nullptr;
            request.batch_sizes = batch_sizes ? &*batch_sizes : nullptr;
            request.sorted_indices = sorted_indices ? &*sorted_indices : nullptr;
            request.producer_stream = producer_stream;

            const auto& config = engine.config();
            const int64_t D = config.num_directions(), states = D * config.num_layers;
            const auto& x = request.input.view;
            const int64_t batch = batch_sizes ? (batch_sizes->empty() ? 0 : (*batch_sizes)[0])
                                  : x.rank == 3 ? (config.batch_first ? x.size(0) : x.size(1))
                                                : 0;
            cuda::CudaResult<T> result;
            result.to_host = to_host;
            py::array_t<T> output, h_n, c_n;
            if (to_host) {
              std::vector<int64_t> shape = batch_sizes ? std::vector<int64_t>{x.size(0), D * config.output_size()}
                                                       : std::vector<int64_t>{x.size(0), x.size(1), D * config.output_size()};
              if (x.rank != (batch_sizes ? 2 : 3)) shape = {0};  // forward rejects it before writing
              output = py::array_t<T>(shape);
              h_n = py::array_t<T>(std::vector<int64_t>{states, batch, config.output_size()});
              c_n = py::array_t<T>(std::vector<int64_t>{states, batch, config.hidden_size});
              result.host_output = output.mutable_data();
              result.host_h_n = h_n.mutable_data();
              result.host_c_n = c_n.mutable_data();
            }
            {
              py::gil_scoped_release release;
              engine.forward(request, result);
            }
            if (to_host) return py::make_tuple(output, h_n, c_n);
            return py::make_tuple(PyDeviceArray(std::move(result.output)), PyDeviceArray(std::move(result.h_n)),
                                  PyDeviceArray(std::move(result.c_n)));
          },
          py::arg("input"), py::arg("h_0"), py::arg("c_0"), py::arg("batch_sizes"), py::arg("sorted_indices"),
          py::arg("producer_stream"), py::arg("to_host"));
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastlstm's CUDA backend (cuBLAS); imported on first use of a GPU.";
  // Module-local translators: global ones would take over fastlstm._core's (FileError is an Error
  // too). Registered base first: pybind11 tries the translator registered last first.
  py::register_local_exception<fastlstm::Error>(m, "CudaError", PyExc_RuntimeError);
  py::register_local_exception<fastlstm::InvalidArgument>(m, "InvalidArgument", PyExc_ValueError);

  m.def("device_count", []() {
    std::string reason;
    const int count = cuda::device_count(&reason);
    return py::make_tuple(count, reason);
  }, "(number of usable CUDA devices, why none when 0)");
  m.def("device_name", &cuda::device_name, py::arg("device"));

  py::class_<DeviceTensor>(m, "DeviceTensor")
      .def(py::init([](uintptr_t pointer, std::vector<int64_t> shape, std::vector<int64_t> strides, int itemsize,
                       py::object owner) {
             return std::make_unique<DeviceTensor>(pointer, std::move(shape), std::move(strides), itemsize,
                                                   std::move(owner));
           }),
           py::arg("pointer"), py::arg("shape"), py::arg("strides"), py::arg("itemsize"), py::arg("owner"))
      .def_static("from_dlpack", &DeviceTensor::from_dlpack, py::arg("capsule"))
      .def_property_readonly("shape", &DeviceTensor::shape)
      .def_property_readonly("strides", &DeviceTensor::strides)
      .def_property_readonly("ndim", &DeviceTensor::ndim)
      .def_property_readonly("itemsize", &DeviceTensor::itemsize)
      .def_property_readonly("device", &DeviceTensor::device)
      .def_property_readonly("pointer", &DeviceTensor::pointer)
      .def("unsqueeze", &DeviceTensor::unsqueeze, py::arg("axis"), py::keep_alive<0, 1>());

  py::class_<PyDeviceArray>(m, "DeviceArray",
                            "A contiguous array in GPU memory returned by a CUDA model. Hand it to "
                            "torch.from_dlpack, cupy.from_dlpack or anything that reads DLPack or "
                            "__cuda_array_interface__ (no copy), or copy it to the host with .numpy().")
      .def_property_readonly("shape", [](const PyDeviceArray& a) { return py::tuple(py::cast(a.shape())); })
      .def_property_readonly("ndim", [](const PyDeviceArray& a) { return a.shape().size(); })
      .def_property_readonly("size", &PyDeviceArray::size)
      .def_property_readonly("nbytes", [](const PyDeviceArray& a) { return a.size() * a.itemsize(); })
      .def_property_readonly("dtype", &PyDeviceArray::dtype)
      .def_property_readonly("device", [](const PyDeviceArray& a) { return device_string(a.device()); })
      .def("__len__", [](const PyDeviceArray& a) {
        if (a.shape().empty()) throw py::type_error("len() of a 0-d array");
        return a.shape()[0];
      })
      .def("reshape", &PyDeviceArray::reshape, py::arg("shape"), "A view of the same memory under another shape.")
      .def("numpy", &PyDeviceArray::numpy, "A copy in host memory, as a NumPy array.")
      .def_property_readonly("__cuda_array_interface__", &PyDeviceArray::cuda_array_interface)
      .def("__dlpack__", [](const PyDeviceArray& a, py::args, py::kwargs) { return a.dlpack(); },
           "A DLPack capsule over the array (the data is complete: no stream to wait on).")
      .def("__dlpack_device__",
           [](const PyDeviceArray& a) { return py::make_tuple(static_cast<int>(fastlstm::dlpack::kCUDA), a.device()); })
      .def("__repr__", [](const PyDeviceArray& a) {
        std::string s = "DeviceArray(shape=(";
        const auto shape = a.shape();
        for (size_t d = 0; d < shape.size(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
        if (shape.size() == 1) s += ",";
        return s + "), dtype=" + std::string(py::str(a.dtype())) + ", device='" + device_string(a.device()) + "')";
      });

  bind_engine<float>(m, "LstmFloat32");
  bind_engine<double>(m, "LstmFloat64");
}
