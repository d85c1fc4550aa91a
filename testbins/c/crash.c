/* A small C library function that faults: a write through the pointer it
   is given (NULL from the test), two calls deep. Built without frame
   pointers by build.rs. */

__attribute__((noinline)) int bbx_c_store(volatile int *where, int value) {
    *where = value;
    return value + 1;
}

__attribute__((noinline)) int bbx_c_update(volatile int *where, int value) {
    int r = bbx_c_store(where, value * 3);
    return r * 2;
}
