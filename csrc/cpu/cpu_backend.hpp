#pragma once
// The CPU backend: Eigen's GEMM kernels driven by fastlstm's own thread pool. This header and
// layer_run.hpp are parts of cpu_backend.cpp's translation unit, included there only: what they
// define keeps internal linkage, so that each instruction set's core has its own.
//
// Per layer, a chunk of time steps at a time (forward chunks from the start, reverse ones from
// the end):
//  1. GEMMs compute the chunk's input projections, gates = x W_ih^T + (b_ih + b_hh); each thread
//     computes exactly the gate columns its recurrence reads, so no barrier separates the phases
//     and the gate buffer stays O(N * 4H).
//  2. The recurrence. Gate rows are pre-permuted so that each block of kBlock hidden units holds
//     its four gates side by side; a thread owns whole blocks, adds h_{t-1} W_hh^T to a block's
//     gate columns and applies its cell update at once; a thread done with its own blocks takes
//     unstarted ones of slower threads (large layers). One barrier per step (two with proj_size:
//     the projection needs every unit of the step). Both directions advance in the same step;
//     when each direction has a thread of its own, the threads run them without barriers.
// h_{t-1} is read back from the output written at the previous step, so a row whose sequence has
// ended (packed input) simply stops being updated and keeps its final state.
// A bidirectional stack runs layer by layer (layer k's reverse direction needs all of layer
// k - 1); a unidirectional one chunk by chunk through all layers, so that only a chunk of
// activations lies between layers.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include <Eigen/Core>

#include "../backend.hpp"
#include "fastlstm/error.hpp"
#include "cell_update.hpp"
#include "gate_rows.hpp"
#include "packed_gemm.hpp"
#include "thread_pool.hpp"
#include "work_split.hpp"

namespace fastlstm::cpu {
namespace {

using Eigen::Index;

// Balancing pays where a thread's recurrent weights stream from L3 anyway; below half the core's
// L2 they stay there, and running another core's blocks would evict them (and the claims would
// cost more than they save).
int64_t balance_min_bytes() { return static_cast<int64_t>(Eigen::l2CacheSize()) / 2; }
// Input projections are computed a chunk of steps at a time, about this many rows: enough for an
// efficient GEMM, few enough that the gate buffer is O(N * 4H) and stays in cache.
constexpr int64_t kChunkRows = 512;
// Batch-major input (batch_first) is projected one sequence at a time: enough steps per GEMM.
constexpr int64_t kBatchMajorChunkSteps = 32;
// int8 models quantize the model's input (what layer 0's W_ih multiplies) to `input_bits`, 16
// unless the options say 8: features with outliers (a few values far beyond the rest) leave 8
// bits too coarse for the rest, and most of an int8 model's error came from there. The states
// that every other matrix multiplies (h, in (-1, 1)) take 8, which the fastest int8 products take.
int activation_bits(int64_t layer, ParameterKind kind, int input_bits) {
  return layer == 0 && kind == ParameterKind::weight_ih ? input_bits : 8;
}
// Activation rows the cache blocking of the packed weights is tuned for.
constexpr Eigen::Index kTypicalRows = 1024;
constexpr Eigen::Index kTypicalBatch = 64;

template <typename T>
struct LayerRun;


template <typename T>
class CpuBackend final : public Backend<T> {
 public:
  CpuBackend(const LstmConfig& config, const LstmOptions& options)
      : config_(config),
        weight_format_(options.weight_format),
        input_bits_(options.int8_input_bits),
        pool_(options.num_threads),
        split_(config, pool_.size()),
        claims_(static_cast<size_t>(pool_.size()) * 2) {}

  int num_threads() const override { return pool_.size(); }

