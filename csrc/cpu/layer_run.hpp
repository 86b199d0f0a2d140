#pragma once
// One layer of one forward pass on the CPU backend: the input projections of a chunk of steps,
// then the recurrence over it, each thread on its own share (see cpu_backend.hpp). Part of
// cpu_backend.cpp's translation unit.
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cpu_backend.hpp"

namespace fastlstm::cpu {
namespace {

// One layer of one forward pass.
template <typename T>
struct LayerRun {
  CpuBackend<T>& backend;
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

  const LstmConfig& config() const { return backend.config_; }
  const typename CpuBackend<T>::PreparedLayer& weights() const { return backend.layers_[static_cast<size_t>(layer)]; }

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
    if (backend.gates_.size() < gate_size) backend.gates_.resize(gate_size);

    const bool balanced = weights().balanced;
    if (balanced) {
      for (typename CpuBackend<T>::ClaimCounter& counter : backend.claims_) counter.claimed.store(0, std::memory_order_relaxed);
    }
    auto task = [&](int thread) {
      const ThreadShare& share = backend.split_.shares[static_cast<size_t>(thread)];
      const typename CpuBackend<T>::ThreadWeights& own = weights().threads[static_cast<size_t>(thread)];
      T* scratch = backend.scratch_[static_cast<size_t>(thread)].data();
      RowLayout gate_rows[2];
      for (int64_t c0 = s0; c0 < s1; c0 += chunk) {
        const int64_t c1 = std::min(s1, c0 + chunk);
        // 1. Input projections of the chunk's steps (the reverse direction's chunk runs backwards
        //    from the end), this thread's gate columns: the ones its recurrence reads.
        for (int64_t dir = 0; dir < D; ++dir) {
          const bool backwards = config().runs_backwards(dir);
          const int64_t t0 = backwards ? steps - c1 : c0, t1 = backwards ? steps - c0 : c1;
          gate_rows[dir] = plan.gate_layout(*this, t0, t1);
          const auto [lo, hi] = share.direction_columns(dir, config().hidden_size);
          if (lo < hi) project_inputs(plan, t0, t1, lo, own.w_ih[dir], scratch);
        }
        // Balanced steps may run another thread's gate blocks: its projections must be done.
        if (balanced) backend.pool_.barrier();
        // 2. The recurrence over the chunk: this thread's gate blocks of each direction.
        for (int64_t s = c0; s < c1; ++s) {
          for (int64_t dir = 0; dir < D; ++dir) {
            if (balanced || share.blocks[dir].first < share.blocks[dir].second) {
              step(thread, dir, time_of(dir, s), s - s0, gate_rows[dir], scratch);
            }
          }
          // The run's last step needs no barrier after it: the pool's run() waits for every thread.
          const bool last = s + 1 == s1;
          if (config().proj_size > 0) {
            if (backend.split_.step_barriers) backend.pool_.barrier();  // the projection reads every unit
            for (int64_t dir = 0; dir < D; ++dir) {
              const auto [q0, q1] = share.outputs[dir];
              if (q0 < q1) project(dir, time_of(dir, s), q0, own.w_hr[dir], scratch);
            }
          }
          if (backend.split_.step_barriers && !last) backend.pool_.barrier();
        }
      }
    };
    backend.pool_.run(task);
    store_final_state();
  }

  // The time of direction `dir`'s s-th step.
  int64_t time_of(int64_t dir, int64_t s) const { return config().runs_backwards(dir) ? steps - 1 - s : s; }

