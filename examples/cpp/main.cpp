// fastlstm_run: runs an LSTM from a model file over raw float32 input.
//
//   fastlstm_run MODEL --shape A,B,C [--input FILE] [--output FILE] [--state-out FILE]
//                [--stream] [--prefix KEY_PREFIX] [--threads N] [--device cpu|cuda[:N]]
//
// MODEL is a model file (LSTM.save() in Python, Lstm::save in C++, or any safetensors file with
// an LSTM's state_dict). The input is raw float32, shaped as --shape says: (L, N, H_in), or
// (N, L, H_in) for a batch_first model. The output is raw float32, shaped as torch.nn.LSTM
// returns it: (L, N, D * H_out), or (N, L, D * H_out). --state-out writes h_n then c_n.
// FILE "-" (the default) is stdin / stdout.
//
// --stream runs the step API instead: the input is read one time step (N, H_in) at a time and
// each step's output (N, H_out) is written as soon as it is computed, so the program can sit in
// a pipe. The stream is time-major, (L, N, H_in) -> (L, N, H_out), whatever batch_first says.
//
// --device cuda runs the model on a GPU (a fastlstm built with FASTLSTM_CUDA=ON): the same calls
// take the host buffers and return host results; a stream's state lives on the GPU.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fastlstm/fastlstm.hpp>

namespace {

struct Options {
  std::string model, input = "-", output = "-", state_out, prefix;
  std::vector<int64_t> shape;
  bool stream = false;
  int threads = 0;
  fastlstm::Device device;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "fastlstm_run: " << problem << "\n"
            << "usage: fastlstm_run MODEL --shape A,B,C [--input FILE] [--output FILE] [--state-out FILE]\n"
            << "                    [--stream] [--prefix KEY_PREFIX] [--threads N] [--device cpu|cuda[:N]]\n";
  std::exit(2);
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      const long long value = std::stoll(item, &used);
      if (used != item.size() || value < 0) throw std::invalid_argument(item);
      shape.push_back(value);
    } catch (const std::exception&) {
      usage("--shape: expected three non-negative integers A,B,C, got '" + text + "'");
    }
  }
  if (shape.size() != 3) usage("--shape: expected three non-negative integers A,B,C, got '" + text + "'");
  return shape;
}

fastlstm::Device parse_device(const std::string& text) {
  if (text == "cpu") return fastlstm::Device::cpu();
  if (text == "cuda") return fastlstm::Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 && text.find_first_not_of("0123456789", 5) == std::string::npos) {
    return fastlstm::Device::cuda(std::atoi(text.c_str() + 5));
  }
  usage("--device: expected cpu, cuda or cuda:N, got '" + text + "'");
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--shape") {
      options.shape = parse_shape(value());
    } else if (arg == "--input") {
      options.input = value();
    } else if (arg == "--output") {
      options.output = value();
    } else if (arg == "--state-out") {
      options.state_out = value();
    } else if (arg == "--prefix") {
      options.prefix = value();
    } else if (arg == "--threads") {
      options.threads = std::atoi(value().c_str());
    } else if (arg == "--device") {
      options.device = parse_device(value());
    } else if (arg == "--stream") {
      options.stream = true;
    } else if (arg == "-h" || arg == "--help") {
      usage("runs an LSTM from a model file over raw float32 input");
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      usage("unknown option " + arg);
    } else if (options.model.empty()) {
      options.model = arg;
    } else {
      usage("unexpected argument " + arg);
    }
  }
  if (options.model.empty()) usage("no model file given");
  if (options.shape.empty()) usage("--shape is required");
  return options;
}

// A file opened for raw float32 reading or writing; "-" is stdin or stdout.
class RawFile {
 public:
  RawFile(const std::string& path, bool write) : path_(path == "-" ? (write ? "<stdout>" : "<stdin>") : path) {
    file_ = path == "-" ? (write ? stdout : stdin) : std::fopen(path.c_str(), write ? "wb" : "rb");
    owned_ = path != "-";
    if (!file_) throw std::runtime_error(path_ + ": cannot open");
  }
  ~RawFile() {
    if (owned_) std::fclose(file_);
  }
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;

  void read(float* data, size_t count) {
    const size_t got = std::fread(data, sizeof(float), count, file_);
    if (got != count) {
      throw std::runtime_error(path_ + ": input ended early: needed " + std::to_string(count) +
                               " float32 values, got " + std::to_string(got));
    }
  }
  bool at_end() { return std::fgetc(file_) == EOF; }
  void write(const float* data, size_t count, bool flush = false) {
    if (std::fwrite(data, sizeof(float), count, file_) != count || (flush && std::fflush(file_) != 0)) {
      throw std::runtime_error(path_ + ": write failed");
    }
  }
  void close() {
    if (std::fflush(file_) != 0 || (owned_ && std::fclose(file_) != 0)) {
      throw std::runtime_error(path_ + ": write failed");
    }
    owned_ = false;
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
};

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t d = 0; d < shape.size(); ++d) text += (d ? ", " : "") + std::to_string(shape[d]);
  return text + ")";
}

