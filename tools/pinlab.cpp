// pinlab — command-line entry point (placeholder until the scenario runner, issue 5).
#include <cstdio>
int main() { std::puts("pinlab"); return 0; }
