#include "byte_source.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#if defined(FASTLSTM_POSIX_FILES)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "common.hpp"

namespace fastlstm::model_file {
namespace {

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

}  // namespace

[[noreturn]] void file_error(const std::string& what, const std::string& path, int errno_value) {
  throw FileError(what + " " + quote(path) + ": " + std::strerror(errno_value), path, errno_value);
}

const std::string& checked_path(const std::string& path) {
  const size_t nul = path.find('\0');
  if (nul != std::string::npos) {
    invalid("path: contains a NUL byte (at position " + std::to_string(nul) + "): " + quote(path.substr(0, nul)) +
            " followed by " + std::to_string(path.size() - nul) + " more bytes");
  }
  return path;
}

FileSource::FileSource(const std::string& path) : path_(checked_path(path)) {
#if defined(FASTLSTM_POSIX_FILES)
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd_ < 0) file_error("cannot open", path, errno);
  struct stat status;
  if (::fstat(fd_, &status) != 0) fail("cannot read", errno);
  if (!S_ISREG(status.st_mode)) {
    const int e = S_ISDIR(status.st_mode) ? EISDIR : EINVAL;
    ::close(fd_);
    throw FileError("cannot read " + quote(path) + ": " + file_kind(status.st_mode) +
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

FileSource::~FileSource() {
#if defined(FASTLSTM_POSIX_FILES)
  if (fd_ >= 0) ::close(fd_);
#endif
}

void FileSource::read(uint64_t offset, size_t length, void* out) const {
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

void FileSource::fail(const char* what, int errno_value) const {
#if defined(FASTLSTM_POSIX_FILES)
  ::close(fd_);
#endif
  file_error(what, path_, errno_value);
}

void FileSource::shrank(uint64_t at) const {
  throw FileError("cannot read " + quote(path_) + ": it ended at byte " + std::to_string(at) + " of the " +
                      std::to_string(size_) + " it had when opened (changed while being read?)",
                  path_, EIO);
}

}  // namespace fastlstm::model_file