void write_state(const std::string& path, const fastlstm::Tensor<float>& h, const fastlstm::Tensor<float>& c) {
  RawFile out(path, true);
  out.write(h.data(), static_cast<size_t>(h.numel()));
  out.write(c.data(), static_cast<size_t>(c.numel()));
  out.close();
}

// The whole sequence in one forward pass.
void run_forward(const fastlstm::Lstm<float>& model, const Options& options) {
  const auto& shape = options.shape;
  std::vector<float> input(static_cast<size_t>(shape[0] * shape[1] * shape[2]));
  RawFile in(options.input, false);
  in.read(input.data(), input.size());
  if (!in.at_end()) throw std::runtime_error("input: more data than --shape " + shape_string(shape) + " holds");

  const auto start = std::chrono::steady_clock::now();
  const auto result = model.forward(fastlstm::TensorView<const float>(input.data(), {shape[0], shape[1], shape[2]}));
  const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;

  RawFile out(options.output, true);
  out.write(result.output.data(), static_cast<size_t>(result.output.numel()));
  out.close();
  if (!options.state_out.empty()) write_state(options.state_out, result.h_n, result.c_n);
  std::cerr << "fastlstm_run: input " << shape_string(shape) << " -> output " << shape_string(result.output.shape())
            << " in " << elapsed.count() << " ms\n";
}

// Step by step: each step's output leaves as soon as it is computed.
void run_stream(const fastlstm::Lstm<float>& model, const Options& options) {
  const int64_t steps = options.shape[0], batch = options.shape[1], width = options.shape[2];
  const int64_t out_width = model.config().output_size();
  auto state = model.make_state(batch);  // zeros; carried from step to step
  std::vector<float> input_t(static_cast<size_t>(batch * width)), output_t(static_cast<size_t>(batch * out_width));
  RawFile in(options.input, false);
  RawFile out(options.output, true);
  for (int64_t t = 0; t < steps; ++t) {
    in.read(input_t.data(), input_t.size());
    model.step(fastlstm::TensorView<const float>(input_t.data(), {batch, width}), state,
               fastlstm::TensorView<float>(output_t.data(), {batch, out_width}));
    out.write(output_t.data(), output_t.size(), /*flush=*/true);
  }
  out.close();
  if (!options.state_out.empty()) {
    const auto [h, c] = model.read_state(state);  // host copies: the state lives on the model's device
    write_state(options.state_out, h, c);
  }
  std::cerr << "fastlstm_run: streamed " << steps << " steps of " << shape_string({batch, width}) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  // Before anything else: a library built for an instruction set this CPU lacks would fault.
  if (*fastlstm::missing_cpu_features() != '\0') {
    std::cerr << "fastlstm_run: this fastlstm (" << fastlstm::simd_level() << ") needs CPU features this CPU lacks: "
              << fastlstm::missing_cpu_features() << "\n";
    return 1;
  }
  try {
    fastlstm::LstmOptions model_options;
    model_options.num_threads = options.threads;
    model_options.device = options.device;
    const auto model = fastlstm::Lstm<float>::load(options.model, options.prefix, model_options);
    const fastlstm::LstmConfig& config = model.config();
    std::cerr << "fastlstm_run: fastlstm " << fastlstm::version() << ", LSTM(" << config.input_size << ", "
              << config.hidden_size << ", num_layers=" << config.num_layers
              << (config.bidirectional ? ", bidirectional" : "") << (config.batch_first ? ", batch_first" : "")
              << (config.proj_size ? ", proj_size=" + std::to_string(config.proj_size) : "") << "), "
              << "on " << model.device().str() << ", " << model.num_threads() << " thread(s), "
              << fastlstm::simd_level() << "\n";
    if (options.stream) {
      if (options.shape[2] != config.input_size) {
        throw std::runtime_error("--shape: H_in is " + std::to_string(options.shape[2]) +
                                 " but the model's input_size is " + std::to_string(config.input_size));
      }
      run_stream(model, options);
    } else {
      run_forward(model, options);
    }
  } catch (const std::exception& error) {  // fastlstm::Error (InvalidArgument, FileError) and I/O errors
    std::cerr << "fastlstm_run: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
