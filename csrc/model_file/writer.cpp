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


// The 8-byte length and the JSON header, padded with spaces to a multiple of 8 bytes (as
// safetensors writes it) so that the data starts aligned.
template <typename T>
std::string file_header(const LstmWeights<T>& weights) {
  const LstmConfig& c = weights.config();
  const std::vector<std::pair<std::string, std::string>> metadata{
      {"input_size", std::to_string(c.input_size)},
      {"hidden_size", std::to_string(c.hidden_size)},
      {"num_layers", std::to_string(c.num_layers)},
      {"bias", c.bias ? "true" : "false"},
      {"batch_first", c.batch_first ? "true" : "false"},
      {"bidirectional", c.bidirectional ? "true" : "false"},
      {"proj_size", std::to_string(c.proj_size)},
      {"dropout", exact_decimal(c.dropout)},
      {"dtype", dtype_name(dtype_of<T>())}};
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
    const int64_t bytes = parameter.spec.numel() * static_cast<int64_t>(sizeof(T));
    json += ",";
    append_json_string(json, parameter.spec.name);
    json += ":{\"dtype\":\"";
    json += file_dtype<T>();
    json += "\",\"shape\":[";
    for (size_t d = 0; d < parameter.spec.shape.size(); ++d) {
      json += (d ? "," : "") + std::to_string(parameter.spec.shape[d]);
    }
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string header(8, '\0');
  const uint64_t length = json.size();
  for (int i = 0; i < 8; ++i) header[static_cast<size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xFF);
  return header + json;
}

// Hands the whole file to `write` in pieces: the header, then each tensor's bytes.
template <typename T>
void write_model(const LstmWeights<T>& weights, const std::function<void(const void*, size_t)>& write) {
  const std::string header = file_header(weights);
  write(header.data(), header.size());
  for (const Parameter<T>& parameter : weights.parameters()) {
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
void save_weights(const std::string& path, const LstmWeights<T>& weights) {
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
  write_model<T>(weights, [&](const void* data, size_t size) {
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
    write_model<T>(weights, [&](const void* data, size_t size) {
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
  write_model<T>(weights, [&](const void* data, size_t size) { bytes.append(static_cast<const char*>(data), size); });
  return bytes;
}

template <typename T>
void save_model_file(const std::string& path, const LstmWeights<T>& weights) {
  save_weights(path, weights);
}

template <typename T>
void Lstm<T>::save(const std::string& path) const {
  std::lock_guard<ForkSafeMutex> lock(*mutex_);  // no weight update while the file is written
  save_weights(path, weights_);
}

template std::string model_file_bytes<float>(const LstmWeights<float>&);
template std::string model_file_bytes<double>(const LstmWeights<double>&);
template void save_model_file<float>(const std::string&, const LstmWeights<float>&);
template void save_model_file<double>(const std::string&, const LstmWeights<double>&);
template void Lstm<float>::save(const std::string&) const;
template void Lstm<double>::save(const std::string&) const;

}  // namespace fastlstm
