// The few libtorch calls tch 0.26 does not wrap (see src/torch/jit.rs for why qcam needs them):
//   * torch::jit::optimize_for_inference (oneDNN: prepacked convolutions, conv/add/relu fusion),
//     whose result cannot be saved to a file, so it has to run after every load;
//   * the X86 quantized engine (tch::QEngine names only FBGEMM and QNNPACK).
// tch keeps its module pointer private, so this file owns the TorchScript module itself: load,
// forward, free. Tensors cross as `at::Tensor*`, tch's own representation (`Tensor::as_ptr`,
// `Tensor::from_ptr`). No C++ exception crosses into Rust: each entry point catches them and
// returns the message, which the caller frees with qcam_free_error, and 1 (libtorch failed) or 2
// (the model broke the (logits, act) contract).

#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/MemoryFormat.h>
#include <c10/core/QEngine.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

namespace {

struct QcamModule {
  torch::jit::Module module;
  bool channels_last;
};

// The model ran but did not return what SPEC §2 says.
struct ContractError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

char* error_string(const char* what) {
  std::string s(what ? what : "unknown C++ exception");
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

template <typename F>
int guarded(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const ContractError& e) {
    *err = error_string(e.what());
    return 2;
  } catch (const std::exception& e) {
    *err = error_string(e.what());
  } catch (...) {
    *err = error_string(nullptr);
  }
  return 1;
}

}  // namespace

extern "C" {

void qcam_free_error(char* err) { std::free(err); }

// Loads a TorchScript file in eval mode; with `optimize`, runs optimize_for_inference on it (which
// freezes it first unless the file is frozen already). `channels_last`: forwards convert their
// input to that memory format first.
int qcam_jit_load(const char* path, int optimize, int channels_last, QcamModule** out, char** err) {
  return guarded(err, [&] {
    auto m = torch::jit::load(path);
    m.eval();
    if (optimize) m = torch::jit::optimize_for_inference(m);
    *out = new QcamModule{std::move(m), channels_last != 0};
  });
}

void qcam_jit_free(QcamModule* m) { delete m; }

// forward(input) -> (logits, act). On success *logits and *act are new tensors owned by the caller.
int qcam_jit_forward(QcamModule* m, const at::Tensor* input, at::Tensor** logits, at::Tensor** act, char** err) {
  return guarded(err, [&] {
    at::NoGradGuard no_grad;
    at::Tensor x = m->channels_last ? input->contiguous(c10::MemoryFormat::ChannelsLast) : *input;
    auto out = m->module.forward({x});
    if (!out.isTuple()) throw ContractError("forward must return a tuple (logits, act)");
    const auto& items = out.toTupleRef().elements();
    if (items.size() != 2) {
      throw ContractError("forward returned a tuple of " + std::to_string(items.size()) +
                               " items, expected (logits, act)");
    }
    if (!items[0].isTensor() || !items[1].isTensor()) {
      throw ContractError("forward must return (Tensor logits, Tensor act)");
    }
    *logits = new at::Tensor(items[0].toTensor());
    *act = new at::Tensor(items[1].toTensor());
  });
}

// Sets libtorch's process-wide quantized engine; `engine` is a c10::QEngine value.
int qcam_set_qengine(int engine, char** err) {
  return guarded(err, [&] {
    auto e = static_cast<c10::QEngine>(engine);
    const auto& supported = at::globalContext().supportedQEngines();
    if (std::find(supported.begin(), supported.end(), e) == supported.end()) {
      throw std::runtime_error("quantized engine " + c10::toString(e) + " is not supported by this libtorch");
    }
    at::globalContext().setQEngine(e);
  });
}

}  // extern "C"
