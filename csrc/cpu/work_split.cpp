#include "work_split.hpp"

#include <algorithm>

namespace fastlstm::cpu {

std::pair<int64_t, int64_t> split(int64_t count, int thread, int threads) {
  const int64_t begin = count * thread / threads;
  const int64_t end = count * (thread + 1) / threads;
  return {std::min(begin, count), std::min(end, count)};
}

std::vector<int64_t> unit_shares(int64_t D, int64_t H, int threads) {
  std::vector<int64_t> bounds(static_cast<size_t>(threads) + 1, D * H);
  for (int thread = 0; thread < threads; ++thread) {
    const int64_t unit = split(D * H, thread, threads).first;
    const int64_t dir = std::min(unit / H, D - 1);
    const int64_t local = std::min(H, (unit - dir * H + kShareAlign / 2) / kShareAlign * kShareAlign);
    bounds[static_cast<size_t>(thread)] = std::max(thread > 0 ? bounds[static_cast<size_t>(thread) - 1] : 0, dir * H + local);
  }
  return bounds;
}

WorkSplit::WorkSplit(const LstmConfig& config, int threads) {
  const int64_t D = config.num_directions(), H = config.hidden_size, P = config.output_size();
  // Each thread takes an equal share of the units (the time of a step is its slowest thread's),
  // cut into blocks within each direction.
  const std::vector<int64_t> bounds = unit_shares(D, H, threads);
  auto local = [&](int64_t unit, int64_t dir) { return std::clamp(unit - dir * H, int64_t(0), H); };
  for (int64_t dir = 0; dir < D; ++dir) {
    std::vector<int64_t> cuts{0, H};
    for (int64_t unit : bounds) cuts.push_back(local(unit, dir));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    blocks[dir] = GateBlocks(cuts);
  }
  for (int thread = 0; thread < threads; ++thread) {
    ThreadShare share;
    const int64_t u0 = bounds[static_cast<size_t>(thread)], u1 = bounds[static_cast<size_t>(thread) + 1];
    // The input projections a thread computes are the gate columns of its own blocks, so the
    // recurrence reads only what its own core wrote: no barrier between the two phases.
    share.col0 = 4 * u0;
    share.col1 = 4 * u1;
    const auto [p0, p1] = split(D * P, thread, threads);
    for (int64_t dir = 0; dir < D; ++dir) {
      share.blocks[dir] = {blocks[dir].at(local(u0, dir)), blocks[dir].at(local(u1, dir))};
      share.outputs[dir] = {std::clamp(p0 - dir * P, int64_t(0), P), std::clamp(p1 - dir * P, int64_t(0), P)};
    }
    shares.push_back(share);
  }
  for (int64_t dir = 0; dir < D; ++dir) {
    int owners = 0;
    for (const ThreadShare& share : shares) {
      const bool all_blocks = share.blocks[dir] == std::make_pair(int64_t(0), blocks[dir].count());
      const bool projects = config.proj_size > 0;
      const bool all_outputs = !projects || share.outputs[dir] == std::make_pair(int64_t(0), P);
      const bool some = share.blocks[dir].first < share.blocks[dir].second ||
                        (projects && share.outputs[dir].first < share.outputs[dir].second);
      if (some && !(all_blocks && all_outputs)) owners = 2;  // shared with another thread
      owners += some;
    }
    if (owners > 1) step_barriers = true;
  }
}

}  // namespace fastlstm::cpu
