#pragma once
// The header of a safetensors file: the 8-byte length, then a JSON object whose members are
// "__metadata__" (an object of strings) or tensors ({"dtype": string, "shape": [int, ...],
// "data_offsets": [begin, end]}). Read strictly: anything else, duplicate keys included, is an
// InvalidArgument, and every tensor is checked against the bytes that follow the header.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "byte_source.hpp"

namespace fastlstm::model_file {

// A real LSTM's header is a few KB, a whole network's (thousands of tensors) well under 1 MB. The
// parsed header costs several times its size in memory, so a hostile one is refused past this.
constexpr uint64_t kMaxHeaderBytes = 16u << 20;
// More dimensions than any tensor of torch's has; bounds what one shape may cost to hold.
constexpr size_t kMaxRank = 64;

struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t begin = 0;  // byte offsets into the data that follows the header
  int64_t end = 0;
};

struct Header {
  std::vector<TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
};

// Parses the header's JSON text (`size` bytes at `text`), checking its schema; reads nothing else.
Header parse_header(const char* text, size_t size);

// The header of a model file, every tensor checked against the length of the data after it.
struct ParsedFile {
  Header header;
  uint64_t data_offset = 0;  // where the data after the header starts
  int64_t data_size = 0;

  // The entry named `name` (one that parse_file read).
  const TensorEntry& tensor(const std::string& name) const;
};

// Reads and checks the header of the file in `source`; reads none of the tensors' data.
ParsedFile parse_file(const ByteSource& source);

}  // namespace fastlstm::model_file
