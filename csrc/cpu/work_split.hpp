#pragma once
// How the work of a layer is cut among the threads of the pool, fixed for the model's life so
// that each thread's weights stay packed (and, for small models, resident in its core's cache):
// each thread an equal share of the hidden units of all directions (the time of a step is its
// slowest thread's), cut into gate blocks within each direction, and the gate columns, outputs
// and projections that go with them.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "fastlstm/config.hpp"

namespace fastlstm::cpu {

using std::size_t;

// Hidden units per gate block: three AVX registers of float, so every gate slice is SIMD-wide,
// and a block's 4 * 24 = 96 gate rows are whole row panels of every micro-kernel (24 rows for
// float on AVX2), so that a block's product runs on its own. A block is the unit of work of a
// step: a thread runs its own blocks first, then, where the layer balances its steps, the blocks
// of other threads that nobody has started yet, so that a thread slowed down (by the machine, or
// by a share of weights further from its core) does not hold every other at the step's barrier.
constexpr int64_t kBlock = 24;

// Threads' shares of the hidden units start at multiples of this many units (of a direction):
// the partial blocks their ends make stay whole AVX2 vectors.
constexpr int64_t kShareAlign = 8;

// [begin, end) of `count` items for `thread` of `threads`.
std::pair<int64_t, int64_t> split(int64_t count, int thread, int threads);

// The first unit of each thread's share of the D * H units of all directions (D * H at the end):
// as even as kShareAlign allows, a direction boundary kept where one falls.
std::vector<int64_t> unit_shares(int64_t D, int64_t H, int threads);

// How one direction's hidden units are cut into gate blocks: kBlock units at a time from the
// start of each thread's share, so the last block of a share may be narrower. Block b's `width`
// units occupy the interleaved rows [4 * start(b), 4 * start(b + 1)): gates i, f, g, o, each
// `width` rows.
class GateBlocks {
 public:
  GateBlocks() = default;
  // `cuts`: the units where shares start, 0 and H included.
  explicit GateBlocks(const std::vector<int64_t>& cuts) {
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      for (int64_t unit = cuts[i]; unit < cuts[i + 1]; unit += kBlock) starts_.push_back(unit);
    }
    starts_.push_back(cuts.back());
    block_of_.resize(static_cast<size_t>(cuts.back()));
    for (int64_t b = 0; b < count(); ++b) std::fill(block_of_.begin() + start(b), block_of_.begin() + start(b + 1), b);
  }
  int64_t count() const { return static_cast<int64_t>(starts_.size()) - 1; }
  int64_t start(int64_t block) const { return starts_[static_cast<size_t>(block)]; }
  int64_t width(int64_t block) const { return start(block + 1) - start(block); }
  // The block that starts at `unit` (count() for H).
  int64_t at(int64_t unit) const {
    return std::lower_bound(starts_.begin(), starts_.end(), unit) - starts_.begin();
  }
  // Where torch's gate row (gate, unit) goes.
  int64_t row(int64_t gate, int64_t unit) const {
    const int64_t block = block_of_[static_cast<size_t>(unit)];
    return 4 * start(block) + gate * width(block) + unit - start(block);
  }

 private:
  std::vector<int64_t> starts_;
  std::vector<int64_t> block_of_;
};

// What one thread computes, fixed for the model's life so that its weights stay packed (and,
// for small models, resident in its core's cache).
struct ThreadShare {
  int64_t col0 = 0, col1 = 0;                  // input projection: gate columns of both directions
  // The part of [col0, col1) that belongs to direction `dir` (empty when lo >= hi).
  std::pair<int64_t, int64_t> direction_columns(int64_t dir, int64_t hidden) const {
    return {std::max(col0, dir * 4 * hidden), std::min(col1, (dir + 1) * 4 * hidden)};
  }
  std::pair<int64_t, int64_t> blocks[2] = {};  // recurrence: gate blocks, per direction
  std::pair<int64_t, int64_t> outputs[2] = {}; // projection: output columns, per direction
};

// The split of a configuration's work among `threads` threads.
struct WorkSplit {
  WorkSplit(const LstmConfig& config, int threads);

  GateBlocks blocks[2];  // per direction
  std::vector<ThreadShare> shares;  // per thread
  // Whether a direction's step is shared between threads, so that its threads meet at a barrier
  // after every step. When every direction belongs wholly to one thread (2 threads,
  // bidirectional), its steps read only what that thread wrote: the directions run side by side.
  bool step_barriers = false;
};

}  // namespace fastlstm::cpu
