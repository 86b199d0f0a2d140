#pragma once
// Where memory lives and a model runs: the host's CPUs, or a CUDA device (in a build with
// FASTLSTM_CUDA=ON; see fastlstm/cuda.hpp).
#include <string>

namespace fastlstm {

enum class DeviceKind { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;  // the CUDA device's ordinal; 0 on the CPU

  static Device cpu() { return {}; }
  static Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  bool is_cpu() const { return kind == DeviceKind::cpu; }

  friend bool operator==(const Device& a, const Device& b) { return a.kind == b.kind && a.index == b.index; }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
  // "cpu" or "cuda:N", as torch spells devices.
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

}  // namespace fastlstm
