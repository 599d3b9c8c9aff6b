# Build flags and helpers shared by every dpmm target.

add_library(dpmm_flags INTERFACE)
target_compile_options(dpmm_flags INTERFACE -Wall -Wextra -Wnon-virtual-dtor)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(dpmm_flags INTERFACE -Wshadow=local)
endif()
if(DPMM_WERROR)
  target_compile_options(dpmm_flags INTERFACE -Werror)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  target_compile_options(dpmm_flags INTERFACE -Wthread-safety -Wno-gnu-statement-expression)
endif()
target_include_directories(dpmm_flags INTERFACE ${PROJECT_SOURCE_DIR}/src)

# With fuzzers on, every library gets libFuzzer's coverage instrumentation, so the fuzzers are
# guided through the code under test and not only through their own entry points.
if(DPMM_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(DPMM_SANITIZE)
  string(REPLACE ";" "," _san "${DPMM_SANITIZE}")
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_san})
endif()

# dpmm_library(NAME SOURCES... DEPS layer...)
function(dpmm_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_link_libraries(${name} PUBLIC dpmm_flags ${A_DEPS})
endfunction()

# dpmm_test(NAME SOURCES... DEPS... [LABELS label]): a GoogleTest binary registered with ctest;
# its tests are labelled `unit` unless another label is given (`concurrency`: also run by the
# TSan job).
function(dpmm_test name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main rapidcheck
                                        rapidcheck_gtest)
  # One label per binary: gtest_discover_tests (PRE_TEST mode) splits a list-valued property
  # into separate arguments, so a test cannot carry two labels this way.
  list(LENGTH A_LABELS _n)
  if(_n GREATER 1)
    message(FATAL_ERROR "dpmm_test(${name}): give at most one label")
  endif()
  set(_labels unit)
  if(_n EQUAL 1)
    set(_labels ${A_LABELS})
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 DISCOVERY_MODE PRE_TEST PROPERTIES LABELS "${_labels}"
                       WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
endfunction()
