// The model file (safetensors): a strict, bounded reader of its header, the inference of an LSTM
// from tensor names and shapes, and the writer. Nothing read from a file is trusted: every length,
// offset and shape is checked against the bytes actually there before it is used.
#include "fastlstm/model_file.hpp"

#include "checked_size.hpp"
#include "cpu_check.hpp"
#include "fork_safety.hpp"
#include "shape_string.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <mutex>
#include <set>
#include <locale>
#include <sstream>
#include <type_traits>

#include "fastlstm/lstm.hpp"

#if defined(__unix__) || defined(__APPLE__)
#define FASTLSTM_POSIX_FILES 1
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#else
#include <fstream>
#endif

namespace fastlstm {
namespace {

// A real LSTM's header is a few KB, a whole network's (thousands of tensors) well under 1 MB. The
// parsed header costs several times its size in memory, so a hostile one is refused past this.
constexpr uint64_t kMaxHeaderBytes = 16u << 20;
// More dimensions than any tensor of torch's has; bounds what one shape may cost to hold.
constexpr size_t kMaxRank = 64;
constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

[[noreturn]] void invalid(const std::string& message) { throw InvalidArgument(message); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// ------------------------------------------------------------------------------ safetensors dtypes

// Bits per element of every dtype safetensors defines.
int dtype_bits(const std::string& dtype) {
  static const std::map<std::string, int> bits{
      {"BOOL", 8}, {"U8", 8},   {"I8", 8},  {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},
      {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},  {"U32", 32},    {"F32", 32},    {"I64", 64},
      {"U64", 64}, {"F64", 64}, {"C64", 64},  {"F4", 4},    {"F6_E2M3", 6}, {"F6_E3M2", 6}};
  auto it = bits.find(dtype);
  return it == bits.end() ? 0 : it->second;
}

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

// ------------------------------------------------------------------------------ the header

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

// A JSON parser for exactly the header's schema: an object whose members are "__metadata__" (an
// object of strings) or tensors ({"dtype": string, "shape": [int, ...], "data_offsets": [int,
// int]}). Anything else, including duplicate keys, is an error. It never recurses, so its stack
// depth is fixed whatever the input, and it holds nothing beyond what the header spells out.
class HeaderParser {
 public:
  HeaderParser(const char* data, size_t size) : begin_(data), p_(data), end_(data + size) {}

  Header parse() {
    Header header;
    bool has_metadata = false;
    skip_space();
    expect('{', "the header must be a JSON object");
    members([&](std::string key) {
      if (key == "__metadata__") {
        if (has_metadata) fail("duplicate key " + quoted(key));
        has_metadata = true;
        parse_metadata(header.metadata);
      } else {
        header.tensors.push_back(parse_tensor(std::move(key)));
      }
    });
    skip_space();
    if (p_ != end_) fail("unexpected data after the header's JSON object");
    refuse_duplicate_names(header.tensors);
    return header;
  }

 private:
  // Sorted references, not a set of copies: a header of many small tensors costs little more to
  // check than to hold.
  static void refuse_duplicate_names(const std::vector<TensorEntry>& tensors) {
    std::vector<const std::string*> names;
    names.reserve(tensors.size());
    for (const TensorEntry& entry : tensors) names.push_back(&entry.name);
    std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (size_t i = 1; i < names.size(); ++i) {
      if (*names[i] == *names[i - 1]) invalid("bad header: duplicate key " + quoted(*names[i]));
    }
  }

  [[noreturn]] void fail(const std::string& what) const {
    invalid("bad header: " + what + " (at byte " + std::to_string(8 + (p_ - begin_)) + ")");
  }

  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }

  bool accept(char c) {
    skip_space();
    if (p_ != end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }

  void expect(char c, const char* what) {
    if (!accept(c)) fail(what);
  }

  // The members of an object whose '{' was read: on_member(key) parses each value.
  template <typename F>
  void members(F&& on_member) {
    if (accept('}')) return;
    do {
      std::string key = parse_string();
      expect(':', "expected ':' after an object key");
      on_member(std::move(key));
    } while (accept(','));
    expect('}', "expected ',' or '}' in an object");
  }

  void parse_metadata(std::map<std::string, std::string>& metadata) {
    expect('{', "__metadata__ must be an object of strings");
    members([&](std::string key) {
      std::string value = parse_string("__metadata__ values must be strings");
      if (!metadata.emplace(std::move(key), std::move(value)).second) fail("duplicate key in __metadata__");
    });
  }

  TensorEntry parse_tensor(std::string name) {
    TensorEntry entry;
    entry.name = std::move(name);
    const std::string context = "tensor " + quoted(entry.name);
    bool has_dtype = false, has_shape = false, has_offsets = false;
    expect('{', (context + " must be an object").c_str());
    members([&](const std::string& key) {
      if (key == "dtype") {
        if (has_dtype) fail(context + ": duplicate key 'dtype'");
        has_dtype = true;
        entry.dtype = parse_string((context + ": dtype must be a string").c_str());
      } else if (key == "shape") {
        if (has_shape) fail(context + ": duplicate key 'shape'");
        has_shape = true;
        entry.shape = parse_integers(context + ": shape", kMaxRank);
      } else if (key == "data_offsets") {
        if (has_offsets) fail(context + ": duplicate key 'data_offsets'");
        has_offsets = true;
        std::vector<int64_t> offsets = parse_integers(context + ": data_offsets", 2);
        if (offsets.size() != 2) fail(context + ": data_offsets must be [begin, end]");
        entry.begin = offsets[0];
        entry.end = offsets[1];
      } else {
        fail(context + ": unknown key " + quoted(key));
      }
    });
    if (!has_dtype) fail(context + ": no 'dtype'");
    if (!has_shape) fail(context + ": no 'shape'");
    if (!has_offsets) fail(context + ": no 'data_offsets'");
    return entry;
  }

  // An array of at most `limit` non-negative integers.
  std::vector<int64_t> parse_integers(const std::string& what, size_t limit) {
    std::vector<int64_t> values;
    expect('[', (what + " must be an array of integers").c_str());
    if (accept(']')) return values;
    do {
      if (values.size() == limit) fail(what + " has more than " + std::to_string(limit) + " entries");
      values.push_back(parse_integer(what));
    } while (accept(','));
    expect(']', (what + ": expected ',' or ']'").c_str());
    return values;
  }

  int64_t parse_integer(const std::string& what) {
    skip_space();
    if (p_ == end_ || *p_ < '0' || *p_ > '9') fail(what + " must hold non-negative integers");
    const char* start = p_;
    int64_t value = 0;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
      const int digit = *p_ - '0';
      if (value > (kMaxInt - digit) / 10) fail(what + ": integer too large");
      value = value * 10 + digit;
      ++p_;
    }
    if (*start == '0' && p_ - start > 1) fail(what + ": integer with a leading zero");
    if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) fail(what + " must hold integers");
    return value;
  }

