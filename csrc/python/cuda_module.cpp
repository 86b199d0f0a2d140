// The CUDA extension module (fastlstm._cuda), built with FASTLSTM_CUDA=ON and imported only when
// a model is put on a GPU: the engine (engine_binding.hpp) over a core that carries the CUDA
// backend, its operands NumPy arrays or GPU arrays handed over through __cuda_array_interface__ or
// DLPack, its results on the GPU DeviceArrays that export both protocols. It converts and nothing
// else; the torch-compatible behaviour lives in python/fastlstm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "config_conversion.hpp"
#include "dlpack_abi.hpp"
#include "engine_binding.hpp"
#include "fastlstm/cuda.hpp"
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
    const fastlstm::Device device = cuda::pointer_device(reinterpret_cast<const void*>(pointer_));
    device_ = device.is_cpu() ? -1 : device.index;
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

  // The engine's view: on its device (host memory when -1), at most three dimensions.
  template <typename T>
  fastlstm::TensorView<const T> view(const char* name) const {
    if (itemsize_ != static_cast<int>(sizeof(T))) {
      throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                           " (the model's dtype; fastlstm does not cast silently)" +
                           (dtype_error_.empty() ? "" : ", got " + dtype_error_));
    }
    if (shape_.size() > 3) throw py::value_error(std::string(name) + ": at most 3 dimensions are supported");
    fastlstm::TensorView<const T> view;
    view.data = reinterpret_cast<const T*>(pointer_);
    view.device = device_ < 0 ? fastlstm::Device::cpu() : fastlstm::Device::cuda(device_);
    view.rank = static_cast<int>(shape_.size());
    for (size_t d = 0; d < shape_.size(); ++d) {
      if (strides_[d] < 0 && shape_[d] > 1) {
        throw py::value_error(std::string(name) + ": negative strides are not supported");
      }
      view.shape[d] = shape_[d];
      view.strides[d] = shape_[d] > 1 ? strides_[d] : 0;
    }
    return view;
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

// What a model returns on the GPU: a contiguous device array exporting DLPack and
// __cuda_array_interface__, so that torch.from_dlpack / cupy.from_dlpack take it without a copy.
// Views (reshape) share the Tensor that owns the memory.
class PyDeviceArray {
 public:
  using Variant = std::variant<std::shared_ptr<fastlstm::Tensor<float>>, std::shared_ptr<fastlstm::Tensor<double>>>;
  PyDeviceArray(Variant tensor, std::vector<int64_t> shape) : tensor_(std::move(tensor)), shape_(std::move(shape)) {}
  template <typename T>
  explicit PyDeviceArray(fastlstm::Tensor<T>&& tensor)
      : PyDeviceArray(Variant(std::make_shared<fastlstm::Tensor<T>>(std::move(tensor))), {}) {
    shape_ = std::visit([](const auto& t) { return t->shape(); }, tensor_);
  }

  const std::vector<int64_t>& shape() const { return shape_; }
  int itemsize() const { return tensor_.index() == 0 ? 4 : 8; }
  int device() const {
    return std::visit([](const auto& t) { return t->device().index; }, tensor_);
  }
  uintptr_t pointer() const {
    return std::visit([](const auto& t) { return reinterpret_cast<uintptr_t>(t->data()); }, tensor_);
  }
  int64_t size() const {
    int64_t n = 1;
    for (int64_t extent : shape_) n *= extent;
    return n;
  }
  PyDeviceArray reshape(const std::vector<int64_t>& shape) const {
    PyDeviceArray view(tensor_, shape);
    if (view.size() != size()) throw py::value_error("reshape: the new shape has a different number of elements");
    return view;
  }
  py::dtype dtype() const { return tensor_.index() == 0 ? py::dtype::of<float>() : py::dtype::of<double>(); }

  py::array numpy() const {
    return std::visit(
        [this](const auto& t) -> py::array {
          using T = std::remove_reference_t<decltype(*t->data())>;
          fastlstm::Tensor<T> host = [&] {
            py::gil_scoped_release release;
            return cuda::copy_to<T>(t->view(), fastlstm::Device::cpu());
          }();
          return fastlstm::python::to_numpy(std::move(host), shape_);
        },
        tensor_);
  }

  py::dict cuda_array_interface() const {
    py::dict d;
    d["shape"] = py::tuple(py::cast(shape()));
    d["typestr"] = itemsize() == 4 ? "<f4" : "<f8";
    d["data"] = py::make_tuple(pointer(), false);
    d["version"] = 3;
    d["strides"] = py::none();
    d["stream"] = py::none();  // the model has finished writing it
    return d;
  }

  // A "dltensor" capsule over this array's memory; the capsule keeps the memory alive.
  py::capsule dlpack() const {
    struct Context {
      Variant tensor;
      std::vector<int64_t> shape;
      fastlstm::dlpack::ManagedTensor managed;
    };
    auto* context = new Context{tensor_, shape(), {}};
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
  Variant tensor_;
  std::vector<int64_t> shape_;
};

std::string device_string(int device) { return "cuda:" + std::to_string(device); }

// NumPy arrays (host memory) and DeviceTensors in; host results as NumPy arrays, results on the
// GPU as DeviceArrays.
struct CudaConversion {
  template <typename T>
  static fastlstm::TensorView<const T> view(py::handle object, const char* name) {
    if (py::isinstance<DeviceTensor>(object)) return object.cast<const DeviceTensor&>().view<T>(name);
    return fastlstm::python::HostConversion::view<T>(object, name);
  }
  template <typename T>
  static py::object result(fastlstm::Tensor<T>&& tensor, const std::vector<int64_t>& shape = {}) {
    if (tensor.device().is_cpu()) return fastlstm::python::to_numpy(std::move(tensor), shape);
    PyDeviceArray array(std::move(tensor));
    return py::cast(shape.empty() ? array : array.reshape(shape));
  }
};

template <typename T>
void bind_cuda_engine(py::module_& m, const char* name) {
  using Engine = fastlstm::Lstm<T>;
  // Module-local: the CPU module binds the same C++ class.
  fastlstm::python::bind_engine<T, CudaConversion>(m, name, py::module_local())
      .def(py::init([](const py::dict& config, int device, int num_threads, bool allow_tf32, bool cuda_graphs,
                       const std::string& weight_format) {
             fastlstm::LstmOptions options;
             options.device = fastlstm::Device::cuda(device);
             options.num_threads = num_threads;
             options.weight_format = fastlstm::python::weight_format_from(weight_format);
             options.allow_tf32 = allow_tf32;
             options.cuda_graphs = cuda_graphs;
             const fastlstm::LstmConfig lstm_config = fastlstm::python::config_from_dict(config);
             py::gil_scoped_release release;
             return Engine(lstm_config, options);
           }),
           py::arg("config"), py::arg("device"), py::arg("num_threads"), py::arg("allow_tf32"),
           py::arg("cuda_graphs"), py::arg("weight_format") = "native");
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
  m.def("synchronize_stream", [](uintptr_t stream) {
    py::gil_scoped_release release;
    cuda::synchronize_stream(stream);
  }, py::arg("stream"), "Waits for a CUDA stream named as __cuda_array_interface__ names one.");

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

  bind_cuda_engine<float>(m, "LstmFloat32");
  bind_cuda_engine<double>(m, "LstmFloat64");
}
