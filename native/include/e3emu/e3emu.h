/* C ABI of the CUDA CPU emulator (libe3emu.so). It mirrors the CUDA driver API closely enough that the C#
 * backend can treat "emu" as one more device: modules are the kernel files compiled into the library
 * (module name = file stem), device memory is host memory, streams execute synchronously and in order.
 * Every call returns a CUresult-compatible code; on failure e3emu_last_error() describes it for the
 * calling thread. */
#ifndef E3EMU_H
#define E3EMU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define E3EMU_API __attribute__((visibility("default")))

/* Values are those of CUresult where a driver code means the same thing. */
typedef enum e3emu_result {
    E3EMU_SUCCESS = 0,
    E3EMU_ERROR_INVALID_VALUE = 1,
    E3EMU_ERROR_OUT_OF_MEMORY = 2,
    E3EMU_ERROR_NOT_INITIALIZED = 3,
    E3EMU_ERROR_NOT_FOUND = 500,
    E3EMU_ERROR_INVALID_HANDLE = 400,
    E3EMU_ERROR_NOT_READY = 600,
    E3EMU_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    E3EMU_ERROR_LAUNCH_FAILED = 719,
    E3EMU_ERROR_NOT_SUPPORTED = 801
} e3emu_result;

/* cudaDataType_t values for the GEMM entry points. */
typedef enum e3emu_dtype { E3EMU_R_32F = 0, E3EMU_R_16F = 2, E3EMU_R_16BF = 14 } e3emu_dtype;
/* cublasOperation_t values. */
typedef enum e3emu_op { E3EMU_OP_N = 0, E3EMU_OP_T = 1 } e3emu_op;
/* cublasComputeType_t values: fp32 accumulation; FAST_TF32 rounds fp32 A and B to TF32 (10 mantissa bits, to
 * nearest, ties away from zero, as cvt.rna.tf32.f32) before multiplying, as the tensor cores take them. */
typedef enum e3emu_compute { E3EMU_COMPUTE_32F = 68, E3EMU_COMPUTE_32F_FAST_TF32 = 77 } e3emu_compute;

typedef unsigned long long e3emu_deviceptr;
typedef struct e3emu_module_st* e3emu_module;
typedef struct e3emu_function_st* e3emu_function;
typedef struct e3emu_stream_st* e3emu_stream;
typedef struct e3emu_event_st* e3emu_event;

/* Starts the worker pool (one thread per core, or E3EMU_WORKERS). Idempotent; flags must be 0. */
E3EMU_API e3emu_result e3emu_init(unsigned flags);
E3EMU_API int e3emu_worker_count(void);

/* The order in which a block's threads run between two blocking points (barriers, warp collectives). Threads of one
 * block never run at once here, so a thread reading what another wrote without a barrier between them sees the
 * write only if that thread ran first: forward order hides a read of a lower thread's data, reverse order a read of
 * a higher one's. Running the tests both ways exposes a missing barrier either way. Process-wide; the initial value
 * comes from E3EMU_THREAD_ORDER (forward or reverse) at e3emu_init, forward when unset. */
typedef enum e3emu_thread_order { E3EMU_THREAD_ORDER_FORWARD = 0, E3EMU_THREAD_ORDER_REVERSE = 1 } e3emu_thread_order;
E3EMU_API e3emu_result e3emu_set_thread_order(e3emu_thread_order order);
E3EMU_API e3emu_thread_order e3emu_thread_order_in_use(void);

/* Message of the last failed call on this thread ("" if none) and the CUresult-style name of a code. */
E3EMU_API const char* e3emu_last_error(void);
E3EMU_API const char* e3emu_error_name(e3emu_result code);

/* Modules are compiled in: loading looks one up by name (the .cu file stem). Unloading is a no-op. */
E3EMU_API e3emu_result e3emu_module_load(e3emu_module* module, const char* name);
E3EMU_API e3emu_result e3emu_module_unload(e3emu_module module);
E3EMU_API e3emu_result e3emu_module_get_function(e3emu_function* function, e3emu_module module, const char* name);
/* Number of parameters of the kernel's signature, so a caller can check its argument list. */
E3EMU_API e3emu_result e3emu_function_param_count(e3emu_function function, int* count);