  std::string parse_string(const char* what = "expected a string") {
    skip_space();
    if (p_ == end_ || *p_ != '"') fail(what);
    ++p_;
    std::string out;
    while (true) {
      if (p_ == end_) fail("unterminated string");
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c == '\\') {
        ++p_;
        parse_escape(out);
      } else if (c < 0x80) {
        out.push_back(static_cast<char>(c));
        ++p_;
      } else {
        copy_utf8_sequence(out);
      }
    }
  }

  void parse_escape(std::string& out) {
    if (p_ == end_) fail("unterminated string");
    const char c = *p_++;
    switch (c) {
      case '"': out.push_back('"'); return;
      case '\\': out.push_back('\\'); return;
      case '/': out.push_back('/'); return;
      case 'b': out.push_back('\b'); return;
      case 'f': out.push_back('\f'); return;
      case 'n': out.push_back('\n'); return;
      case 'r': out.push_back('\r'); return;
      case 't': out.push_back('\t'); return;
      case 'u': break;
      default: fail("invalid escape in a string");
    }
    uint32_t code = parse_hex4();
    if (code >= 0xDC00 && code <= 0xDFFF) fail("unpaired surrogate in a string");
    if (code >= 0xD800 && code <= 0xDBFF) {
      if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail("unpaired surrogate in a string");
      p_ += 2;
      const uint32_t low = parse_hex4();
      if (low < 0xDC00 || low > 0xDFFF) fail("unpaired surrogate in a string");
      code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(out, code);
  }

  uint32_t parse_hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = *p_++;
      int digit;
      if (h >= '0' && h <= '9') {
        digit = h - '0';
      } else if (h >= 'a' && h <= 'f') {
        digit = h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        digit = h - 'A' + 10;
      } else {
        fail("invalid \\u escape");
      }
      code = code * 16 + static_cast<uint32_t>(digit);
    }
    return code;
  }

  static void append_utf8(std::string& out, uint32_t code) {
    if (code < 0x80) {
      out.push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (code >> 6)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else if (code < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (code >> 12)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (code >> 18)));
      out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    }
  }

  // One well-formed UTF-8 sequence of 2 to 4 bytes (no overlong forms, surrogates or code points
  // beyond U+10FFFF), copied as it is.
  void copy_utf8_sequence(std::string& out) {
    const auto lead = static_cast<unsigned char>(*p_);
    int length;
    unsigned char low = 0x80, high = 0xBF;  // the range of the second byte
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    } else {
      fail("invalid UTF-8 in a string");
    }
    if (end_ - p_ < length) fail("invalid UTF-8 in a string");
    for (int i = 1; i < length; ++i) {
      const auto c = static_cast<unsigned char>(p_[i]);
      if (c < (i == 1 ? low : 0x80) || c > (i == 1 ? high : 0xBF)) fail("invalid UTF-8 in a string");
    }
    out.append(p_, static_cast<size_t>(length));
    p_ += length;
  }

  const char* begin_;
  const char* p_;
  const char* end_;
};

