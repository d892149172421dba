// C ABI over the few libtorch facilities tch does not wrap: the caching allocator's memory
// statistics, device memory info and the current stream, through ATen's device-generic
// accelerator API (no CUDA headers needed). Every entry point catches C++ exceptions and
// reports failure through its return value (0 = ok), so a CPU-only machine never aborts.
#include <cstdint>
#include <ATen/DeviceAccelerator.h>
#include <c10/core/Stream.h>

namespace {
const size_t kAll = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
}

extern "C" {

int stuffed_accel_mem_stats(int dev, uint64_t* allocated, uint64_t* peak_allocated,
                            uint64_t* reserved, uint64_t* peak_reserved) {
  try {
    auto stats = at::accelerator::getDeviceStats(static_cast<c10::DeviceIndex>(dev));
    *allocated = stats.allocated_bytes[kAll].current;
    *peak_allocated = stats.allocated_bytes[kAll].peak;
    *reserved = stats.reserved_bytes[kAll].current;
    *peak_reserved = stats.reserved_bytes[kAll].peak;
    return 0;
  } catch (...) {
    return 1;
  }
}

int stuffed_accel_reset_peak(int dev) {
  try {
    at::accelerator::resetPeakStats(static_cast<c10::DeviceIndex>(dev));
    return 0;
  } catch (...) {
    return 1;
  }
}

int stuffed_accel_empty_cache() {
  try {
    at::accelerator::emptyCache();
    return 0;
  } catch (...) {
    return 1;
  }
}

int stuffed_accel_mem_info(int dev, uint64_t* free_bytes, uint64_t* total_bytes) {
  try {
    auto info = at::accelerator::getMemoryInfo(static_cast<c10::DeviceIndex>(dev));
    *free_bytes = info.first;
    *total_bytes = info.second;
    return 0;
  } catch (...) {
    return 1;
  }
}

uint64_t stuffed_accel_current_stream(int dev) {
  try {
    auto s = at::accelerator::getCurrentStream(static_cast<c10::DeviceIndex>(dev));
    return reinterpret_cast<uint64_t>(s.native_handle());
  } catch (...) {
    return 0;
  }
}

}  // extern "C"
