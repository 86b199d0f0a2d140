#pragma once
// The DLPack exchange structs (the unversioned "dltensor" capsule, DLPack 0.8), declared here from
// the published ABI (https://dmlc.github.io/dlpack/latest/c_api.html) so that the CUDA module can
// read and hand out device arrays without another dependency. Layout and values must match it.
#include <cstdint>

namespace fastlstm::dlpack {

enum DeviceType : int32_t { kCPU = 1, kCUDA = 2, kCUDAHost = 3, kCUDAManaged = 13 };
enum TypeCode : uint8_t { kInt = 0, kUInt = 1, kFloat = 2 };

struct Device {
  int32_t device_type;
  int32_t device_id;
};

struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; nullptr: row-major contiguous
  uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

}  // namespace fastlstm::dlpack
