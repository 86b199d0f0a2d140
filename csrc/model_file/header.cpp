// The header's JSON is read by nlohmann/json's SAX parser: a handler checks the schema as the
// parser reports each value, so no document is built, nothing but what the header spells out is
// held, and nesting is refused where the schema has none (the parser itself does not recurse).
#include "header.hpp"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "checked_size.hpp"
#include "common.hpp"
#include "shape_string.hpp"

namespace fastlstm::model_file {
namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

// Bits per element of every dtype safetensors defines.
int dtype_bits(const std::string& dtype) {
  static const std::map<std::string, int> bits{
      {"BOOL", 8}, {"U8", 8},   {"I8", 8},  {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},
      {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},  {"U32", 32},    {"F32", 32},    {"I64", 64},
      {"U64", 64}, {"F64", 64}, {"C64", 64},  {"F4", 4},    {"F6_E2M3", 6}, {"F6_E3M2", 6}};
  auto it = bits.find(dtype);
  return it == bits.end() ? 0 : it->second;
}

[[noreturn]] void bad_header(const std::string& what) { invalid("bad header: " + what); }

// `text` with every byte outside printable ASCII written as \xNN: the parser's messages quote what
// it last read, which in a malformed file need not be valid UTF-8 (nor would a message be that
// carried it).
std::string printable(const std::string& text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7F) {
      out.push_back(c);
    } else {
      static const char digits[] = "0123456789abcdef";
      out += {'\\', 'x', digits[byte >> 4], digits[byte & 0xF]};
    }
  }
  return out;
}

// Receives the parser's events and keeps the header they spell, refusing anything outside its
// schema with a message that says where.
class HeaderHandler : public nlohmann::json_sax<nlohmann::json> {
 public:
  Header header;

  bool start_object(std::size_t) override {
    switch (where_) {
      case Where::start: where_ = Where::top; return true;
      case Where::top: return start_member();
      default: unexpected();
    }
  }

  bool end_object() override {
    if (where_ == Where::metadata) {
      where_ = Where::top;
    } else if (where_ == Where::tensor) {
      end_tensor();
    } else {
      where_ = Where::done;  // the top object; the parser refuses anything after it
    }
    return true;
  }

  bool key(string_t& key) override {
    if (where_ != Where::tensor) {
      key_ = std::move(key);
      return true;
    }
    const std::string context = "tensor " + quote(entry_.name);
    bool* seen = key == "dtype" ? &has_dtype_ : key == "shape" ? &has_shape_ : key == "data_offsets" ? &has_offsets_
                                                                                                       : nullptr;
    if (!seen) bad_header(context + ": unknown key " + quote(key));
    if (*seen) bad_header(context + ": duplicate key " + quote(key));
    *seen = true;
    key_ = std::move(key);
    return true;
  }

  bool string(string_t& value) override {
    if (where_ == Where::metadata) {
      if (!header.metadata.emplace(std::move(key_), std::move(value)).second) bad_header("duplicate key in __metadata__");
      return true;
    }
    if (where_ == Where::tensor && key_ == "dtype") {
      entry_.dtype = std::move(value);
      return true;
    }
    unexpected();
  }

  bool start_array(std::size_t) override {
    if (where_ != Where::tensor || (key_ != "shape" && key_ != "data_offsets")) unexpected();
    where_ = Where::list;
    list_.clear();
    return true;
  }

  bool end_array() override {
    where_ = Where::tensor;
    if (key_ == "shape") {
      entry_.shape = std::move(list_);
    } else {
      if (list_.size() != 2) bad_header("tensor " + quote(entry_.name) + ": data_offsets must be [begin, end]");
      entry_.begin = list_[0];
      entry_.end = list_[1];
    }
    return true;
  }

  bool number_unsigned(number_unsigned_t value) override {
    if (where_ != Where::list) unexpected();
    if (value > static_cast<number_unsigned_t>(kMaxInt)) bad_header(list_context() + ": integer too large");
    const size_t limit = key_ == "shape" ? kMaxRank : 2;
    if (list_.size() == limit) {
      bad_header(list_context() + " has more than " + std::to_string(limit) + " entries");
    }
    list_.push_back(static_cast<int64_t>(value));
    return true;
  }

  bool number_integer(number_integer_t value) override {
    if (value >= 0) return number_unsigned(static_cast<number_unsigned_t>(value));
    unexpected();  // negative
  }

  bool number_float(number_float_t, const string_t& text) override {
    if (where_ != Where::list) unexpected();
    // The parser reports integers beyond 64 bits as floats: say which it was.
    const bool digits = std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    bad_header(list_context() + (digits ? ": integer too large" : " must hold integers"));
  }

