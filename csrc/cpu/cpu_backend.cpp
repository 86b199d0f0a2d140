// The CPU backend: Eigen's GEMM kernels driven by fastlstm's own thread pool.
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
#include "packed_gemm.hpp"
#include "thread_pool.hpp"
#include "work_split.hpp"

namespace fastlstm {
namespace cpu {
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
// Activation rows the cache blocking of the packed weights is tuned for.
constexpr Eigen::Index kTypicalRows = 1024;
constexpr Eigen::Index kTypicalBatch = 64;

template <typename T>
class CpuBackend final : public Backend<T> {
 public:
  CpuBackend(const LstmConfig& config, int num_threads)
      : config_(config),
        pool_(num_threads),
        split_(config, pool_.size()),
        claims_(static_cast<size_t>(pool_.size()) * 2) {}

  int num_threads() const override { return pool_.size(); }

  void prepare(const LstmWeights<T>& weights) override {
    const int64_t D = config_.num_directions(), H = config_.hidden_size, P = config_.output_size();
    std::vector<PreparedLayer> layers(static_cast<size_t>(config_.num_layers));
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
      PreparedLayer& prepared = layers[static_cast<size_t>(layer)];
      const int64_t I = config_.layer_input_size(layer);
      // Gate-interleaved copies of both directions' matrices, then each thread's share packed.
      AlignedVector<T> w_ih(static_cast<size_t>(D * 4 * H * I));
      AlignedVector<T> w_hh[2];
      prepared.bias.assign(static_cast<size_t>(D * 4 * H), T(0));
      for (int64_t dir = 0; dir < D; ++dir) {
        const T* src_ih = weights.find(layer, dir, ParameterKind::weight_ih)->values.data();
        const T* src_hh = weights.find(layer, dir, ParameterKind::weight_hh)->values.data();
        const auto* b_ih = weights.find(layer, dir, ParameterKind::bias_ih);
        const auto* b_hh = weights.find(layer, dir, ParameterKind::bias_hh);
        w_hh[dir].resize(static_cast<size_t>(4 * H * P));
        for (int64_t gate = 0; gate < 4; ++gate) {
          for (int64_t unit = 0; unit < H; ++unit) {
            const int64_t src = gate * H + unit;
            const int64_t dst = split_.blocks[dir].row(gate, unit);
            std::copy_n(src_ih + src * I, I, w_ih.data() + (dir * 4 * H + dst) * I);
            std::copy_n(src_hh + src * P, P, w_hh[dir].data() + dst * P);
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
        ThreadWeights& mine = prepared.threads[thread];
        for (int64_t dir = 0; dir < D; ++dir) {
          const auto [lo, hi] = share.direction_columns(dir, H);
          mine.w_ih[dir].pack(w_ih.data() + lo * I, std::max<int64_t>(hi - lo, 0), I, I, kTypicalRows);
          const auto [b0, b1] = share.blocks[dir];
          const int64_t row0 = 4 * split_.blocks[dir].start(b0), row1 = 4 * split_.blocks[dir].start(b1);
          mine.w_hh[dir].pack(w_hh[dir].data() + row0 * P, std::max<int64_t>(row1 - row0, 0), P, P, kTypicalBatch);
          if (const auto* w_hr = weights.find(layer, dir, ParameterKind::weight_hr)) {
            const auto [q0, q1] = share.outputs[dir];
            mine.w_hr[dir].pack(w_hr->values.data() + q0 * H, q1 - q0, H, H, kTypicalBatch);
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

    if (D == 1 && L > 1) {
      forward_chunk_by_chunk(request, rows, input, input_rows);
    } else {
      forward_layer_by_layer(request, rows, input, input_rows);
    }
  }

 private:
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
        const ThreadWeights& mine = layer.threads[thread];
        // A step packs h_{t-1} in two parts: rows continuing from the step before, rows starting.
        size = std::max({size, mine.w_ih[0].workspace_size(rows), mine.w_ih[1].workspace_size(rows),
                         mine.w_hh[0].packed_activations_size(batch) + 64,
                         mine.w_hh[1].packed_activations_size(batch) + 64,
                         mine.w_hr[0].workspace_size(batch), mine.w_hr[1].workspace_size(batch)});
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
      LayerRun run{*this, layer, request, request.batch_sizes, steps, request.batch_sizes.batch, rows,
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
    const int64_t chunk = LayerRun::chunk_steps(input_rows, batch, steps, steps);
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
        LayerRun run{*this, layer, request, batch_sizes, steps, batch, rows,
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
      for (const ThreadWeights& mine : layer.threads) {
        const PackedWeights<T>& w_hh = mine.w_hh[dir];
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

  // One layer of one forward pass.
  struct LayerRun {
    CpuBackend& self;
    int64_t layer;
    const ForwardRequest<T>& request;
    const StepSizes& batch_sizes;
    int64_t steps, batch, rows;
    const T* input;
    RowLayout input_rows;
    T* output;
    RowLayout output_rows;
    int64_t s0, s1;  // the steps this run computes (a chunk of them, or all)

    // How the input's rows map to GEMMs and to the chunk's gate buffer.
    struct ChunkPlan {
      bool packed, time_major, batch_major;

      // Gate rows of steps [t0, t1), contiguous from the start of the buffer, in the input's order.
      RowLayout gate_layout(const LayerRun& run, int64_t t0, int64_t t1) const {
        const int64_t width = run.config().num_directions() * 4 * run.config().hidden_size;
        RowLayout layout;
        layout.row_stride = width;
        if (packed) {
          layout.step_starts = run.input_rows.step_starts;
          layout.origin = layout.step_starts[t0] * width;
        } else if (batch_major) {
          layout.time_stride = width;
          layout.row_stride = (t1 - t0) * width;
          layout.origin = t0 * width;
        } else {
          layout.time_stride = run.batch * width;
          layout.origin = t0 * run.batch * width;
        }
        return layout;
      }
    };

    const LstmConfig& config() const { return self.config_; }
    const PreparedLayer& weights() const { return self.layers_[static_cast<size_t>(layer)]; }

    // How the input's rows are laid out: time-major (and packed) rows project a chunk of steps in
    // one GEMM; batch-major ones (batch_first) one sequence at a time.
    static ChunkPlan plan_for(const RowLayout& input_rows, int64_t batch, int64_t steps) {
      const bool packed = input_rows.step_starts != nullptr;
      const bool time_major = packed || batch == 1 || input_rows.time_stride == batch * input_rows.row_stride;
      const bool batch_major = !time_major && steps > 1 && input_rows.row_stride == steps * input_rows.time_stride;
      return ChunkPlan{packed, time_major, batch_major};
    }

    // Steps per chunk of input projections, at most `span`.
    static int64_t chunk_steps(const RowLayout& input_rows, int64_t batch, int64_t steps, int64_t span) {
      int64_t chunk = std::clamp<int64_t>((kChunkRows + batch - 1) / batch, 1, span);
      if (plan_for(input_rows, batch, steps).batch_major) chunk = std::min(span, std::max(chunk, kBatchMajorChunkSteps));
      return chunk;
    }

    void execute() {
      const int64_t D = config().num_directions();
      if (s0 == 0) load_initial_state();

      const ChunkPlan plan = plan_for(input_rows, batch, steps);
      const int64_t chunk = chunk_steps(input_rows, batch, steps, s1 - s0);
      const size_t gate_size = static_cast<size_t>(chunk * batch * D * 4 * config().hidden_size);
      if (self.gates_.size() < gate_size) self.gates_.resize(gate_size);

      const bool balanced = weights().balanced;
      if (balanced) {
        for (ClaimCounter& counter : self.claims_) counter.claimed.store(0, std::memory_order_relaxed);
      }
      auto task = [&](int thread) {
        const ThreadShare& share = self.split_.shares[static_cast<size_t>(thread)];
        const ThreadWeights& mine = weights().threads[static_cast<size_t>(thread)];
        T* scratch = self.scratch_[static_cast<size_t>(thread)].data();
        RowLayout gate_rows[2];
        for (int64_t c0 = s0; c0 < s1; c0 += chunk) {
          const int64_t c1 = std::min(s1, c0 + chunk);
          // 1. Input projections of the chunk's steps (the reverse direction's chunk runs backwards
          //    from the end), this thread's gate columns: the ones its recurrence reads.
          for (int64_t dir = 0; dir < D; ++dir) {
            const int64_t t0 = dir == 0 ? c0 : steps - c1, t1 = dir == 0 ? c1 : steps - c0;
            gate_rows[dir] = plan.gate_layout(*this, t0, t1);
            const auto [lo, hi] = share.direction_columns(dir, config().hidden_size);
            if (lo < hi) project_inputs(plan, t0, t1, lo, mine.w_ih[dir], scratch);
          }
          // Balanced steps may run another thread's gate blocks: its projections must be done.
          if (balanced) self.pool_.barrier();
          // 2. The recurrence over the chunk: this thread's gate blocks of each direction.
          for (int64_t s = c0; s < c1; ++s) {
            for (int64_t dir = 0; dir < D; ++dir) {
              if (balanced || share.blocks[dir].first < share.blocks[dir].second) {
                step(thread, dir, dir == 0 ? s : steps - 1 - s, s - s0, gate_rows[dir], scratch);
              }
            }
            // The run's last step needs no barrier after it: the pool's run() waits for every thread.
            const bool last = s + 1 == s1;
            if (config().proj_size > 0) {
              if (self.split_.step_barriers) self.pool_.barrier();  // the projection reads every unit
              for (int64_t dir = 0; dir < D; ++dir) {
                const auto [q0, q1] = share.outputs[dir];
                if (q0 < q1) project(dir, dir == 0 ? s : steps - 1 - s, q0, mine.w_hr[dir], scratch);
              }
            }
            if (self.split_.step_barriers && !last) self.pool_.barrier();
          }
        }
      };
      self.pool_.run(task);
      store_final_state();
    }

    // gates[steps t0..t1, the columns from lo that w_ih has rows for] = bias + x W_ih^T, in
    // plan.gate_layout's row order.
    void project_inputs(const ChunkPlan& plan, int64_t t0, int64_t t1, int64_t lo, const PackedWeights<T>& w_ih,
                        T* scratch) {
      const int64_t width = config().num_directions() * 4 * config().hidden_size;
      T* gates = self.gates_.data() + lo;
      const int64_t chunk_rows = plan.packed
                                     ? input_rows.step_starts[t1 - 1] + batch_sizes[t1 - 1] - input_rows.step_starts[t0]
                                     : (t1 - t0) * batch;
      const T* bias = weights().bias.data() + lo;
      const T* first = input + input_rows.offset(t0);
      if (plan.time_major) {
        const int64_t stride = plan.packed || batch > 1 ? input_rows.row_stride : input_rows.time_stride;
        w_ih.multiply(first, stride, chunk_rows, bias, gates, width, scratch);
      } else if (plan.batch_major) {
        for (int64_t n = 0; n < batch; ++n) {
          w_ih.multiply(first + n * input_rows.row_stride, input_rows.time_stride, t1 - t0, bias,
                        gates + n * (t1 - t0) * width, width, scratch);
        }
      } else {
        for (int64_t t = t0; t < t1; ++t) {
          w_ih.multiply(input + input_rows.offset(t), input_rows.row_stride, batch, bias,
                        gates + (t - t0) * batch * width, width, scratch);
        }
      }
    }

    // h_0 of this layer into a contiguous buffer and c_0 into c_n, where the steps update the
    // cells in place (zeros when not given). A stream's c_0 is its c_n: then nothing moves, and
    // each thread's cells stay in its own core's cache from one call to the next.
    void load_initial_state() {
      const int64_t D = config().num_directions(), H = config().hidden_size, P = config().output_size();
      const StateView<T>* state = request.initial_state;
      for (int64_t dir = 0; dir < D; ++dir) {
        const int64_t index = layer * D + dir;
        for (int64_t n = 0; n < batch; ++n) {
          T* h = self.initial_hidden_.data() + (index * batch + n) * P;
          T* c = request.c_n + (index * batch + n) * H;
          if (!state) {
            std::fill_n(h, P, T(0));
            std::fill_n(c, H, T(0));
            continue;
          }
          const auto& hv = state->h;
          const auto& cv = state->c;
          for (int64_t k = 0; k < P; ++k) h[k] = hv.data[index * hv.strides[0] + n * hv.strides[1] + k * hv.strides[2]];
          const T* c_0 = cv.data + index * cv.strides[0] + n * cv.strides[1];
          if (c_0 == c && cv.strides[2] == 1) continue;
          for (int64_t k = 0; k < H; ++k) c[k] = c_0[k * cv.strides[2]];
        }
      }
    }

    // Direction `dir` at time t, the run's q-th step: gates += h_{t-1} W_hh^T and the cell update,
    // a gate block at a time: this thread's blocks, then, in a balanced layer, the blocks of other
    // threads that nobody has claimed yet.
    void step(int thread, int64_t dir, int64_t t, int64_t q, const RowLayout& gate_rows, T* scratch) {
      const int64_t P = config().output_size();
      const int64_t active = batch_sizes[t];
      T* step_gates = self.gates_.data() + gate_rows.offset(t) + dir * 4 * config().hidden_size;
      const int64_t index = layer * config().num_directions() + dir;

      // Rows continuing from the previous step read its output; rows starting here read h_0. Both
      // are packed once for all blocks (every thread's weights share the depth blocking), or read
      // in place where they are one row.
      const int64_t prev_t = dir == 0 ? t - 1 : t + 1;
      const int64_t continuing =
          (prev_t < 0 || prev_t >= steps) ? 0 : std::min(active, batch_sizes[prev_t]);
      const PackedWeights<T>& own = weights().threads[static_cast<size_t>(thread)].w_hh[dir];
      const T* packed_continuing = nullptr;
      const T* packed_starting = nullptr;
      if (continuing > 0) {
        packed_continuing = own.packed_activations(output + output_rows.offset(prev_t) + dir * P,
                                                   output_rows.row_stride, continuing, scratch);
      }
      if (active > continuing) {
        packed_starting = own.packed_activations(self.initial_hidden_.data() + (index * batch + continuing) * P, P,
                                                 active - continuing,
                                                 scratch + own.packed_activations_size(continuing));
      }

      // Every other step runs the blocks last to first: the weights a step used last are the
      // ones still in cache when the next one starts, so weights a little larger than L2 mostly
      // hit there (in the same order every step they would all miss).
      const bool backwards = ((t + self.forward_count_) & 1) != 0;
      auto run_block = [&](int owner, int64_t block) {
        const auto [b0, b1] = self.split_.shares[static_cast<size_t>(owner)].blocks[dir];
        const PackedWeights<T>& w_hh = weights().threads[static_cast<size_t>(owner)].w_hh[dir];
        // Rows of the owner's packed weights; only the last block of H may be narrower.
        const GateBlocks& blocks = self.split_.blocks[dir];
        const int64_t base = 4 * blocks.start(b0);
        const int64_t r0 = 4 * blocks.start(block) - base, r1 = 4 * blocks.start(block + 1) - base;
        // The owner's block most likely multiplied next: its weights can be fetched meanwhile.
        const int64_t next = backwards ? block - 1 : block + 1;
        const int64_t then = next >= b0 && next < b1 ? 4 * blocks.start(next) - base : -1;
        const int64_t ldc = gate_rows.row_stride;
        // Rows that start here (packed input) are multiplied by this block's weights again.
        w_hh.multiply_rows(packed_continuing, continuing, r0, r1, step_gates + base, ldc,
                           active > continuing ? r0 : then);
        w_hh.multiply_rows(packed_starting, active - continuing, r0, r1, step_gates + continuing * ldc + base, ldc, then);
        update_cells(dir, t, block, block + 1, step_gates, ldc);
      };
      if (!weights().balanced) {
        const auto [b0, b1] = self.split_.shares[static_cast<size_t>(thread)].blocks[dir];
        for (int64_t i = 0; i < b1 - b0; ++i) run_block(thread, backwards ? b1 - 1 - i : b0 + i);
        return;
      }
      const int threads = self.pool_.size();
      for (int k = 0; k < threads; ++k) {
        const int owner = (thread + k) % threads;
        for (int64_t block; (block = claim(owner, dir, q, backwards)) >= 0;) run_block(owner, block);
      }
    }

    // The next unclaimed block of `owner` in direction `dir` at the run's q-th step (from the
    // last one when `backwards`), or -1. Every block of step q is claimed before any thread passes
    // the step's barrier, so the counter stands at q * blocks when the step starts.
    int64_t claim(int owner, int64_t dir, int64_t q, bool backwards) const {
      const auto [b0, b1] = self.split_.shares[static_cast<size_t>(owner)].blocks[dir];
      std::atomic<int64_t>& counter = self.claims_[static_cast<size_t>(owner * 2 + dir)].claimed;
      const int64_t blocks = b1 - b0;
      int64_t seen = counter.load(std::memory_order_relaxed);
      while (seen < (q + 1) * blocks) {
        if (counter.compare_exchange_weak(seen, seen + 1, std::memory_order_relaxed)) {
          const int64_t i = seen - q * blocks;
          return backwards ? b1 - 1 - i : b0 + i;
        }
      }
      return -1;
    }

    // The cell update of blocks [b0, b1) of direction `dir` at time t, every active row.
    void update_cells(int64_t dir, int64_t t, int64_t b0, int64_t b1, const T* step_gates, int64_t ldc) {
      const int64_t H = config().hidden_size, P = config().output_size();
      const int64_t index = layer * config().num_directions() + dir;
      const bool projected = config().proj_size > 0;
      for (int64_t n = 0; n < batch_sizes[t]; ++n) {
        T* cell = request.c_n + (index * batch + n) * H;
        T* hidden = projected ? self.projected_input_.data() + (dir * batch + n) * H
                              : output + output_rows.offset(t) + n * output_rows.row_stride + dir * P;
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t unit = self.split_.blocks[dir].start(b);
          update_cell(step_gates + n * ldc + 4 * unit, self.split_.blocks[dir].width(b), cell + unit, hidden + unit);
        }
      }
    }

    // Direction `dir`'s output columns from q0 that w_hr has rows for, at time t:
    // h_t = (o * tanh(c)) W_hr^T.
    void project(int64_t dir, int64_t t, int64_t q0, const PackedWeights<T>& w_hr, T* scratch) {
      const int64_t H = config().hidden_size, P = config().output_size();
      const int64_t active = batch_sizes[t];
      T* out = output + output_rows.offset(t) + dir * P + q0;
      w_hr.multiply(self.projected_input_.data() + dir * batch * H, H, active, nullptr, out, output_rows.row_stride,
                    scratch);
    }

    // h_n of each row once its last step is in this run (c_n is where the cells were updated).
    void store_final_state() {
      const int64_t D = config().num_directions(), P = config().output_size();
      for (int64_t dir = 0; dir < D; ++dir) {
        const int64_t index = layer * D + dir;
        for (int64_t n = 0; n < batch; ++n) {
          // The reverse direction ends at t = 0; the forward one at each row's own last step.
          const int64_t t = dir == 0 ? self.last_step_[static_cast<size_t>(n)] : 0;
          if (t < s0 || t >= s1) continue;
          std::copy_n(output + output_rows.offset(t) + n * output_rows.row_stride + dir * P, P,
                      request.h_n + (index * batch + n) * P);
        }
      }
    }
  };

  LstmConfig config_;
  ThreadPool pool_;
  WorkSplit split_;
  std::vector<ClaimCounter> claims_;  // (thread, direction), for balanced layers
  std::vector<PreparedLayer> layers_;
  std::vector<AlignedVector<T>> scratch_;  // per thread
  // Workspace, grown on demand and reused across calls.
  AlignedVector<T> gates_, initial_hidden_, projected_input_, input_copy_;
  std::vector<AlignedVector<T>> layer_outputs_;  // between layers
  std::vector<RowLayout> buffer_rows_;            // chunk by chunk: where each layer's buffer starts
  std::vector<int64_t> last_step_;
  int64_t forward_count_ = 0;  // alternates the blocks' order between one-step calls too
};

}  // namespace
}  // namespace cpu

template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(const LstmConfig& config, int num_threads) {
  return std::make_unique<cpu::CpuBackend<T>>(config, num_threads);
}

template std::unique_ptr<Backend<float>> make_cpu_backend<float>(const LstmConfig&, int);
template std::unique_ptr<Backend<double>> make_cpu_backend<double>(const LstmConfig&, int);

}  // namespace fastlstm