  // gates[steps t0..t1, the columns from lo that w_ih has rows for] = bias + x W_ih^T, in
  // plan.gate_layout's row order.
  void project_inputs(const ChunkPlan& plan, int64_t t0, int64_t t1, int64_t lo, const PackedWeights<T>& w_ih,
                      T* scratch) {
    const int64_t width = config().num_directions() * 4 * config().hidden_size;
    T* gates = backend.gates_.data() + lo;
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
        T* h = backend.initial_hidden_.data() + (index * batch + n) * P;
        T* c = request.c_n + request.final_state_row(index, n) * H;
        if (!state) {
          std::fill_n(h, P, T(0));
          std::fill_n(c, H, T(0));
          continue;
        }
        const auto& hv = state->h;
        const auto& cv = state->c;
        // The caller's row: of the packed batch's permutation, or the pool's slot.
        const int64_t row = request.sorted_indices ? request.sorted_indices[n]
                            : request.state_rows   ? request.state_rows[n]
                                                   : n;
        for (int64_t k = 0; k < P; ++k) h[k] = hv.data[index * hv.strides[0] + row * hv.strides[1] + k * hv.strides[2]];
        const T* c_0 = cv.data + index * cv.strides[0] + row * cv.strides[1];
        if (c_0 == c && cv.strides[2] == 1) continue;
        for (int64_t k = 0; k < H; ++k) c[k] = c_0[k * cv.strides[2]];
      }
    }
  }

  // Direction `dir` at time t, the run's q-th step: gates += h_{t-1} W_hh^T and the cell update,
  // a gate block at a time: this thread's blocks, then, in a balanced layer, the blocks of other
  // threads that nobody has claimed yet.
  void step(int thread, int64_t dir, int64_t t, int64_t run_step, const RowLayout& gate_rows, T* scratch) {
    const int64_t P = config().output_size();
    const int64_t active = batch_sizes[t];
    T* step_gates = backend.gates_.data() + gate_rows.offset(t) + dir * 4 * config().hidden_size;
    const int64_t index = layer * config().num_directions() + dir;

    // Rows continuing from the previous step read its output; rows starting here read h_0. Both
    // are packed once for all blocks (every thread's weights share the depth blocking), or read
    // in place where they are one row.
    const int64_t prev_t = config().runs_backwards(dir) ? t + 1 : t - 1;
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
      packed_starting = own.packed_activations(backend.initial_hidden_.data() + (index * batch + continuing) * P, P,
                                               active - continuing,
                                               scratch + own.packed_activations_size(continuing));
    }

    // Every other step runs the blocks last to first: the weights a step used last are the
    // ones still in cache when the next one starts, so weights a little larger than L2 mostly
    // hit there (in the same order every step they would all miss).
    const bool backwards = ((t + backend.forward_count_) & 1) != 0;
    auto run_block = [&](int owner, int64_t block) {
      const auto [b0, b1] = backend.split_.shares[static_cast<size_t>(owner)].blocks[dir];
      const PackedWeights<T>& w_hh = weights().threads[static_cast<size_t>(owner)].w_hh[dir];
      // Rows of the owner's packed weights; only the last block of H may be narrower.
      const GateBlocks& blocks = backend.split_.blocks[dir];
      const int64_t base = 4 * blocks.start(b0);
      const int64_t r0 = 4 * blocks.start(block) - base, r1 = 4 * blocks.start(block + 1) - base;
      // The owner's block most likely multiplied next: its weights can be fetched meanwhile.
      const int64_t next = backwards ? block - 1 : block + 1;
      const int64_t next_rows = next >= b0 && next < b1 ? 4 * blocks.start(next) - base : -1;
      const int64_t ldc = gate_rows.row_stride;
      // Rows that start here (packed input) are multiplied by this block's weights again.
      w_hh.multiply_rows(packed_continuing, continuing, r0, r1, step_gates + base, ldc,
                         active > continuing ? r0 : next_rows);
      w_hh.multiply_rows(packed_starting, active - continuing, r0, r1, step_gates + continuing * ldc + base, ldc, next_rows);
      update_cells(dir, t, block, block + 1, step_gates, ldc);
    };
    if (!weights().balanced) {
      const auto [b0, b1] = backend.split_.shares[static_cast<size_t>(thread)].blocks[dir];
      for (int64_t i = 0; i < b1 - b0; ++i) run_block(thread, backwards ? b1 - 1 - i : b0 + i);
      return;
    }
    const int threads = backend.pool_.size();
    for (int k = 0; k < threads; ++k) {
      const int owner = (thread + k) % threads;
      for (int64_t block; (block = claim(owner, dir, run_step, backwards)) >= 0;) run_block(owner, block);
    }
  }

  // The next unclaimed block of `owner` in direction `dir` at the run's q-th step (from the
  // last one when `backwards`), or -1. Every block of the run's step `run_step` is claimed before any
  // thread passes the step's barrier, so the counter stands at run_step * blocks when it starts.
  int64_t claim(int owner, int64_t dir, int64_t run_step, bool backwards) const {
    const auto [b0, b1] = backend.split_.shares[static_cast<size_t>(owner)].blocks[dir];
    std::atomic<int64_t>& counter = backend.claims_[static_cast<size_t>(owner * 2 + dir)].claimed;
    const int64_t blocks = b1 - b0;
    int64_t seen = counter.load(std::memory_order_relaxed);
    while (seen < (run_step + 1) * blocks) {
      if (counter.compare_exchange_weak(seen, seen + 1, std::memory_order_relaxed)) {
        const int64_t i = seen - run_step * blocks;
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
    const T* peepholes = weights().peepholes.empty() ? nullptr : weights().peepholes.data() + dir * 3 * H;
    for (int64_t n = 0; n < batch_sizes[t]; ++n) {
      T* cell = request.c_n + request.final_state_row(index, n) * H;
      T* hidden = projected ? backend.projected_input_.data() + (dir * batch + n) * H
                            : output + output_rows.offset(t) + n * output_rows.row_stride + dir * P;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t unit = backend.split_.blocks[dir].start(b), width = backend.split_.blocks[dir].width(b);
        const T* gates = step_gates + n * ldc + 4 * unit;
        if (peepholes) {
          update_cell_with_peepholes(gates, width, peepholes + unit, H, cell + unit, hidden + unit);
        } else {
          update_cell(gates, width, cell + unit, hidden + unit);
        }
      }
    }
  }

  // Direction `dir`'s output columns from q0 that w_hr has rows for, at time t:
  // h_t = (o * tanh(c)) W_hr^T.
  void project(int64_t dir, int64_t t, int64_t q0, const PackedWeights<T>& w_hr, T* scratch) {
    const int64_t H = config().hidden_size, P = config().output_size();
    const int64_t active = batch_sizes[t];
    T* out = output + output_rows.offset(t) + dir * P + q0;
    w_hr.multiply(backend.projected_input_.data() + dir * batch * H, H, active, nullptr, out, output_rows.row_stride,
                  scratch);
  }

  // h_n of each row once its last step is in this run (c_n is where the cells were updated).
  void store_final_state() {
    const int64_t D = config().num_directions(), P = config().output_size();
    for (int64_t dir = 0; dir < D; ++dir) {
      const int64_t index = layer * D + dir;
      for (int64_t n = 0; n < batch; ++n) {
        // A backwards direction ends at t = 0; a forward one at each row's own last step.
        const int64_t t = config().runs_backwards(dir) ? 0 : backend.last_step_[static_cast<size_t>(n)];
        if (t < s0 || t >= s1) continue;
        std::copy_n(output + output_rows.offset(t) + n * output_rows.row_stride + dir * P, P,
                    request.h_n + request.final_state_row(index, n) * P);
      }
    }
  }
};

}  // namespace
}  // namespace fastlstm::cpu
