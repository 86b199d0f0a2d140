// Writing a model file: the header (configuration in the metadata, tensors in torch's order),
// then the tensors' bytes, to a temporary file renamed over the path once complete.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#else
#include <fstream>
#endif

#include "byte_source.hpp"
#include "common.hpp"
#include "fastlstm/lstm.hpp"
#include "fastlstm/model_file.hpp"
#include "fork_safety.hpp"
#include "metadata.hpp"
#include "names.hpp"
#include "weight_format.hpp"

namespace fastlstm {
namespace {

using model_file::checked_path;
using model_file::exact_decimal;
using model_file::file_error;

template <typename T>
const char* file_dtype();
template <>
const char* file_dtype<float>() {
  return "F32";
}
template <>
const char* file_dtype<double>() {
  return "F64";
}

template <typename T>
DType dtype_of();
template <>
DType dtype_of<float>() {
  return DType::float32;
}
template <>
DType dtype_of<double>() {
  return DType::float64;
}


void append_json_string(std::string& out, const std::string& s) {
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof(escape), "\\u%04x", u);
      out += escape;
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}


// How a parameter is written: F16 or BF16 for the weight matrices of a 16-bit model (whose
// values that format holds exactly), I8 for those of an int8 model (with an F32 tensor of their
// row scales, scale_name), else the file dtype of T.
template <typename T>
const char* tensor_dtype(const Parameter<T>& parameter, WeightFormat format) {
  const ParameterKind kind = parameter.spec.kind;
  const bool matrix = kind == ParameterKind::weight_ih || kind == ParameterKind::weight_hh || kind == ParameterKind::weight_hr;
  if (matrix && format == WeightFormat::float16) return "F16";
  if (matrix && format == WeightFormat::bfloat16) return "BF16";
  if (matrix && format == WeightFormat::int8 && !parameter.scales.empty()) return "I8";
  return file_dtype<T>();
}

int64_t element_bytes(const char* dtype, int64_t native) {
  if (std::strcmp(dtype, "I8") == 0) return 1;
  if (std::strcmp(dtype, "F16") == 0 || std::strcmp(dtype, "BF16") == 0) return 2;
  return native;
}

// A tensor's entry in the header, its data from `offset`; returns where the next one starts.
int64_t append_entry(std::string& json, const std::string& name, const char* dtype, const std::vector<int64_t>& shape,
                     int64_t bytes, int64_t offset) {
  json += ",";
  append_json_string(json, name);
  json += ":{\"dtype\":\"";
  json += dtype;
  json += "\",\"shape\":[";
  for (size_t d = 0; d < shape.size(); ++d) json += (d ? "," : "") + std::to_string(shape[d]);
  json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
  return offset + bytes;
}

// The 8-byte length and the JSON header, padded with spaces to a multiple of 8 bytes (as
// safetensors writes it) so that the data starts aligned.
template <typename T>
std::string file_header(const LstmWeights<T>& weights, WeightFormat format, int int8_input_bits) {
  const LstmConfig& c = weights.config();
  std::vector<std::pair<std::string, std::string>> metadata{
      {"input_size", std::to_string(c.input_size)},
      {"hidden_size", std::to_string(c.hidden_size)},
      {"num_layers", std::to_string(c.num_layers)},
      {"bias", c.bias ? "true" : "false"},
      {"batch_first", c.batch_first ? "true" : "false"},
      {"bidirectional", c.bidirectional ? "true" : "false"},
      {"proj_size", std::to_string(c.proj_size)},
      {"dropout", exact_decimal(c.dropout)},
      {"dtype", dtype_name(dtype_of<T>())}};
  if (c.reverse) metadata.emplace_back("reverse", "true");
  if (c.peephole) metadata.emplace_back("peephole", "true");
  if (format != WeightFormat::native) metadata.emplace_back("weight_format", weight_format_name<T>(format));
  if (format == WeightFormat::int8) metadata.emplace_back("int8_input_bits", std::to_string(int8_input_bits));
  std::string json = "{\"__metadata__\":{";
  for (size_t i = 0; i < metadata.size(); ++i) {
    if (i) json += ",";
    append_json_string(json, metadata[i].first);
    json += ":";
    append_json_string(json, metadata[i].second);
  }
  json += "}";
  int64_t offset = 0;
  for (const Parameter<T>& parameter : weights.parameters()) {
    const char* dtype = tensor_dtype<T>(parameter, format);
    const int64_t bytes = parameter.spec.numel() * element_bytes(dtype, static_cast<int64_t>(sizeof(T)));
    offset = append_entry(json, parameter.spec.name, dtype, parameter.spec.shape, bytes, offset);
    if (std::strcmp(dtype, "I8") == 0) {
      const int64_t rows = parameter.spec.shape[0];
      offset = append_entry(json, model_file::scale_name(parameter.spec.name), "F32", {rows}, rows * 4, offset);
    }
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string header(8, '\0');
  const uint64_t length = json.size();
  for (int i = 0; i < 8; ++i) header[static_cast<size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xFF);
  return header + json;
}

// A 16-bit tensor's bytes, little-endian, a piece at a time.
template <typename T>
void write_16_bits(const std::vector<T>& values, WeightFormat format,
                   const std::function<void(const void*, size_t)>& write) {
  unsigned char piece[4096];
  size_t used = 0;
  for (T value : values) {
    const float v = static_cast<float>(value);
    const uint16_t bits = format == WeightFormat::float16 ? weight_format::to_float16(v) : weight_format::to_bfloat16(v);
    piece[used++] = static_cast<unsigned char>(bits & 0xFF);
    piece[used++] = static_cast<unsigned char>(bits >> 8);
    if (used == sizeof(piece)) {
      write(piece, used);
      used = 0;
    }
  }
  if (used) write(piece, used);
}

// An int8 matrix's bytes (its integers, row by row), then its row scales as little-endian F32.
template <typename T>
void write_int8(const Parameter<T>& parameter, const std::function<void(const void*, size_t)>& write) {
  const int64_t rows = parameter.spec.shape[0], cols = parameter.spec.shape[1];
  std::vector<int8_t> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = parameter.scales[static_cast<size_t>(r)];
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      row[static_cast<size_t>(c)] =
          parameter.codes.empty() ? weight_format::to_int8(static_cast<float>(parameter.values[i]), scale) : parameter.codes[i];
    }
    write(row.data(), row.size());
  }
  for (float scale : parameter.scales) {
    uint32_t bits;
    std::memcpy(&bits, &scale, sizeof(bits));
    const unsigned char raw[4] = {static_cast<unsigned char>(bits), static_cast<unsigned char>(bits >> 8),
                                  static_cast<unsigned char>(bits >> 16), static_cast<unsigned char>(bits >> 24)};
    write(raw, sizeof(raw));
  }
}