// Where a model file's bytes come from: memory, or a file read piece by piece (FileSource).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // `length` bytes at `offset` into `out`; the caller keeps offset + length <= size().
  virtual void read(uint64_t offset, size_t length, void* out) const = 0;
};

class MemorySource final : public ByteSource {
 public:
  MemorySource(const void* data, size_t size) : data_(static_cast<const unsigned char*>(data)), size_(size) {}
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, size_t length, void* out) const override {
    if (length > 0) std::memcpy(out, data_ + offset, length);
  }

 private:
  const unsigned char* data_;
  size_t size_;
};

// The header of a model file, every tensor checked against the length of the data after it.
struct ParsedFile {
  Header header;
  uint64_t data_offset = 0;  // where the data after the header starts
  int64_t data_size = 0;

  const TensorEntry& tensor(const std::string& name) const {
    for (const TensorEntry& entry : header.tensors) {
      if (entry.name == name) return entry;
    }
    invalid("no tensor " + quoted(name));  // infer_lstm only names tensors that exist
  }
};

int64_t entry_numel(const TensorEntry& entry) {
  return checked_numel(entry.shape, "tensor " + quoted(entry.name) + ": shape " + shape_string(entry.shape));
}

// Reads and checks the header; reads none of the tensors' data.
ParsedFile parse_file(const ByteSource& source) {
  const uint64_t size = source.size();
  if (size < 8) {
    invalid("truncated: " + std::to_string(size) + " bytes, less than the 8-byte header length");
  }
  unsigned char length[8];
  source.read(0, 8, length);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length[i];
  if (header_size > kMaxHeaderBytes) {
    invalid("header length " + std::to_string(header_size) + " exceeds the limit of " +
            std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_size > size - 8) {
    invalid("truncated: header length " + std::to_string(header_size) + " exceeds the " +
            std::to_string(size - 8) + " bytes after it");
  }
  std::string header(static_cast<size_t>(header_size), '\0');
  source.read(8, header.size(), header.data());
  ParsedFile parsed;
  parsed.header = HeaderParser(header.data(), header.size()).parse();
  parsed.data_offset = 8 + header_size;
  parsed.data_size = static_cast<int64_t>(size - 8 - header_size);

  std::vector<const TensorEntry*> by_offset;
  for (const TensorEntry& entry : parsed.header.tensors) {
    const std::string context = "tensor " + quoted(entry.name);
    const int bits = dtype_bits(entry.dtype);
    if (bits == 0) invalid(context + ": unknown dtype " + quoted(entry.dtype));
    if (entry.begin > entry.end) {
      invalid(context + ": data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
              "] end before they begin");
    }
    if (entry.end > parsed.data_size) {
      invalid(context + ": data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
              "] reach beyond the " + std::to_string(parsed.data_size) + " bytes of data (truncated file?)");
    }
    const int64_t numel = entry_numel(entry);
    const int64_t bytes_given = entry.end - entry.begin;
    const bool representable = numel <= kMaxInt / bits && bytes_given <= kMaxInt / 8;
    if (!representable || numel * bits != bytes_given * 8) {
      const std::string needed = representable && numel * bits % 8 == 0
                                     ? "needs " + std::to_string(numel * bits / 8) + " bytes"
                                     : "cannot fill whole bytes";
      invalid(context + ": shape " + shape_string(entry.shape) + " of " + entry.dtype + " " +
              (numel > kMaxInt / bits ? std::string("is too large") : needed) + " but data_offsets [" +
              std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "] hold " +
              std::to_string(bytes_given));
    }
    if (bytes_given > 0) by_offset.push_back(&entry);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      invalid("tensors " + quoted(by_offset[i - 1]->name) + " and " + quoted(by_offset[i]->name) + " overlap");
    }
  }
  return parsed;
}

