#pragma once
// The CUDA graphs of a model's time loop, one per input shape: a shape's first run is direct (it
// also loads every kernel it uses: lazily loaded modules must not load during a capture), its
// second captures the loop, later ones replay it. Included by cuda_backend.cu only: what it
// defines keeps internal linkage.
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "fastlstm/error.hpp"

namespace fastlstm::cuda {
namespace {

class GraphPlans {
 public:
  GraphPlans() = default;
  GraphPlans(const GraphPlans&) = delete;
  GraphPlans& operator=(const GraphPlans&) = delete;
  ~GraphPlans() { drop(); }

  // Runs `enqueue`, the time loop of the shape `key`, on `stream`: directly, or as its graph.
  // Returns whether a graph replayed it.
  bool run(const std::vector<int64_t>& key, cudaStream_t stream, bool use_graphs, const std::function<void()>& enqueue) {
    if (plans_.size() >= kMaxPlans && !plans_.count(key)) {
      drop();
      plans_.clear();
    }
    Plan& plan = plans_[key];
    if (!use_graphs || plan.capture_failed || plan.runs++ == 0) {
      enqueue();
      return false;
    }
    if (!plan.graph) plan.graph = capture(stream, enqueue);
    if (!plan.graph) {
      plan.capture_failed = true;
      enqueue();
      return false;
    }
    check(cudaGraphLaunch(plan.graph, stream), "cudaGraphLaunch");
    return true;
  }

  // Forgets every graph: the buffers they were captured over moved.
  void drop() noexcept {
    for (auto& [key, plan] : plans_) {
      if (plan.graph) (void)cudaGraphExecDestroy(plan.graph);
      plan.graph = nullptr;
    }
  }

 private:
  static constexpr size_t kMaxPlans = 64;  // shapes with graphs; more: start over

  struct Plan {
    int runs = 0;
    cudaGraphExec_t graph = nullptr;
    bool capture_failed = false;  // then this shape always runs directly
  };

  // The loop as an executable graph; nullptr when capturing fails (the shape then runs directly).
  static cudaGraphExec_t capture(cudaStream_t stream, const std::function<void()>& enqueue) {
    if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    cudaGraph_t graph = nullptr;
    bool enqueued = true;
    try {
      enqueue();
    } catch (const Error&) {
      enqueued = false;
    }
    const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
    cudaGraphExec_t exec = nullptr;
    if (enqueued && ended == cudaSuccess && graph && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
      exec = nullptr;
    }
    if (graph) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    return exec;
  }

  std::map<std::vector<int64_t>, Plan> plans_;
};

}  // namespace
}  // namespace fastlstm::cuda
