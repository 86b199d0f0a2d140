#pragma once
// Runs a test body in a forked child (POSIX), under an alarm: a hang kills the child and fails
// the check instead of stalling the suite.
#if defined(__unix__)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

namespace fastlstm_test {

// True when body() returned true in the child. The body must not use doctest's checks (the child
// exits with _exit, reporting nothing but its status).
inline bool in_child(const std::function<bool()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(20);
    bool ok = false;
    try {
      ok = body();
    } catch (...) {
    }
    ::_exit(ok ? 0 : 1);
  }
  int status = -1;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace fastlstm_test
#endif
