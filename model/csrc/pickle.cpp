// C ABI over libtorch's own unpickler, to read the `pytorch_model.bin` files that
// `torch.save(state_dict)` writes (the zip format of PyTorch >= 1.6): libtorch's restricted
// unpickler knows only tensors, dicts, lists and scalars, so no Python code is ever executed.
// Each named tensor goes to a callback (as tch does for its own loaders); a failure returns a
// malloc'd message that the caller frees.
#include <cstdlib>
#include <cstring>
#include <string>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/import_read.h>

namespace {
char* dup_message(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}
}  // namespace

extern "C" {

// Reads the state dict in `path` onto the CPU and calls `f(data, name, tensor)` for each entry
// (the tensor is a new `torch::Tensor*` that the callee owns). Returns nullptr on success.
char* stuffed_load_torch_pickle(const char* path, void* data, void (*f)(void*, const char*, void*)) {
  try {
    caffe2::serialize::PyTorchStreamReader reader{std::string(path)};
    c10::IValue value = torch::jit::readArchiveAndTensors(
        "data", "", "", std::nullopt, std::nullopt, c10::Device(c10::kCPU), reader);
    if (!value.isGenericDict()) {
      return dup_message("the pickle holds a " + value.tagKind() + ", expected a dict of named tensors (a state dict)");
    }
    for (const auto& item : value.toGenericDict()) {
      if (!item.key().isString()) return dup_message("a state-dict key is not a string");
      if (!item.value().isTensor()) {
        return dup_message("entry '" + item.key().toStringRef() + "' is a " + item.value().tagKind() + ", not a tensor");
      }
    }
    for (const auto& item : value.toGenericDict()) {
      f(data, item.key().toStringRef().c_str(), new at::Tensor(item.value().toTensor()));
    }
    return nullptr;
  } catch (const std::exception& e) {
    return dup_message(e.what());
  } catch (...) {
    return dup_message("unknown C++ exception");
  }
}

}  // extern "C"
