#pragma once
// Exceptions thrown by fastlstm. Every public call reports misuse with one of these; none of them
// leaves a model half-modified.
#include <stdexcept>
#include <string>

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

}  // namespace fastlstm