  bool null() override { unexpected(); }
  bool boolean(bool) override { unexpected(); }
  bool binary(binary_t&) override { unexpected(); }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) override {
    // nlohmann's message, less its id and line/column prefix, and the position in the file.
    std::string what = error.what();
    const size_t colon = what.find(": ");
    if (colon != std::string::npos) what = what.substr(colon + 2);
    bad_header(printable(what) + " (at byte " + std::to_string(8 + position) + ")");
  }

 private:
  enum class Where { start, top, metadata, tensor, list, done };

  bool start_member() {
    if (key_ == "__metadata__") {
      if (has_metadata_) bad_header("duplicate key '__metadata__'");
      has_metadata_ = true;
      where_ = Where::metadata;
      return true;
    }
    where_ = Where::tensor;
    entry_ = TensorEntry();
    entry_.name = std::move(key_);
    has_dtype_ = has_shape_ = has_offsets_ = false;
    return true;
  }

  void end_tensor() {
    const std::string context = "tensor " + quote(entry_.name);
    if (!has_dtype_) bad_header(context + ": no 'dtype'");
    if (!has_shape_) bad_header(context + ": no 'shape'");
    if (!has_offsets_) bad_header(context + ": no 'data_offsets'");
    header.tensors.push_back(std::move(entry_));
    where_ = Where::top;
  }

  std::string list_context() const { return "tensor " + quote(entry_.name) + ": " + key_; }

  // A value the schema has no place for, named after where it came.
  [[noreturn]] void unexpected() const {
    switch (where_) {
      case Where::start: bad_header("the header must be a JSON object");
      case Where::top:
        if (key_ == "__metadata__") bad_header("__metadata__ must be an object of strings");
        bad_header("tensor " + quote(key_) + " must be an object");
      case Where::metadata: bad_header("__metadata__ values must be strings");
      case Where::tensor:
        if (key_ == "dtype") bad_header("tensor " + quote(entry_.name) + ": dtype must be a string");
        bad_header(list_context() + " must be an array of integers");
      default: bad_header(list_context() + " must hold non-negative integers");
    }
  }

  Where where_ = Where::start;
  std::string key_;  // the last key read, of the object being read
  bool has_metadata_ = false;
  TensorEntry entry_;
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  std::vector<int64_t> list_;  // the shape or data_offsets being read
};

// Sorted references, not a set of copies: a header of many small tensors costs little more to
// check than to hold.
void refuse_duplicate_names(const std::vector<TensorEntry>& tensors) {
  std::vector<const std::string*> names;
  names.reserve(tensors.size());
  for (const TensorEntry& entry : tensors) names.push_back(&entry.name);
  std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
  for (size_t i = 1; i < names.size(); ++i) {
    if (*names[i] == *names[i - 1]) bad_header("duplicate key " + quote(*names[i]));
  }
}

int64_t entry_numel(const TensorEntry& entry) {
  const std::string what = "tensor " + quote(entry.name) + ": shape " + shape_string(entry.shape);
  return checked_numel(entry.shape, what.c_str());
}

}  // namespace

Header parse_header(const char* text, size_t size) {
  // Whatever else it holds, a header that does not open an object is not one (an empty one, a
  // deep nest of arrays): said as such, not as the parser's first complaint.
  const char* first = std::find_if(text, text + size, [](char c) { return c != ' ' && c != '\t' && c != '\n' && c != '\r'; });
  if (first == text + size || *first != '{') bad_header("the header must be a JSON object");
  HeaderHandler handler;
  nlohmann::json::sax_parse(text, text + size, &handler);
  refuse_duplicate_names(handler.header.tensors);
  return std::move(handler.header);
}

const TensorEntry& ParsedFile::tensor(const std::string& name) const {
  for (const TensorEntry& entry : header.tensors) {
    if (entry.name == name) return entry;
  }
  invalid("no tensor " + quote(name));  // infer_lstm only names tensors that exist
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
  parsed.header = parse_header(header.data(), header.size());
  parsed.data_offset = 8 + header_size;
  parsed.data_size = static_cast<int64_t>(size - 8 - header_size);

  std::vector<const TensorEntry*> by_offset;
  for (const TensorEntry& entry : parsed.header.tensors) {
    const std::string context = "tensor " + quote(entry.name);
    const int bits = dtype_bits(entry.dtype);
    if (bits == 0) invalid(context + ": unknown dtype " + quote(entry.dtype));
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
      invalid("tensors " + quote(by_offset[i - 1]->name) + " and " + quote(by_offset[i]->name) + " overlap");
    }
  }
  return parsed;
}

}  // namespace fastlstm::model_file
