// Test support: runs the dpmm binary (DPMM_BINARY, defined by the test's CMake target) as a
// user would, through the shell, capturing stdout, stderr and the exit code.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

namespace dpmm::cli::testing {

struct CliRun {
  int rc = -1;  // the exit status; -1 when the process did not exit normally
  std::string out;
  std::string err;
};

// `dpmm ARGS`, with stdin from `stdin_file` when it is not empty.
inline CliRun dpmm(const std::string& args, const std::string& stdin_file = "") {
  static int counter = 0;
  const std::string err_path = ::testing::TempDir() + "dpmm_cli_err_" +
                               std::to_string(::getpid()) + "_" + std::to_string(counter++);
  std::string cmd = std::string(DPMM_BINARY) + " " + args + " 2>" + err_path;
  if (!stdin_file.empty()) cmd += " <" + stdin_file;
  CliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_path);
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  std::remove(err_path.c_str());
  return r;
}

}  // namespace dpmm::cli::testing
