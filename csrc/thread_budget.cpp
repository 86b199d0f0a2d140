// The threads a model takes by default: what this process may use, not every core of the host.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <locale>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "fastlstm/version.hpp"

namespace fastlstm {
namespace {

namespace fs = std::filesystem;

// FASTLSTM_NUM_THREADS as a positive count, or nothing when unset or not one.
std::optional<int> threads_from_environment() {
  const char* text = std::getenv("FASTLSTM_NUM_THREADS");
  if (!text || !*text) return std::nullopt;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 1 || value > 1'000'000) return std::nullopt;
  return static_cast<int>(value);
}

// The CPUs in this process's affinity mask (a container's or a taskset's CPU set).
int affinity_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

std::optional<std::string> first_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::optional<double> positive_number(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !(value > 0) || !std::isfinite(value)) return std::nullopt;
  return value;
}

// The quota of one cgroup directory in CPUs: cgroup v2's cpu.max ("max 100000" or "<quota>
// <period>"), or v1's cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us.
std::optional<double> cpu_quota(const fs::path& dir) {
  if (const auto max = first_line(dir / "cpu.max")) {
    std::istringstream fields(*max);
    std::string quota, period;
    fields >> quota >> period;
    const auto q = positive_number(quota), p = positive_number(period);
    if (q && p) return *q / *p;
    return std::nullopt;
  }
  const auto quota = first_line(dir / "cpu.cfs_quota_us"), period = first_line(dir / "cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  const auto q = positive_number(*quota), p = positive_number(*period);
  if (q && p) return *q / *p;
  return std::nullopt;
}

// The smallest quota from the process's cgroup up to the hierarchy's root: a parent's limit
// holds for its children. Where the process's path is not under `mount` (a container that sees
// its own cgroup as the root), the mount's own files are the process's.
std::optional<double> hierarchy_quota(const fs::path& mount, const std::string& cgroup_path) {
  std::error_code error;
  fs::path dir = mount / fs::path(cgroup_path).relative_path();
  if (!fs::is_directory(dir, error)) dir = mount;
  std::optional<double> lowest;
  for (;;) {
    if (const auto quota = cpu_quota(dir)) lowest = lowest ? std::min(*lowest, *quota) : *quota;
    if (dir == mount || !dir.has_parent_path() || dir.parent_path() == dir) break;
    dir = dir.parent_path();
  }
  return lowest;
}

// The CPU quota of this process's cgroups (v2 and v1), from /proc/self/cgroup and the cgroup
// file system at FASTLSTM_CGROUP_ROOT (default /sys/fs/cgroup).
std::optional<double> cgroup_cpu_quota() {
  const char* root_text = std::getenv("FASTLSTM_CGROUP_ROOT");
  const fs::path root = root_text && *root_text ? fs::path(root_text) : fs::path("/sys/fs/cgroup");
  std::ifstream in("/proc/self/cgroup");
  std::vector<std::pair<std::string, std::string>> hierarchies;  // (controllers, path)
  for (std::string line; std::getline(in, line);) {
    const size_t first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    hierarchies.emplace_back(line.substr(first + 1, second - first - 1), line.substr(second + 1));
  }
  if (hierarchies.empty()) hierarchies.emplace_back("", "/");  // no /proc: the root's own files
  std::optional<double> lowest;
  auto take = [&lowest](std::optional<double> quota) {
    if (quota) lowest = lowest ? std::min(*lowest, *quota) : *quota;
  };
  std::error_code error;
  for (const auto& [controllers, path] : hierarchies) {
    if (controllers.empty()) {  // cgroup v2 (unified)
      take(hierarchy_quota(root, path));
      continue;
    }
    std::vector<std::string> names;
    std::istringstream list(controllers);
    for (std::string name; std::getline(list, name, ',');) names.push_back(name);
    if (std::find(names.begin(), names.end(), "cpu") == names.end()) continue;
    for (const char* mount : {"cpu", "cpu,cpuacct", "cpuacct,cpu"}) {
      if (fs::is_directory(root / mount, error)) {
        take(hierarchy_quota(root / mount, path));
        break;
      }
    }
  }
  return lowest;
}

}  // namespace

ThreadBudget thread_budget() {
  if (const auto threads = threads_from_environment()) {
    return {*threads, "FASTLSTM_NUM_THREADS=" + std::to_string(*threads)};
  }
  const int cpus = affinity_cpus();
  const std::string mask = std::to_string(cpus) + " CPU" + (cpus == 1 ? "" : "s") + " in the affinity mask";
  if (const auto quota = cgroup_cpu_quota()) {
    const int allowed = std::max(1, static_cast<int>(std::ceil(*quota - 1e-9)));
    if (allowed < cpus) {
      std::ostringstream source;
      source.imbue(std::locale::classic());
      source << "cgroup CPU quota " << *quota << " (of " << mask << ")";
      return {allowed, source.str()};
    }
  }
  return {cpus, mask};
}

int default_num_threads() { return thread_budget().threads; }

}  // namespace fastlstm
