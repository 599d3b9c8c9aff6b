// placeholder, replaced below
#include <gtest/gtest.h>
TEST(Cli, Placeholder) {}
