// The default thread count: FASTLSTM_NUM_THREADS, else the affinity mask capped by the cgroup's
// CPU quota (a fake cgroup file system under FASTLSTM_CGROUP_ROOT).
#include <cstdlib>
#include <fstream>
#include <string>

#include "helpers.hpp"

using fastlstm::thread_budget;
using fastlstm_test::TempDir;

namespace {

// Sets an environment variable for a scope, then restores what was there.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnvironment() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text << "\n";
}

}  // namespace

TEST_CASE("thread budget: FASTLSTM_NUM_THREADS, when a positive integer, is the count") {
  {
    ScopedEnvironment threads("FASTLSTM_NUM_THREADS", "3");
    CHECK(thread_budget().threads == 3);
    CHECK(thread_budget().source == "FASTLSTM_NUM_THREADS=3");
    CHECK(fastlstm::default_num_threads() == 3);
    const fastlstm::Lstm<float> model(fastlstm_test::make_config(2, 3), 0);
    CHECK(model.num_threads() == 3);
  }
  for (const char* ignored : {"0", "-2", "two", "3x", ""}) {
    ScopedEnvironment threads("FASTLSTM_NUM_THREADS", ignored);
    CHECK(thread_budget().source.find("FASTLSTM_NUM_THREADS") == std::string::npos);
  }
}

TEST_CASE("thread budget: a cgroup CPU quota caps the affinity mask, rounded up") {
  TempDir root;
  ScopedEnvironment cgroups("FASTLSTM_CGROUP_ROOT", root.path.string());
  const int cpus = thread_budget().threads;  // no quota files: the affinity mask
  CHECK(thread_budget().source.find("affinity mask") != std::string::npos);
  write(root.path / "cpu.max", "max 100000");
  CHECK(thread_budget().threads == cpus);  // no limit
  write(root.path / "cpu.max", "50000 100000");
  CHECK(thread_budget().threads == 1);  // half a CPU: one thread
  CHECK(thread_budget().source.find("cgroup CPU quota 0.5") == 0);
  if (cpus > 2) {
    write(root.path / "cpu.max", "150000 100000");
    CHECK(thread_budget().threads == 2);
  }
  // cgroup v1: the cpu controller's cfs quota (-1: none), where this process is in a v1 cpu
  // hierarchy (/proc/self/cgroup names the cpu controller).
  std::ifstream self("/proc/self/cgroup");
  bool v1_cpu = false;
  for (std::string line; std::getline(self, line);) {
    v1_cpu = v1_cpu || line.find(":cpu:") != std::string::npos || line.find(":cpu,") != std::string::npos ||
             line.find(",cpu:") != std::string::npos;
  }
  if (!v1_cpu) return;
  std::filesystem::remove(root.path / "cpu.max");
  write(root.path / "cpu" / "cpu.cfs_quota_us", "-1");
  write(root.path / "cpu" / "cpu.cfs_period_us", "100000");
  CHECK(thread_budget().threads == cpus);
  write(root.path / "cpu" / "cpu.cfs_quota_us", "100000");
  CHECK(thread_budget().threads == 1);
}
