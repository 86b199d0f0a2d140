#pragma once
// Many streams through one model, each stepping when its own input arrives: a StreamPool holds
// the (h, c) of up to `capacity` streams, which open and close at any time, and steps any subset
// of them together, as one batched step (so a thousand streams cost about what one batch of a
// thousand does, not a thousand single steps).
#include <cstdint>
#include <utility>
#include <vector>

#include "fastlstm/error.hpp"
#include "fastlstm/lstm.hpp"
#include "fastlstm/tensor.hpp"

namespace fastlstm {

// A stream of a StreamPool. A pool never gives the same id twice, so a closed stream's id stays
// unknown to it.
using StreamId = int64_t;

// An id that is not an open stream of the pool it was given to (never opened, or closed). An
// InvalidArgument: the message names the id.
class UnknownStream : public InvalidArgument {
 public:
  explicit UnknownStream(StreamId id);
  StreamId id() const { return id_; }

 private:
  StreamId id_;
};

// open() on a pool whose every slot holds an open stream.
class PoolFull : public Error {
 public:
  using Error::Error;
};

// Thread safety: every method may be called from many threads at once; the pool's calls and the
// model's forward passes are serialised on the model's lock (a step of the pool waits for a
// forward of the model and the other way round). A pool survives fork() as its model does.
// Errors: every call checks all it is given before it changes anything, so a rejected call (an
// unknown id, a repeated one, wrong shapes) leaves every stream's state as it was.
template <typename T>
class StreamPool {
 public:
  // Room for `capacity` streams of `model`, which must be unidirectional, on the CPU, and outlive
  // the pool (its weights may change meanwhile: the streams go on with the new ones). The states
  // are allocated here: steps allocate nothing. Throws InvalidArgument for a bidirectional, reverse or GPU
  // model, or a capacity < 1 or beyond what memory can index.
  StreamPool(const Lstm<T>& model, int64_t capacity);

  const Lstm<T>& model() const { return *model_; }
  int64_t capacity() const { return capacity_; }
  // Open streams.
  int64_t size() const;
  bool contains(StreamId id) const;

  // Opens a stream whose state is zeros, or `state`: h (num_layers, 1, H_out) and c (num_layers,
  // 1, hidden_size), any strides, in host memory. Throws PoolFull when `capacity` streams are
  // open, InvalidArgument for a wrongly shaped state.
  StreamId open();
  StreamId open(const StateView<T>& state);
  // Closes a stream. Throws UnknownStream.
  void close(StreamId id);

  // One time step of `count` streams: row i of input_t (count, H_in) is the input of ids[i],
  // row i of output_t (count, H_out; features contiguous, not overlapping input_t) its output;
  // each stream's state advances. Any open streams in any order, each at most once. Throws
  // UnknownStream, or InvalidArgument for a repeated id or wrong shapes.
  void step(const StreamId* ids, int64_t count, TensorView<const T> input_t, TensorView<T> output_t);
  void step(const std::vector<StreamId>& ids, TensorView<const T> input_t, TensorView<T> output_t);
  // The same step, its output (count, H_out) allocated.
  Tensor<T> step(const std::vector<StreamId>& ids, TensorView<const T> input_t);

  // Copies of a stream's state: h (num_layers, 1, H_out), c (num_layers, 1, hidden_size), the
  // shapes open() and set_state() take. Throws UnknownStream.
  std::pair<Tensor<T>, Tensor<T>> get_state(StreamId id) const;
  // Throws UnknownStream, or InvalidArgument for wrongly shaped values.
  void set_state(StreamId id, const StateView<T>& state);
  void reset_state(StreamId id);

 private:
  int64_t slot_of(StreamId id) const;  // the open stream's slot, or throws UnknownStream
  StreamId open_locked(const StateView<T>* state);  // zeros for nullptr
  void write_state(int64_t slot, const StateView<T>* state);  // zeros for nullptr
  void check_state_values(const StateView<T>& state) const;

  const Lstm<T>* model_;
  int64_t capacity_;
  int64_t layers_, h_width_, c_width_;  // num_layers, H_out, hidden_size
  // Guarded by the model's lock. A stream's id is serial * capacity + slot, serial counting the
  // opens: slot s holds the stream ids_[s] (-1: free).
  std::vector<StreamId> ids_;
  std::vector<int64_t> free_slots_;
  int64_t open_ = 0, opens_ = 0;
  // The states, (num_layers, capacity, H_out) and (num_layers, capacity, hidden_size): a step
  // reads and updates its streams' rows where they are (ForwardRequest::state_rows).
  std::vector<T> h_, c_;
  // A step's workspace: its streams' slots, and the stamp that finds repeated ids.
  std::vector<int64_t> step_slots_;
  std::vector<uint64_t> stamps_;
  uint64_t stamp_ = 0;
};

}  // namespace fastlstm
