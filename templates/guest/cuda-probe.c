/*
 * pvegpu CUDA runtime probe: asks the CUDA *runtime* API (libcudart) how many GPUs it sees.
 * nvidia-smi only exercises NVML; a container can pass that and still fail here (no
 * /dev/nvidia-uvm, stale CDI spec), which is the failure `pvegpu verify` must catch.
 *
 * No CUDA headers: libcudart is dlopen()ed and the three functions looked up by name, so
 * this builds with any C compiler (`cc -O2 -o cuda-probe cuda-probe.c -ldl`) and runs in any
 * image that carries a libcudart. An explicit library path may be given as the argument.
 *
 * Output, one line, stable for parsing (src/verify/runtime.rs):
 *   pvegpu-cuda-probe count=<n> error=<code> name=<cudaError name> lib=<what was loaded>
 *   pvegpu-cuda-probe count=0 error=-1 name=libcudartNotFound lib=none
 *   pvegpu-cuda-probe count=0 error=-2 name=symbolNotFound lib=<lib>
 * Exit status: 0 success, 1 CUDA error, 2 library or symbol missing.
 */
#include <dlfcn.h>
#include <stdio.h>

typedef int (*get_count_fn)(int *);
typedef const char *(*error_str_fn)(int);

static const char *candidates[] = {
    "libcudart.so",    "libcudart.so.13",  "libcudart.so.12",  "libcudart.so.11.0",
    "libcudart.so.11", "libcudart.so.10.2", "libcudart.so.10.1", "libcudart.so.10.0",
    "/usr/local/cuda/lib64/libcudart.so",   "/usr/local/cuda/targets/x86_64-linux/lib/libcudart.so",
    NULL,
};

/* Names may contain only what a parser splitting on spaces and '=' keeps intact. */
static void print_word(const char *s) {
    if (s == NULL || *s == '\0') {
        fputs("unknown", stdout);
        return;
    }
    for (; *s; s++)
        putchar((*s == ' ' || *s == '=' || *s == '\n') ? '_' : *s);
}

int main(int argc, char **argv) {
    void *lib = NULL;
    const char *loaded = NULL;
    if (argc > 1) {
        lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        loaded = argv[1];
    }
    for (int i = 0; lib == NULL && candidates[i] != NULL; i++) {
        lib = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        loaded = candidates[i];
    }
    if (lib == NULL) {
        printf("pvegpu-cuda-probe count=0 error=-1 name=libcudartNotFound lib=none\n");
        return 2;
    }
    get_count_fn get_count = (get_count_fn)dlsym(lib, "cudaGetDeviceCount");
    error_str_fn get_name = (error_str_fn)dlsym(lib, "cudaGetErrorName");
    error_str_fn get_string = (error_str_fn)dlsym(lib, "cudaGetErrorString");
    if (get_count == NULL) {
        printf("pvegpu-cuda-probe count=0 error=-2 name=symbolNotFound lib=");
        print_word(loaded);
        putchar('\n');
        return 2;
    }
    int count = 0;
    int err = get_count(&count);
    if (err != 0)
        count = 0;
    printf("pvegpu-cuda-probe count=%d error=%d name=", count, err);
    print_word(get_name ? get_name(err) : NULL);
    fputs(" lib=", stdout);
    print_word(loaded);
    putchar('\n');
    /* the long text goes to stderr: free-form, for people */
    if (err != 0 && get_string != NULL)
        fprintf(stderr, "cudaGetDeviceCount: %s\n", get_string(err));
    return err == 0 ? 0 : 1;
}