// Hands the whole file to `write` in pieces: the header, then each tensor's bytes.
template <typename T>
void write_model(const LstmWeights<T>& weights, WeightFormat format, int int8_input_bits,
                 const std::function<void(const void*, size_t)>& write) {
  const std::string header = file_header(weights, format, int8_input_bits);
  write(header.data(), header.size());
  for (const Parameter<T>& parameter : weights.parameters()) {
    const char* dtype = tensor_dtype<T>(parameter, format);
    if (std::strcmp(dtype, "I8") == 0) {
      write_int8(parameter, write);
      continue;
    }
    if (std::strcmp(dtype, file_dtype<T>()) != 0) {
      write_16_bits(parameter.values, format, write);
      continue;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (T value : parameter.values) {
      unsigned char raw[sizeof(T)];
      std::memcpy(raw, &value, sizeof(T));
      std::reverse(raw, raw + sizeof(T));
      write(raw, sizeof(T));
    }
#else
    write(parameter.values.data(), parameter.values.size() * sizeof(T));
#endif
  }
}

template <typename T>
void save_weights(const std::string& path, const LstmWeights<T>& weights, WeightFormat format, int int8_input_bits) {
  checked_path(path);
  static std::atomic<unsigned> counter{0};
#if defined(FASTLSTM_POSIX_FILES)
  const std::string temporary =
      path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) file_error("cannot write", path, errno);
  auto abandon = [&](const char* what, int e) {
    ::close(fd);
    ::unlink(temporary.c_str());
    file_error(what, path, e);
  };
  write_model<T>(weights, format, int8_input_bits, [&](const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t written = ::write(fd, p, size);
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) abandon("cannot write", written < 0 ? errno : EIO);
      p += written;
      size -= static_cast<size_t>(written);
    }
  });
  if (::fsync(fd) != 0) abandon("cannot write", errno);
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(temporary.c_str());
    file_error("cannot write", path, e);
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(temporary.c_str());
    file_error("cannot write", path, e);
  }
#else
  const std::string temporary = path + ".tmp-" + std::to_string(counter.fetch_add(1));
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) file_error("cannot write", path, errno);
    write_model<T>(weights, format, int8_input_bits, [&](const void* data, size_t size) {
      out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    });
    out.close();
    if (!out) {
      const int e = errno;
      std::remove(temporary.c_str());
      file_error("cannot write", path, e);
    }
  }
  std::remove(path.c_str());  // rename does not replace an existing file everywhere
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(temporary.c_str());
    file_error("cannot write", path, e);
  }
#endif
}

}  // namespace

const char* dtype_name(DType dtype) { return dtype == DType::float64 ? "float64" : "float32"; }

template <typename T>
std::string model_file_bytes(const LstmWeights<T>& weights) {
  std::string bytes;
  write_model<T>(weights, WeightFormat::native, 16,
                 [&](const void* data, size_t size) { bytes.append(static_cast<const char*>(data), size); });
  return bytes;
}

template <typename T>
void save_model_file(const std::string& path, const LstmWeights<T>& weights) {
  save_weights(path, weights, WeightFormat::native, 16);
}

template <typename T>
void Lstm<T>::save(const std::string& path) const {
  std::lock_guard<ForkSafeMutex> lock(*mutex_);  // no weight update while the file is written
  save_weights(path, weights_, options_.weight_format, options_.int8_input_bits);
}

template std::string model_file_bytes<float>(const LstmWeights<float>&);
template std::string model_file_bytes<double>(const LstmWeights<double>&);
template void save_model_file<float>(const std::string&, const LstmWeights<float>&);
template void save_model_file<double>(const std::string&, const LstmWeights<double>&);
template void Lstm<float>::save(const std::string&) const;
template void Lstm<double>::save(const std::string&) const;

}  // namespace fastlstm