// ------------------------------------------------------------------------------ inference

// A parameter name of torch.nn.LSTM (weight_ih_l3_reverse) or torch.nn.LSTMCell (weight_ih).
struct ParsedName {
  ParameterKind kind = ParameterKind::weight_ih;
  bool cell = false;
  int64_t layer = 0;
  int64_t direction = 0;
};

bool parse_parameter_name(const std::string& name, ParsedName* out) {
  static const std::pair<const char*, ParameterKind> kinds[] = {{"weight_ih", ParameterKind::weight_ih},
                                                                {"weight_hh", ParameterKind::weight_hh},
                                                                {"bias_ih", ParameterKind::bias_ih},
                                                                {"bias_hh", ParameterKind::bias_hh},
                                                                {"weight_hr", ParameterKind::weight_hr}};
  for (const auto& [stem, kind] : kinds) {
    const size_t n = std::strlen(stem);
    if (name.compare(0, n, stem) != 0) continue;
    std::string rest = name.substr(n);
    out->kind = kind;
    if (rest.empty()) {  // LSTMCell has no projection
      out->cell = true;
      return kind != ParameterKind::weight_hr;
    }
    out->cell = false;
    out->direction = 0;
    const std::string reverse = "_reverse";
    if (rest.size() > reverse.size() && rest.compare(rest.size() - reverse.size(), reverse.size(), reverse) == 0) {
      out->direction = 1;
      rest.resize(rest.size() - reverse.size());
    }
    if (rest.size() < 3 || rest.compare(0, 2, "_l") != 0) return false;
    const std::string digits = rest.substr(2);
    if (digits.size() > 18 || (digits.size() > 1 && digits[0] == '0')) return false;
    int64_t layer = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      layer = layer * 10 + (c - '0');
    }
    out->layer = layer;
    return true;
  }
  return false;
}

std::string config_string(const LstmConfig& c) {
  std::ostringstream out;
  out << "input_size=" << c.input_size << ", hidden_size=" << c.hidden_size << ", num_layers=" << c.num_layers
      << ", bias=" << (c.bias ? "True" : "False") << ", bidirectional=" << (c.bidirectional ? "True" : "False")
      << ", proj_size=" << c.proj_size;
  return out.str();
}

// ------------------------------------------------------------------------------ metadata

constexpr const char* kConfigKeys[] = {"input_size", "hidden_size",   "num_layers", "bias",
                                       "batch_first", "bidirectional", "proj_size"};

int64_t metadata_int(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const std::string& text = metadata.at(key);
  bool ok = !text.empty() && text.size() <= 18;
  int64_t value = 0;
  for (char c : text) {
    ok = ok && c >= '0' && c <= '9';
    if (ok) value = value * 10 + (c - '0');
  }
  if (!ok) invalid("metadata " + key + " = " + quoted(text) + " is not a non-negative integer");
  return value;
}

bool metadata_bool(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const std::string& text = metadata.at(key);
  if (text == "true" || text == "True" || text == "1") return true;
  if (text == "false" || text == "False" || text == "0") return false;
  invalid("metadata " + key + " = " + quoted(text) + " is not 'true' or 'false'");
}

// A decimal number, read as C reads it whatever the program's locale (a service may have set
// one whose decimal separator is a comma); false unless all of `text` is the number.
bool parse_decimal(const std::string& text, double* value) {
  if (text.empty() || text.size() > 32 || text.find_first_not_of("0123456789.eE+-") != std::string::npos) {
    return false;
  }
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  in >> *value;
  return !in.fail() && in.peek() == std::char_traits<char>::eof();
}

// A number in [0, 1], as exact_decimal writes it.
double metadata_probability(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const std::string& text = metadata.at(key);
  double value = 0;
  if (!parse_decimal(text, &value) || !(value >= 0 && value <= 1)) {
    invalid("metadata " + key + " = " + quoted(text) + " is not a number in [0, 1]");
  }
  return value;
}

