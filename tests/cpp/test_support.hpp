// Unique keys per process and test, and cleanup of whatever a test left.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

// Whether this build runs under AddressSanitizer (gcc and clang say it differently).
#if defined(__SANITIZE_ADDRESS__)
#define TRITONSHM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRITONSHM_TEST_ASAN 1
#endif
#endif

namespace tritonshm::testing {

inline std::string unique_key(const std::string& tag = "k") {
  static std::atomic<int> counter{0};
  return "/tshm_cpp_" + std::to_string(::getpid()) + "_" + tag + "_" + std::to_string(counter++);
}

// Unlinks the keys it handed out when it goes out of scope, even if the test failed.
class KeyJar {
 public:
  std::string make(const std::string& tag = "k") {
    keys_.push_back(unique_key(tag));
    return keys_.back();
  }
  ~KeyJar() {
    for (const auto& k : keys_) ::shm_unlink(k.c_str());
  }

 private:
  std::vector<std::string> keys_;
};

inline bool exists(const std::string& key) { return ::access(("/dev/shm" + key).c_str(), F_OK) == 0; }

}  // namespace tritonshm::testing