  void prepare(const LstmWeights<T>& weights) override {
    const int64_t D = config_.num_directions(), H = config_.hidden_size, P = config_.output_size();
    std::vector<PreparedLayer> layers(static_cast<size_t>(config_.num_layers));
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
      PreparedLayer& prepared = layers[static_cast<size_t>(layer)];
      prepared.bias.assign(static_cast<size_t>(D * 4 * H), T(0));
      if (config_.peephole) {
        prepared.peepholes.resize(static_cast<size_t>(D * 3 * H));
        for (int64_t dir = 0; dir < D; ++dir) {
          const auto& values = weights.find(layer, dir, ParameterKind::peephole)->values;
          std::copy(values.begin(), values.end(), prepared.peepholes.begin() + dir * 3 * H);
        }
      }
      // Gate-interleaved copies of both directions' matrices: their values, or an int8 model's
      // codes and row scales.
      GateRows<T> ih(D * 4 * H, config_.layer_input_size(layer));
      GateRows<T> hh[2] = {GateRows<T>(4 * H, P), GateRows<T>(4 * H, P)};
      for (int64_t dir = 0; dir < D; ++dir) {
        const auto* b_ih = weights.find(layer, dir, ParameterKind::bias_ih);
        const auto* b_hh = weights.find(layer, dir, ParameterKind::bias_hh);
        for (int64_t gate = 0; gate < 4; ++gate) {
          for (int64_t unit = 0; unit < H; ++unit) {
            const int64_t src = gate * H + unit, dst = split_.blocks[dir].row(gate, unit);
            ih.copy_row(*weights.find(layer, dir, ParameterKind::weight_ih), src, dir * 4 * H + dst);
            hh[dir].copy_row(*weights.find(layer, dir, ParameterKind::weight_hh), src, dst);
            if (b_ih) {
              prepared.bias[static_cast<size_t>(dir * 4 * H + dst)] =
                  b_ih->values[static_cast<size_t>(src)] + b_hh->values[static_cast<size_t>(src)];
            }
          }
        }
      }
      prepared.threads.resize(split_.shares.size());
      for (size_t thread = 0; thread < split_.shares.size(); ++thread) {
        const ThreadShare& share = split_.shares[thread];
        ThreadWeights& thread_weights = prepared.threads[thread];
        for (int64_t dir = 0; dir < D; ++dir) {
          const auto [lo, hi] = share.direction_columns(dir, H);
          ih.pack(thread_weights.w_ih[dir], lo, std::max<int64_t>(hi - lo, 0), kTypicalRows, weight_format_,
                  activation_bits(layer, ParameterKind::weight_ih, input_bits_));
          const auto [b0, b1] = share.blocks[dir];
          const int64_t row0 = 4 * split_.blocks[dir].start(b0), row1 = 4 * split_.blocks[dir].start(b1);
          hh[dir].pack(thread_weights.w_hh[dir], row0, std::max<int64_t>(row1 - row0, 0), kTypicalBatch, weight_format_,
                       activation_bits(layer, ParameterKind::weight_hh, input_bits_));
          if (const auto* w_hr = weights.find(layer, dir, ParameterKind::weight_hr)) {
            const auto [q0, q1] = share.outputs[dir];
            GateRows<T>::pack_rows(*w_hr, thread_weights.w_hr[dir], q0, q1 - q0, kTypicalBatch, weight_format_,
                                activation_bits(layer, ParameterKind::weight_hr, input_bits_));
          }
        }
      }
    }
    for (PreparedLayer& prepared : layers) prepared.balanced = can_balance(prepared);
    layers_ = std::move(layers);
  }

  void forward(const ForwardRequest<T>& request) override {
    const StepSizes& batch_sizes = request.batch_sizes;
    const int64_t steps = batch_sizes.steps;
    const int64_t batch = batch_sizes.batch;
    if (steps == 0 || batch == 0) return;

    const int64_t D = config_.num_directions(), H = config_.hidden_size, P = config_.output_size();
    const int64_t L = config_.num_layers;
    const int64_t* step_starts = request.step_starts;
    const int64_t rows = step_starts ? step_starts[steps - 1] + batch_sizes[steps - 1] : steps * batch;
    ++forward_count_;

    initial_hidden_.resize(static_cast<size_t>(L * D * batch * P));
    projected_input_.resize(static_cast<size_t>(D * batch * H));
    last_step_.resize(static_cast<size_t>(batch));
    for (int64_t n = 0; n < batch; ++n) {
      // Forward direction's final step for row n: the last step in which it is active.
      int64_t length = 0;
      while (length < steps && batch_sizes[length] > n) ++length;
      last_step_[static_cast<size_t>(n)] = length - 1;
    }
    reserve_scratch(rows, batch);

    const T* input = request.input;
    RowLayout input_rows = request.input_rows;
    if (request.input_feature_stride != 1) {
      // The GEMM kernels need unit stride along features: gather once into a compact copy.
      input_copy_.resize(static_cast<size_t>(rows * config_.input_size));
      const RowLayout compact = compact_layout(request, config_.input_size);
      for (int64_t t = 0; t < steps; ++t) {
        for (int64_t n = 0; n < batch_sizes[t]; ++n) {
          const T* src = input + input_rows.offset(t) + n * input_rows.row_stride;
          T* dst = input_copy_.data() + compact.offset(t) + n * compact.row_stride;
          for (int64_t k = 0; k < config_.input_size; ++k) dst[k] = src[k * request.input_feature_stride];
        }
      }
      input = input_copy_.data();
      input_rows = compact;
    }

    if (D == 1 && !config_.reverse && L > 1) {  // chunks run from the first step
      forward_chunk_by_chunk(request, rows, input, input_rows);
    } else {
      forward_layer_by_layer(request, rows, input, input_rows);
    }
    if (request.sorted_indices) to_caller_order(request);
  }