// Checks the configuration in the metadata, if any, against the one the tensors give, and takes
// what they cannot give (batch_first, dropout, dtype) from it.
void apply_metadata(const std::map<std::string, std::string>& metadata, ModelFileInfo& info) {
  std::vector<std::string> present, absent;
  for (const char* key : kConfigKeys) (metadata.count(key) ? present : absent).push_back(key);
  if (!present.empty() && !absent.empty()) {
    invalid("metadata has " + present.front() + " but no " + absent.front() +
            " (a configuration in the metadata must be complete)");
  }
  if (!present.empty()) {
    LstmConfig stated;
    stated.input_size = metadata_int(metadata, "input_size");
    stated.hidden_size = metadata_int(metadata, "hidden_size");
    stated.num_layers = metadata_int(metadata, "num_layers");
    stated.bias = metadata_bool(metadata, "bias");
    stated.bidirectional = metadata_bool(metadata, "bidirectional");
    stated.proj_size = metadata_int(metadata, "proj_size");
    const LstmConfig& found = info.config;
    if (!stated.same_parameters(found)) {
      invalid("the metadata describes an LSTM with " + config_string(stated) + " but the tensors hold one with " +
              config_string(found));
    }
    info.config.batch_first = metadata_bool(metadata, "batch_first");
    if (metadata.count("dropout")) info.config.dropout = metadata_probability(metadata, "dropout");
  }
  auto dtype = metadata.find("dtype");
  if (!present.empty() && dtype != metadata.end()) {
    if (dtype->second == "float32") {
      info.dtype = DType::float32;
    } else if (dtype->second == "float64") {
      info.dtype = DType::float64;
    } else {
      invalid("metadata dtype = " + quoted(dtype->second) + " is not 'float32' or 'float64'");
    }
  }
}

// ------------------------------------------------------------------------------ reading

// What inspect and read share: the parsed file, its LSTM and the file's description of it.
struct FileLstm {
  ParsedFile file;
  StateDictLstm lstm;
  ModelFileInfo info;
};

FileLstm find_file_lstm(const ByteSource& source, const std::string& prefix) {
  FileLstm found;
  found.file = parse_file(source);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorEntry& entry : found.file.header.tensors) shapes.emplace(entry.name, entry.shape);
  found.lstm = infer_lstm(shapes, prefix);
  bool all_f64 = true;
  for (const auto& [parameter, key] : found.lstm.keys) {
    const TensorEntry& entry = found.file.tensor(key);
    if (entry.dtype != "F32" && entry.dtype != "F64") {
      invalid("tensor " + quoted(key) + " has dtype " + entry.dtype + "; fastlstm reads F32 and F64");
    }
    all_f64 = all_f64 && entry.dtype == "F64";
  }
  found.info.config = found.lstm.config;
  found.info.dtype = all_f64 ? DType::float64 : DType::float32;
  apply_metadata(found.file.header.metadata, found.info);
  return found;
}

// A tensor of `n` elements of S at `offset` of `source`, cast to T (little-endian in the file).
template <typename T, typename S>
void copy_tensor(const ByteSource& source, uint64_t offset, std::vector<T>& values) {
  const size_t n = values.size();
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if constexpr (std::is_same_v<T, S>) {
    source.read(offset, n * sizeof(T), values.data());
    return;
  }
#endif
  // A piece at a time through a small buffer: no second copy of the tensor.
  constexpr size_t kPiece = 1024;  // 8 KB of stack at most
  unsigned char raw[kPiece * sizeof(S)];
  for (size_t i0 = 0; i0 < n; i0 += kPiece) {
    const size_t count = std::min(kPiece, n - i0);
    source.read(offset + i0 * sizeof(S), count * sizeof(S), raw);
    for (size_t i = 0; i < count; ++i) {
      unsigned char element[sizeof(S)];
      std::memcpy(element, raw + i * sizeof(S), sizeof(S));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
      std::reverse(element, element + sizeof(S));
#endif
      S value;
      std::memcpy(&value, element, sizeof(S));
      values[i0 + i] = static_cast<T>(value);
    }
  }
}

