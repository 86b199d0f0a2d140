#pragma once
// Exceptions thrown by fastlstm. Every public call reports misuse with one of these; none of them
// leaves a model half-modified.
#include <stdexcept>
#include <string>
#include <utility>

namespace fastlstm {

// Base of every fastlstm exception.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An argument has the wrong shape, size or value; the message names the argument.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// The operating system refused to open, read or write a file; errno_value() says why (0
// when no errno applies).
class FileError : public Error {
 public:
  FileError(const std::string& message, std::string path, int errno_value)
      : Error(message), path_(std::move(path)), errno_(errno_value) {}
  const std::string& path() const { return path_; }
  int errno_value() const { return errno_; }

 private:
  std::string path_;
  int errno_;
};

}  // namespace fastlstm