 private:
  friend struct LayerRun<T>;

  // h_n and c_n, computed in the packed order, put in the caller's: its row sorted_indices[n] is
  // packed row n.
  void to_caller_order(const ForwardRequest<T>& request) {
    const int64_t batch = request.batch_sizes.batch, states = config_.num_directions() * config_.num_layers;
    const std::pair<T*, int64_t> finals[] = {{request.h_n, config_.output_size()}, {request.c_n, config_.hidden_size}};
    for (const auto& [data, width] : finals) {
      for (int64_t index = 0; index < states; ++index) {
        T* rows = data + index * batch * width;
        reordered_.assign(rows, rows + batch * width);
        for (int64_t n = 0; n < batch; ++n) {
          std::copy_n(reordered_.data() + n * width, width, rows + request.sorted_indices[n] * width);
        }
      }
    }
  }

  // Between layers the activations are compact: time-major, or packed like the input.
  static RowLayout compact_layout(const ForwardRequest<T>& request, int64_t width) {
    RowLayout layout;
    layout.row_stride = width;
    layout.time_stride = request.batch_sizes.batch * width;
    layout.step_starts = request.step_starts;
    return layout;
  }

  // Each thread's packing buffer for the activations of its products.
  void reserve_scratch(int64_t rows, int64_t batch) {
    scratch_.resize(split_.shares.size());
    for (size_t thread = 0; thread < split_.shares.size(); ++thread) {
      int64_t size = 0;
      for (const PreparedLayer& layer : layers_) {
        const ThreadWeights& thread_weights = layer.threads[thread];
        // A step packs h_{t-1} in two parts: rows continuing from the step before, rows starting.
        size = std::max({size, thread_weights.w_ih[0].workspace_size(rows), thread_weights.w_ih[1].workspace_size(rows),
                         thread_weights.w_hh[0].packed_activations_size(batch) + 64,
                         thread_weights.w_hh[1].packed_activations_size(batch) + 64,
                         thread_weights.w_hr[0].workspace_size(batch), thread_weights.w_hr[1].workspace_size(batch)});
      }
      scratch_[thread].resize(static_cast<size_t>(size));
    }
  }

  // Each layer over the whole sequence, then the next: what a bidirectional stack needs (the
  // reverse direction of layer k starts from the end of layer k - 1's output). Layer k writes
  // buffer k % 2 and reads buffer (k - 1) % 2; the last layer writes the output.
  void forward_layer_by_layer(const ForwardRequest<T>& request, int64_t rows, const T* input, RowLayout input_rows) {
    const int64_t steps = request.batch_sizes.steps;
    const int64_t width = config_.num_directions() * config_.output_size();
    layer_outputs_.resize(2);
    for (size_t buffer = 0; buffer < 2; ++buffer) {
      const bool used = static_cast<int64_t>(buffer) < config_.num_layers - 1;
      layer_outputs_[buffer].resize(used ? static_cast<size_t>(rows * width) : 0);
      if (!used) layer_outputs_[buffer].shrink_to_fit();
    }
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
      const bool last = layer + 1 == config_.num_layers;
      T* output = last ? request.output : layer_outputs_[static_cast<size_t>(layer % 2)].data();
      const RowLayout output_rows = last ? request.output_rows : compact_layout(request, width);
      LayerRun<T> run{*this, layer, request, request.batch_sizes, steps, request.batch_sizes.batch, rows,
                   input, input_rows, output, output_rows, 0, steps};
      run.execute();
      input = output;
      input_rows = output_rows;
    }
  }

