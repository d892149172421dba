// Whole-step CUDA graphs through libtorch's at::cuda::CUDAGraph: the capture gets a private
// memory pool from the caching allocator (what the graph allocates stays its own between
// replays), and the capture runs on a side stream of the graph's, ordered after the work queued
// before it and before the work queued after it. Also: a parameter's gradient set to none (so
// that the captured backward owns the gradient buffers).
//
// No CUDA headers: the streams and events are c10's device-generic ones, and the few members of
// at::cuda::CUDAGraph used here are declared below as libtorch_cuda defines them (the same
// mangled names; the object lives in storage larger than the real one). Built in only when
// build.rs found libtorch_cuda (STUFFED_CUDA_GRAPHS); otherwise every entry point reports that
// graphs are not built in. Every extern "C" entry point catches C++ exceptions and returns
// non-zero on failure, with the message available from stuffed_graph_last_error() on the same
// thread.
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/autograd/variable.h>

#ifdef STUFFED_CUDA_GRAPHS
// As in CUDA's driver_types.h.
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0 };

namespace at::cuda {
// As in ATen/cuda/CUDAGraph.h (torch 2.11): only the members called here.
struct CUDAGraph {
  explicit CUDAGraph(bool keep_graph);
  ~CUDAGraph();
  void capture_begin(std::pair<unsigned long long, unsigned long long> pool, cudaStreamCaptureMode mode);
  void capture_end();
  void replay();
};
}  // namespace at::cuda
#endif

namespace {
thread_local std::string g_graph_err;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    g_graph_err = e.what();
    return 1;
  }
}

#ifdef STUFFED_CUDA_GRAPHS
const c10::impl::DeviceGuardImplInterface* cuda_impl() {
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
}

// Room for at::cuda::CUDAGraph (a few hundred bytes in torch 2.11).
constexpr std::size_t kGraphBytes = 16384;

// `to` waits for the work queued on `from` so far.
void order(const c10::Stream& from, const c10::Stream& to) {
  c10::Event ev(c10::DeviceType::CUDA);
  ev.record(from);
  ev.block(to);
}

class Graph {
 public:
  explicit Graph(c10::DeviceIndex dev)
      : side_(cuda_impl()->getStreamFromGlobalPool(c10::Device(c10::DeviceType::CUDA, dev), false)) {
    graph_ = new (storage_) at::cuda::CUDAGraph(false);
  }
  ~Graph() { graph_->~CUDAGraph(); }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // The side stream becomes current after waiting for the current one.
  void enter() {
    if (before_) throw std::runtime_error("the graph's stream is already current");
    c10::Stream current = cuda_impl()->getStream(side_.device());
    order(current, side_);
    before_ = cuda_impl()->exchangeStream(side_);
  }

  // The stream current before `enter` is current again, waiting for the side stream.
  void leave() {
    if (!before_) throw std::runtime_error("the graph's stream is not current");
    cuda_impl()->exchangeStream(*before_);
    order(side_, *before_);
    before_.reset();
  }

  // Capturing on the side stream (entered here); `end` ends it, instantiates the graph and
  // leaves the side stream. Nothing captured runs until a replay.
  void begin() {
    enter();
    run_or_leave([&] { graph_->capture_begin({0, 0}, cudaStreamCaptureModeGlobal); });
    capturing_ = true;
  }

  void end() {
    if (!capturing_) throw std::runtime_error("the graph is not capturing");
    capturing_ = false;
    run_or_leave([&] { graph_->capture_end(); });
    leave();
  }

  // The captured work, on the current stream.
  void replay() { graph_->replay(); }

 private:
  // Runs `f`; when it throws, leaves the side stream first.
  template <typename F>
  void run_or_leave(F f) {
    try {
      f();
    } catch (...) {
      leave();
      throw;
    }
  }

  alignas(64) unsigned char storage_[kGraphBytes];
  at::cuda::CUDAGraph* graph_;
  c10::Stream side_;
  // The stream current before `enter`, while the side stream is current.
  std::optional<c10::Stream> before_;
  bool capturing_ = false;
};
#else
// Never constructed: its constructor reports that graphs are not built in.
struct Graph {
  [[noreturn]] static void unavailable() { throw std::runtime_error("this build has no CUDA graphs (no CUDA libtorch at build time)"); }
  explicit Graph(int) { unavailable(); }
  void enter() { unavailable(); }
  void leave() { unavailable(); }
  void begin() { unavailable(); }
  void end() { unavailable(); }
  void replay() { unavailable(); }
};
#endif

Graph& graph(void* p) { return *static_cast<Graph*>(p); }
}  // namespace

extern "C" {

const char* stuffed_graph_last_error() { return g_graph_err.c_str(); }

int stuffed_graph_new(int dev, void** out) {
  return guarded([&] { *out = new Graph(static_cast<c10::DeviceIndex>(dev)); });
}

void stuffed_graph_free(void* g) { delete static_cast<Graph*>(g); }

// Makes the graph's side stream current (for the warm-up steps).
int stuffed_graph_enter(void* g) {
  return guarded([&] { graph(g).enter(); });
}

int stuffed_graph_leave(void* g) {
  return guarded([&] { graph(g).leave(); });
}

// Begins capturing on the side stream; `stuffed_graph_end` ends the capture, instantiates the
// graph and leaves the side stream.
int stuffed_graph_begin(void* g) {
  return guarded([&] { graph(g).begin(); });
}

int stuffed_graph_end(void* g) {
  return guarded([&] { graph(g).end(); });
}

// Replays the captured work on the current stream.
int stuffed_graph_replay(void* g) {
  return guarded([&] { graph(g).replay(); });
}

// The parameter's .grad becomes undefined (not zeros).
int stuffed_grad_set_none(at::Tensor* t) {
  return guarded([&] { t->mutable_grad().reset(); });
}

}  // extern "C"