template <typename T>
LstmWeights<T> read_weights(const ByteSource& source, const FileLstm& found) {
  LstmWeights<T> weights(found.info.config);
  for (const auto& [parameter, key] : found.lstm.keys) {
    const TensorEntry& entry = found.file.tensor(key);
    std::vector<T>& values = weights.find(parameter)->values;
    const uint64_t offset = found.file.data_offset + static_cast<uint64_t>(entry.begin);
    if (entry.dtype == "F32") {
      copy_tensor<T, float>(source, offset, values);
    } else {
      copy_tensor<T, double>(source, offset, values);
    }
  }
  return weights;
}

// Runs `body` and puts "<name>: " before the message of any InvalidArgument it throws.
template <typename F>
auto naming_file(const std::string& name, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const InvalidArgument& error) {
    throw InvalidArgument(name + ": " + error.what());
  }
}

[[noreturn]] void file_error(const std::string& what, const std::string& path, int errno_value) {
  throw FileError(what + " " + quoted(path) + ": " + std::strerror(errno_value), path, errno_value);
}

// A path as the system takes it: a NUL byte would end it early, so that another file than the
// one named would be read or written.
const std::string& checked_path(const std::string& path) {
  const size_t nul = path.find('\0');
  if (nul != std::string::npos) {
    invalid("path: contains a NUL byte (at position " + std::to_string(nul) + "): " + quoted(path.substr(0, nul)) +
            " followed by " + std::to_string(path.size() - nul) + " more bytes");
  }
  return path;
}

#if defined(FASTLSTM_POSIX_FILES)
// What a file that is not a regular one is, for the message that refuses it.
const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}
#endif

// A file read with pread where the system has it, not mapped: a file that another process
// truncates while it is read (a copy over it, say) gives an error here, where a mapping would
// give SIGBUS. Only regular files are read: opened without blocking (a FIFO's open would wait for
// a writer) and refused at once when fstat says they are anything else. Thread-safe: reads carry
// their own offsets.
class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(checked_path(path)) {
#if defined(FASTLSTM_POSIX_FILES)
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd_ < 0) file_error("cannot open", path, errno);
    struct stat status;
    if (::fstat(fd_, &status) != 0) fail("cannot read", errno);
    if (!S_ISREG(status.st_mode)) {
      const int e = S_ISDIR(status.st_mode) ? EISDIR : EINVAL;
      ::close(fd_);
      throw FileError("cannot read " + quoted(path) + ": " + file_kind(status.st_mode) +
                          ", not a regular file (model files are read from regular files only)",
                      path, e);
    }
    size_ = static_cast<uint64_t>(status.st_size);
#else
    in_.open(path, std::ios::binary | std::ios::ate);
    if (!in_) file_error("cannot open", path, errno);
    size_ = static_cast<uint64_t>(in_.tellg());
#endif
  }
  ~FileSource() override {
#if defined(FASTLSTM_POSIX_FILES)
    if (fd_ >= 0) ::close(fd_);
#endif
  }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return size_; }

  void read(uint64_t offset, size_t length, void* out) const override {
    auto* bytes = static_cast<char*>(out);
#if defined(FASTLSTM_POSIX_FILES)
    while (length > 0) {
      const size_t piece = std::min<size_t>(length, size_t(1) << 30);
      const ssize_t got = ::pread(fd_, bytes, piece, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) file_error("cannot read", path_, errno);
      if (got == 0) shrank(offset);
      bytes += got;
      offset += static_cast<uint64_t>(got);
      length -= static_cast<size_t>(got);
    }
#else
    std::lock_guard<std::mutex> lock(mutex_);
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(bytes, static_cast<std::streamsize>(length));
    if (static_cast<size_t>(in_.gcount()) != length) shrank(offset + static_cast<uint64_t>(in_.gcount()));
#endif
  }

 private:
#if defined(FASTLSTM_POSIX_FILES)
  // For the constructor, whose failure runs no destructor.
  [[noreturn]] void fail(const char* what, int errno_value) const {
    ::close(fd_);
    file_error(what, path_, errno_value);
  }
#endif
  [[noreturn]] void shrank(uint64_t at) const {
    throw FileError("cannot read " + quoted(path_) + ": it ended at byte " + std::to_string(at) + " of the " +
                        std::to_string(size_) + " it had when opened (changed while being read?)",
                    path_, EIO);
  }

  std::string path_;
  uint64_t size_ = 0;
#if defined(FASTLSTM_POSIX_FILES)
  int fd_ = -1;
#else
  mutable std::ifstream in_;
  mutable std::mutex mutex_;
#endif
};

// ------------------------------------------------------------------------------ writing

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

