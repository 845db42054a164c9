/* exit codes: `exit N`, `trap` (unreachable), `return`, `abort` */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "return";
    printf("doing %s\n", what);
    fflush(stdout);
    if (!strcmp(what, "exit")) exit(argc > 2 ? atoi(argv[2]) : 0);
    if (!strcmp(what, "trap")) __builtin_trap();
    if (!strcmp(what, "abort")) abort();
    return 0;
}