/* Runs the whole grid before returning (the stream is only checked). params[i] points at the value of the
 * i-th kernel parameter, exactly as for cuLaunchKernel. A kernel that diverges on __syncthreads or on a warp
 * collective fails with E3EMU_ERROR_LAUNCH_FAILED and a message naming kernel, block and thread. */
E3EMU_API e3emu_result e3emu_launch(e3emu_function function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                                    unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                                    e3emu_stream stream, void** params);

/* The checks e3emu_launch makes before running anything (function, grid, block, shared memory, parameters), alone:
 * for a caller that queues the launch to run later but must refuse a bad one at the call, as cuLaunchKernel does. */
E3EMU_API e3emu_result e3emu_launch_check(e3emu_function function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                                          unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                                          void** params);

/* Device memory is host memory tracked by the emulator; copies check that device ranges lie inside one
 * allocation. e3emu_range_check makes that check alone (a queued copy or fill is checked at the call too). */
E3EMU_API e3emu_result e3emu_range_check(e3emu_deviceptr ptr, size_t bytes);
E3EMU_API e3emu_result e3emu_mem_alloc(e3emu_deviceptr* ptr, size_t bytes);
E3EMU_API e3emu_result e3emu_mem_free(e3emu_deviceptr ptr);
E3EMU_API e3emu_result e3emu_memcpy_htod(e3emu_deviceptr dst, const void* src, size_t bytes);
E3EMU_API e3emu_result e3emu_memcpy_dtoh(void* dst, e3emu_deviceptr src, size_t bytes);
E3EMU_API e3emu_result e3emu_memcpy_dtod(e3emu_deviceptr dst, e3emu_deviceptr src, size_t bytes);
E3EMU_API e3emu_result e3emu_memset_d8(e3emu_deviceptr dst, unsigned char value, size_t count);
E3EMU_API e3emu_result e3emu_memset_d32(e3emu_deviceptr dst, unsigned value, size_t count);

/* Streams execute every operation synchronously at submission, so they are always complete. */
E3EMU_API e3emu_result e3emu_stream_create(e3emu_stream* stream);
E3EMU_API e3emu_result e3emu_stream_destroy(e3emu_stream stream);
E3EMU_API e3emu_result e3emu_stream_synchronize(e3emu_stream stream);
/* Events record the wall-clock time at which they were recorded (all prior work is already done). */
E3EMU_API e3emu_result e3emu_event_create(e3emu_event* event);
E3EMU_API e3emu_result e3emu_event_destroy(e3emu_event event);
E3EMU_API e3emu_result e3emu_event_record(e3emu_event event, e3emu_stream stream);
E3EMU_API e3emu_result e3emu_event_synchronize(e3emu_event event);
E3EMU_API e3emu_result e3emu_event_elapsed_time(float* milliseconds, e3emu_event start, e3emu_event end);

/* cublasGemmEx / cublasGemmStridedBatchedEx: column-major, C = alpha * op(A) * op(B) + beta * C, op(A) m x k,
 * op(B) k x n, fp32 accumulation. A and B are each fp32, fp16 or bf16, C is fp32 or bf16 (all three fp32 for FAST_TF32).
 * beta == 0 never reads C (as cuBLAS). Strides are in elements. */
E3EMU_API e3emu_result e3emu_gemm_ex(e3emu_op transa, e3emu_op transb, int m, int n, int k, float alpha,
                                     const void* a, e3emu_dtype a_type, int lda, const void* b, e3emu_dtype b_type,
                                     int ldb, float beta, void* c, e3emu_dtype c_type, int ldc, e3emu_compute compute);
E3EMU_API e3emu_result e3emu_gemm_strided_batched_ex(e3emu_op transa, e3emu_op transb, int m, int n, int k,
                                                     float alpha, const void* a, e3emu_dtype a_type, int lda,
                                                     long long stride_a, const void* b, e3emu_dtype b_type, int ldb,
                                                     long long stride_b, float beta, void* c, e3emu_dtype c_type,
                                                     int ldc, long long stride_c, int batch_count, e3emu_compute compute);

#ifdef __cplusplus
}
#endif
#endif