// The shortest decimal that reads back as `value` ("0", "0.25", "0.1"), in any locale.
std::string exact_decimal(double value) {
  std::string text;
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream out;
    out.imbue(std::locale::classic());
    out.precision(digits);
    out << value;
    text = out.str();
    double back = 0;
    if (parse_decimal(text, &back) && back == value) break;
  }
  return text;
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

StateDictLstm infer_lstm(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix) {
  std::map<std::string, ParsedName> lstm_keys, cell_keys;  // key -> what it names
  std::vector<std::string> unexpected;
  std::set<std::string> other_prefixes;  // where LSTM parameters are, when not under `prefix`
  for (const auto& [key, shape] : shapes) {
    ParsedName parsed;
    const bool under_prefix = key.compare(0, prefix.size(), prefix) == 0 && key.size() > prefix.size() &&
                              key.find('.', prefix.size()) == std::string::npos;
    if (!under_prefix) {
      const size_t dot = key.rfind('.');
      const std::string stem = dot == std::string::npos ? key : key.substr(dot + 1);
      if (parse_parameter_name(stem, &parsed)) other_prefixes.insert(key.substr(0, key.size() - stem.size()));
      continue;
    }
    if (!parse_parameter_name(key.substr(prefix.size()), &parsed)) {
      unexpected.push_back(key);
    } else {
      (parsed.cell ? cell_keys : lstm_keys).emplace(key, parsed);
    }
  }
  if (lstm_keys.empty() && cell_keys.empty()) {
    std::string message = "no LSTM parameters under prefix " + quoted(prefix) + " (no key " +
                          quoted(prefix + "weight_ih_l0") + " or " + quoted(prefix + "weight_ih") + ")";
    if (!other_prefixes.empty()) {
      message += "; there are LSTM parameters under prefix";
      int listed = 0;
      for (const std::string& other : other_prefixes) {
        if (listed++ == 3) {
          message += ", ...";
          break;
        }
        message += (listed > 1 ? ", " : " ") + quoted(other);
      }
    }
    invalid(message);
  }
  if (!lstm_keys.empty() && !cell_keys.empty()) {
    invalid("keys " + quoted(lstm_keys.begin()->first) + " (torch.nn.LSTM) and " + quoted(cell_keys.begin()->first) +
            " (torch.nn.LSTMCell) mix two kinds of module");
  }
  if (!unexpected.empty()) invalid("unexpected key " + quoted(unexpected.front()) + ": not an LSTM parameter");

  // Each parameter of the inferred configuration, by torch's name, and the key that holds it.
  const bool cell = !cell_keys.empty();
  std::map<std::string, std::string> key_of;
  std::set<int64_t> layers;
  LstmConfig config;
  config.bias = false;
  const std::vector<int64_t>* proj_shape = nullptr;
  for (const auto& [key, parsed] : cell ? cell_keys : lstm_keys) {
    std::string name = key.substr(prefix.size()) + (cell ? "_l0" : "");
    key_of.emplace(name, key);
    layers.insert(parsed.layer);
    config.bidirectional = config.bidirectional || parsed.direction == 1;
    config.bias = config.bias || parsed.kind == ParameterKind::bias_ih || parsed.kind == ParameterKind::bias_hh;
    if (parsed.kind == ParameterKind::weight_hr && !proj_shape) proj_shape = &shapes.at(key);
  }
  auto missing = [&](const std::string& name) -> std::string {
    const std::string key = cell ? prefix + name.substr(0, name.size() - 3) : prefix + name;
    return "missing key " + quoted(key);
  };
  int64_t expected_layer = 0;
  for (int64_t layer : layers) {
    if (layer != expected_layer) invalid(missing("weight_ih_l" + std::to_string(expected_layer)));
    ++expected_layer;
  }
  config.num_layers = expected_layer;
  auto first = key_of.find("weight_ih_l0");
  if (first == key_of.end()) invalid(missing("weight_ih_l0"));
  const std::vector<int64_t>& ih = shapes.at(first->second);
  if (ih.size() != 2 || ih[0] % 4 != 0 || ih[0] == 0 || ih[1] == 0) {
    invalid(quoted(first->second) + " has shape " + shape_string(ih) + ", expected (4 * hidden_size, input_size)");
  }
  config.hidden_size = ih[0] / 4;
  config.input_size = ih[1];
  if (proj_shape) {
    if (proj_shape->size() != 2 || proj_shape->front() == 0) {
      invalid("weight_hr has shape " + shape_string(*proj_shape) + ", expected (proj_size, hidden_size)");
    }
    config.proj_size = proj_shape->front();
  }
  try {
    config.validate();
  } catch (const InvalidArgument& error) {
    invalid(std::string("the tensors give an invalid LSTM (") + config_string(config) + "): " + error.what());
  }

  StateDictLstm result;
  result.config = config;
  for (const ParameterSpec& spec : parameter_specs(config)) {
    auto it = key_of.find(spec.name);
    if (it == key_of.end()) invalid(missing(spec.name));
    const std::vector<int64_t>& shape = shapes.at(it->second);
    if (shape != spec.shape) {
      invalid(quoted(it->second) + " has shape " + shape_string(shape) + ", expected " + shape_string(spec.shape) +
              " for an LSTM with " + config_string(config));
    }
    result.keys.emplace_back(spec.name, it->second);
    key_of.erase(it);
  }
  if (!key_of.empty()) {
    invalid("unexpected key " + quoted(key_of.begin()->second) + " for an LSTM with " + config_string(config));
  }
  return result;
}

