#pragma once
// Where a model file's bytes come from: memory, or a file read piece by piece.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#define FASTLSTM_POSIX_FILES 1
#else
#include <fstream>
#include <mutex>
#endif

namespace fastlstm::model_file {

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

// A file read with pread where the system has it, not mapped: a file that another process
// truncates while it is read (a copy over it, say) gives an error here, where a mapping would
// give SIGBUS. Only regular files are read: opened without blocking (a FIFO's open would wait for
// a writer) and refused at once when fstat says they are anything else. Thread-safe: reads carry
// their own offsets. Throws FileError, or InvalidArgument for a path with a NUL byte.
class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path);
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return size_; }
  void read(uint64_t offset, size_t length, void* out) const override;

 private:
  [[noreturn]] void fail(const char* what, int errno_value) const;  // for the constructor
  [[noreturn]] void shrank(uint64_t at) const;

  std::string path_;
  uint64_t size_ = 0;
#if defined(FASTLSTM_POSIX_FILES)
  int fd_ = -1;
#else
  mutable std::ifstream in_;
  mutable std::mutex mutex_;
#endif
};

[[noreturn]] void file_error(const std::string& what, const std::string& path, int errno_value);

// `path`, or InvalidArgument when it holds a NUL byte: the system would end the path there, so that
// another file than the one named would be read or written.
const std::string& checked_path(const std::string& path);

}  // namespace fastlstm::model_file
