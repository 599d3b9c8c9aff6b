// Thread start goes through here, like every lock and wait, so that a deterministic scheduler
// can later own the interleavings. A Thread joins on destruction (no detached threads).
#pragma once

#include <functional>
#include <string>
#include <thread>
#include <utility>

namespace dpmm {

class Thread {
 public:
  Thread() = default;
  Thread(std::string name, std::function<void()> body)
      : name_(std::move(name)), t_(std::move(body)) {}
  Thread(Thread&&) = default;
  Thread& operator=(Thread&& o) {
    join();
    name_ = std::move(o.name_);
    t_ = std::move(o.t_);
    return *this;
  }
  ~Thread() { join(); }

  void join() {
    if (t_.joinable()) t_.join();
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::thread t_;
};

}  // namespace dpmm