ModelFileInfo inspect_model_bytes(const void* data, size_t size, const std::string& prefix,
                                  const std::string& name) {
  const MemorySource source(data, size);
  return naming_file(name, [&] { return find_file_lstm(source, prefix).info; });
}

template <typename T>
LstmWeights<T> read_model_bytes(const void* data, size_t size, const std::string& prefix, const std::string& name) {
  const MemorySource source(data, size);
  return naming_file(name, [&] { return read_weights<T>(source, find_file_lstm(source, prefix)); });
}

struct ModelFileReader::Open {
  explicit Open(const std::string& path_) : path(path_), source(path_) {}
  std::string path;
  FileSource source;
  FileLstm found;
};

ModelFileReader::ModelFileReader(const std::string& path, const std::string& prefix)
    : open_(std::make_unique<Open>(path)) {
  open_->found = naming_file(path, [&] { return find_file_lstm(open_->source, prefix); });
}

ModelFileReader::~ModelFileReader() = default;
ModelFileReader::ModelFileReader(ModelFileReader&&) noexcept = default;
ModelFileReader& ModelFileReader::operator=(ModelFileReader&&) noexcept = default;

const ModelFileInfo& ModelFileReader::info() const { return open_->found.info; }

template <typename T>
LstmWeights<T> ModelFileReader::read_weights() const {
  return naming_file(open_->path, [&] { return fastlstm::read_weights<T>(open_->source, open_->found); });
}

ModelFileInfo inspect_model_file(const std::string& path, const std::string& prefix) {
  return ModelFileReader(path, prefix).info();
}

template <typename T>
LstmWeights<T> read_model_file(const std::string& path, const std::string& prefix) {
  return ModelFileReader(path, prefix).read_weights<T>();
}

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
Lstm<T> Lstm<T>::load(const std::string& path, const std::string& prefix, int num_threads) {
  detail::require_supported_cpu();
  return Lstm<T>(read_model_file<T>(path, prefix), num_threads);
}

template <typename T>
void Lstm<T>::save(const std::string& path) const {
  std::lock_guard<ForkSafeMutex> lock(*mutex_);  // no weight update while the file is written
  save_weights(path, weights_);
}

template LstmWeights<float> read_model_file<float>(const std::string&, const std::string&);
template LstmWeights<double> read_model_file<double>(const std::string&, const std::string&);
template LstmWeights<float> read_model_bytes<float>(const void*, size_t, const std::string&, const std::string&);
template LstmWeights<double> read_model_bytes<double>(const void*, size_t, const std::string&, const std::string&);
template std::string model_file_bytes<float>(const LstmWeights<float>&);
template std::string model_file_bytes<double>(const LstmWeights<double>&);
template void save_model_file<float>(const std::string&, const LstmWeights<float>&);
template void save_model_file<double>(const std::string&, const LstmWeights<double>&);
template LstmWeights<float> ModelFileReader::read_weights<float>() const;
template LstmWeights<double> ModelFileReader::read_weights<double>() const;
template Lstm<float> Lstm<float>::load(const std::string&, const std::string&, int);
template Lstm<double> Lstm<double>::load(const std::string&, const std::string&, int);
template void Lstm<float>::save(const std::string&) const;
template void Lstm<double>::save(const std::string&) const;

}  // namespace fastlstm