  // A unidirectional stack runs a chunk of steps through every layer before the next chunk, so
  // that between layers only a chunk of activations is kept (plus the step before it, which the
  // next chunk's recurrence reads): memory O(N * H) per layer instead of O(L * N * H), and
  // layer k + 1 reads layer k's output while it is still in cache.
  void forward_chunk_by_chunk(const ForwardRequest<T>& request, int64_t rows, const T* input,
                              RowLayout input_rows) {
    const StepSizes& batch_sizes = request.batch_sizes;
    const int64_t steps = batch_sizes.steps, batch = batch_sizes.batch, P = config_.output_size();
    const int64_t num_buffers = config_.num_layers - 1;
    const int64_t chunk = LayerRun<T>::chunk_steps(input_rows, batch, steps, steps);
    layer_outputs_.resize(static_cast<size_t>(num_buffers));
    for (auto& buffer : layer_outputs_) buffer.resize(static_cast<size_t>((chunk + 1) * batch * P));
    buffer_rows_.assign(static_cast<size_t>(num_buffers), compact_layout(request, P));  // no allocation after the first call

    for (int64_t c0 = 0; c0 < steps; c0 += chunk) {
      const int64_t c1 = std::min(steps, c0 + chunk);
      const T* layer_input = input;
      RowLayout layer_input_rows = input_rows;
      for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
        const bool last = layer + 1 == config_.num_layers;
        T* output = request.output;
        RowLayout output_rows = request.output_rows;
        if (!last) {
          AlignedVector<T>& buffer = layer_outputs_[static_cast<size_t>(layer)];
          RowLayout& rows_of = buffer_rows_[static_cast<size_t>(layer)];
          if (c0 > 0) {
            // The buffer now starts at step c0 - 1: the previous chunk's last step moves to the front.
            const T* previous = buffer.data() + rows_of.offset(c0 - 1);
            std::copy(previous, previous + batch_sizes[c0 - 1] * P, buffer.data());
            rows_of.origin = 0;
            rows_of.origin = rows_of.offset(c0 - 1);
          }
          output = buffer.data();
          output_rows = rows_of;
        }
        LayerRun<T> run{*this, layer, request, batch_sizes, steps, batch, rows,
                     layer_input, layer_input_rows, output, output_rows, c0, c1};
        run.execute();
        layer_input = output;
        layer_input_rows = output_rows;
      }
    }
  }

  struct ThreadWeights {
    PackedWeights<T> w_ih[2];  // per direction, the rows of [col0, col1) of (D * 4H, I) in it
    PackedWeights<T> w_hh[2];  // the rows of the thread's gate blocks, per direction
    PackedWeights<T> w_hr[2];  // the thread's output rows of weight_hr, per direction
  };
  struct PreparedLayer {
    AlignedVector<T> bias;  // (D * 4H): b_ih + b_hh, interleaved
    AlignedVector<T> peepholes;  // (D, 3, H): p_i, p_f, p_o by unit; empty without peepholes
    std::vector<ThreadWeights> threads;
    bool balanced = false;  // threads take each other's unstarted blocks at every step
  };

  // Whether the threads of a layer can share out each step's blocks: every thread holds gate
  // blocks of every direction, all packed with one depth blocking (so one packing of h_{t-1}
  // serves all), large enough to stream from L3.
  bool can_balance(const PreparedLayer& layer) const {
    if (!split_.step_barriers || split_.shares.size() < 2) return false;
    for (int64_t dir = 0; dir < config_.num_directions(); ++dir) {
      const PackedWeights<T>& first = layer.threads[0].w_hh[dir];
      for (const ThreadWeights& thread_weights : layer.threads) {
        const PackedWeights<T>& w_hh = thread_weights.w_hh[dir];
        if (w_hh.rows() == 0 || w_hh.depth_block() != first.depth_block()) return false;
        if (w_hh.rows() * w_hh.depth() * static_cast<int64_t>(sizeof(T)) < balance_min_bytes()) return false;
      }
    }
    return true;
  }

  static_assert((4 * kBlock) % PackedWeights<T>::row_alignment() == 0,
                "a gate block must start at a whole row panel of the micro-kernel");

  // Each thread's count of blocks claimed in the current run, on a cache line of its own.
  struct alignas(64) ClaimCounter {
    std::atomic<int64_t> claimed{0};
  };


  LstmConfig config_;
  WeightFormat weight_format_;  // how the weight matrices are held (their values are the engine's)
  int input_bits_;              // int8: the bits of the model's input (activation_bits)
  ThreadPool pool_;
  WorkSplit split_;
  std::vector<ClaimCounter> claims_;  // (thread, direction), for balanced layers
  std::vector<PreparedLayer> layers_;
  std::vector<AlignedVector<T>> scratch_;  // per thread
  // Workspace, grown on demand and reused across calls.
  AlignedVector<T> gates_, initial_hidden_, projected_input_, input_copy_, reordered_;
  std::vector<AlignedVector<T>> layer_outputs_;  // between layers
  std::vector<RowLayout> buffer_rows_;            // chunk by chunk: where each layer's buffer starts
  std::vector<int64_t> last_step_;
  int64_t forward_count_ = 0;  // alternates the blocks' order between one-step calls too
};

}  // namespace
}  // namespace fastlstm::cpu
