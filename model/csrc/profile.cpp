// Per-operator time profile through libtorch's legacy profiler (CUDA events around every op,
// on every thread autograd uses), summarised per operator name and input shapes: calls, inclusive and self
// device time, inclusive host time. Behind `stuffed bench train --profile`.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/csrc/autograd/profiler_legacy.h>

namespace {
thread_local std::string g_profile_err;

struct Totals {
  int64_t calls = 0;
  double device_us = 0, self_device_us = 0, host_us = 0;
};
// The input shapes of an op as "[8, 2048, 768] [768]" ("-" for none).
std::string shapes_of(const torch::autograd::profiler::LegacyEvent& ev) {
  std::string s;
  for (const auto& shape : ev.shapes()) {
    if (!s.empty()) s += ' ';
    s += '[';
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    s += ']';
  }
  return s.empty() ? "-" : s;
}
}  // namespace

extern "C" {

const char* stuffed_profile_last_error() { return g_profile_err.c_str(); }

int stuffed_profile_start(int cuda) {
  try {
    using torch::profiler::impl::ProfilerConfig;
    using torch::profiler::impl::ProfilerState;
    torch::autograd::profiler::enableProfilerLegacy(ProfilerConfig(cuda ? ProfilerState::CUDA : ProfilerState::CPU, /*report_input_shapes=*/true));
    return 0;
  } catch (const std::exception& e) {
    g_profile_err = e.what();
    return 1;
  }
}

// Stops the profiler and writes a TSV (name, input shapes, calls, device_ms, self_device_ms, host_ms), sorted
// by self device time, then host time. Times are totals over the profiled region.
int stuffed_profile_stop(const char* path) {
  try {
    using torch::autograd::profiler::EventKind;
    using torch::autograd::profiler::LegacyEvent;
    auto lists = torch::autograd::profiler::disableProfilerLegacy();
    std::map<std::pair<std::string, std::string>, Totals> totals;
    for (auto& thread : lists) {
      struct Open {
        const LegacyEvent* push;
        double child_device_us;
      };
      std::vector<Open> stack;
      for (auto& ev : thread) {
        if (ev.kind() == EventKind::PushRange) {
          stack.push_back({&ev, 0.0});
        } else if (ev.kind() == EventKind::PopRange && !stack.empty()) {
          Open open = stack.back();
          stack.pop_back();
          const LegacyEvent& push = *open.push;
          double dev = (push.hasCuda() && ev.hasCuda()) ? push.cudaElapsedUs(ev) : 0.0;
          Totals& t = totals[{push.name(), shapes_of(push)}];
          t.calls += 1;
          t.device_us += dev;
          t.self_device_us += std::max(0.0, dev - open.child_device_us);
          t.host_us += push.cpuElapsedUs(ev);
          if (!stack.empty()) stack.back().child_device_us += dev;
        }
      }
    }
    std::vector<std::pair<std::pair<std::string, std::string>, Totals>> rows(totals.begin(), totals.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      if (a.second.self_device_us != b.second.self_device_us) return a.second.self_device_us > b.second.self_device_us;
      return a.second.host_us > b.second.host_us;
    });
    std::ofstream out(path);
    out << "name\tinput_shapes\tcalls\tdevice_ms\tself_device_ms\thost_ms\n";
    for (auto& [key, t] : rows) {
      out << key.first << '\t' << key.second << '\t' << t.calls << '\t' << t.device_us / 1000.0 << '\t' << t.self_device_us / 1000.0 << '\t'
          << t.host_us / 1000.0 << '\n';
    }
    if (!out) throw std::runtime_error(std::string("cannot write ") + path);
    return 0;
  } catch (const std::exception& e) {
    g_profile_err = e.what();
    return 1;
  }
}

// Kernel-level profile through Kineto (CUPTI): every CUDA kernel and copy the device ran, the
// fused SSD's own NVRTC kernels included (the legacy profiler above sees operators only).
int stuffed_kernels_start() {
  try {
    using torch::profiler::impl::ActivityType;
    using torch::profiler::impl::ProfilerConfig;
    using torch::profiler::impl::ProfilerState;
    ProfilerConfig cfg(ProfilerState::KINETO);
    std::set<ActivityType> acts{ActivityType::CPU, ActivityType::CUDA};
    torch::autograd::profiler::prepareProfiler(cfg, acts);
    torch::autograd::profiler::enableProfiler(cfg, acts);
    return 0;
  } catch (const std::exception& e) {
    g_profile_err = e.what();
    return 1;
  }
}

// Stops the Kineto profile and writes a TSV (kernel, calls, device_ms), sorted by device time.
int stuffed_kernels_stop(const char* path) {
  try {
    auto result = torch::autograd::profiler::disableProfiler();
    std::map<std::string, std::pair<int64_t, double>> totals;
    for (const auto& ev : result->events()) {
      if (ev.deviceType() != c10::DeviceType::CUDA) continue;
      auto& t = totals[ev.name()];
      t.first += 1;
      t.second += ev.durationNs() / 1e6;
    }
    std::vector<std::pair<std::string, std::pair<int64_t, double>>> rows(totals.begin(), totals.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
    std::ofstream out(path);
    out << "kernel\tcalls\tdevice_ms\n";
    for (auto& [name, t] : rows) out << name << '\t' << t.first << '\t' << t.second << '\n';
    if (!out) throw std::runtime_error(std::string("cannot write ") + path);
    return 0;
  } catch (const std::exception& e) {
    g_profile_err = e.what();
    return 1;
  }
}

}  // extern "C"
