#include <cstdio>
int main() { std::puts("dpmm"); return 0; }
