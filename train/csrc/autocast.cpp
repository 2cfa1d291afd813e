// libtorch's autocast for any device type, which tch does not expose: its
// at_autocast_set_enabled drives CUDA's switch only, and CPU autocast
// (bfloat16 convolutions and matrix products, as torch.autocast("cpu")
// runs them) needs the per-device calls below. Built by train/build.rs
// with the cc crate, against the libtorch headers torch-sys compiles with.
//
// Every function is noexcept towards Rust: a C++ exception becomes a
// non-zero return and a message in `err`.

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <cstdio>
#include <exception>

namespace {

int fail(const std::exception& e, char* err, size_t len) {
  std::snprintf(err, len, "%s", e.what());
  return 1;
}

}  // namespace

extern "C" {

// The state autocast had before `ae_autocast_enter`, restored on exit.
struct ae_autocast_prior {
  int enabled;
  int dtype;
};

// Enables autocast for `device_type` (c10::DeviceType: 0 CPU, 1 CUDA) with
// `dtype` (c10::ScalarType: 15 BFloat16, 5 Half), as torch.autocast's
// __enter__ does: the prior state goes into `prior`.
int ae_autocast_enter(int device_type, int dtype, ae_autocast_prior* prior, char* err, size_t len) {
  try {
    auto device = static_cast<c10::DeviceType>(device_type);
    prior->enabled = at::autocast::is_autocast_enabled(device) ? 1 : 0;
    prior->dtype = static_cast<int>(at::autocast::get_autocast_dtype(device));
    at::autocast::set_autocast_dtype(device, static_cast<c10::ScalarType>(dtype));
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, len);
  }
}

// Restores the state `ae_autocast_enter` saved and, leaving the outermost
// region, drops the cached low-precision copies of the weights (they are
// stale once the optimizer steps), as torch.autocast's __exit__ does.
int ae_autocast_exit(int device_type, const ae_autocast_prior* prior, char* err, size_t len) {
  try {
    auto device = static_cast<c10::DeviceType>(device_type);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, prior->enabled != 0);
    at::autocast::set_autocast_dtype(device, static_cast<c10::ScalarType>(prior->dtype));
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, len);
  }
}

// Whether autocast is on for `device_type` (1) or off (0); -1 on error.
int ae_autocast_enabled(int device_type) {
  try {
    return at::autocast::is_autocast_enabled(static_cast<c10::DeviceType>(device_type)) ? 1 : 0;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // extern "C"
