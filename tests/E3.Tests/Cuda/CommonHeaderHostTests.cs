using System.Diagnostics;
using E3.Interop.Kernels;
using TorchSharp;
using Xunit;

namespace E3.Tests.Cuda;

/// <summary>
/// common.cuh must also compile as plain C++ (the CPU emulator builds it with g++, no __CUDACC_RTC__), and its
/// scalar helpers are the ones every kernel relies on. This compiles the embedded header with g++ behind a
/// minimal stand-in for the emulator's builtins header, runs its bf16 conversion and sin/cos on the host, and
/// compares with TorchSharp (bf16) and double-precision Math.Sin/Cos.
/// </summary>
public sealed class CommonHeaderHostTests(Xunit.Abstractions.ITestOutputHelper output)
{
    // The builtins the kernel conventions allow, and nothing else: no system header is included, so a kernel
    // that calls anything outside the list (sinf, a toolkit intrinsic) fails to compile here just as it would
    // in the emulator. Only the bit casts have bodies; the rest are declarations (the host program below calls
    // nothing else, so nothing else is linked). The real emulator header defines all of them.
    private const string BuiltinsShim = """
        #define __device__
        #define __global__
        #define E3_SHARED(type, name, dims) static type name dims
        #define __forceinline__ inline
        #define E3_DYNAMIC_SHARED(type, name) type* name = nullptr
        struct e3_dim3 { unsigned int x, y, z; };
        extern e3_dim3 threadIdx, blockIdx, blockDim, gridDim;
        extern int warpSize;
        void __syncthreads();
        void __syncwarp(unsigned int mask = 0xffffffffu);
        float __shfl_sync(unsigned int, float, int); int __shfl_sync(unsigned int, int, int); unsigned int __shfl_sync(unsigned int, unsigned int, int);
        float __shfl_xor_sync(unsigned int, float, int); int __shfl_xor_sync(unsigned int, int, int); unsigned int __shfl_xor_sync(unsigned int, unsigned int, int);
        float __shfl_down_sync(unsigned int, float, unsigned int); int __shfl_down_sync(unsigned int, int, unsigned int);
        float __shfl_up_sync(unsigned int, float, unsigned int); int __shfl_up_sync(unsigned int, int, unsigned int);
        unsigned int __ballot_sync(unsigned int, int); int __any_sync(unsigned int, int); int __all_sync(unsigned int, int);
        float atomicAdd(float*, float); int atomicAdd(int*, int); unsigned int atomicAdd(unsigned int*, unsigned int);
        int atomicMax(int*, int); unsigned int atomicMax(unsigned int*, unsigned int);
        int atomicExch(int*, int); unsigned int atomicExch(unsigned int*, unsigned int); float atomicExch(float*, float);
        int atomicCAS(int*, int, int); unsigned int atomicCAS(unsigned int*, unsigned int, unsigned int);
        unsigned long long atomicCAS(unsigned long long*, unsigned long long, unsigned long long);
        void __threadfence();
        // log(double): the Gumbel transform is done in fp64 so cpu, emu and cuda draw the same noise (gumbel_topk.cu).
        extern "C" { double log(double); float expf(float); float logf(float); float log1pf(float); float exp2f(float); float sqrtf(float);
            float fmaxf(float, float); float fminf(float, float); float fabsf(float); float floorf(float); float tanhf(float); }
        float __expf(float); float __logf(float); float rsqrtf(float); float __fdividef(float, float);
        int __popc(unsigned int); int __ffs(int);
        int min(int, int); int max(int, int); unsigned int min(unsigned int, unsigned int); unsigned int max(unsigned int, unsigned int);
        inline float __uint_as_float(unsigned int u) { float f; __builtin_memcpy(&f, &u, 4); return f; }
        inline unsigned int __float_as_uint(float f) { unsigned int u; __builtin_memcpy(&u, &f, 4); return u; }
        inline float __int_as_float(int i) { float f; __builtin_memcpy(&f, &i, 4); return f; }
        inline int __float_as_int(float f) { int i; __builtin_memcpy(&i, &f, 4); return i; }
        """;

    private const string Driver = """
        #include <cstdio>
        #include "common.cuh"
        #include <vector>
        // argv: bits-in bf16-out angles-in sincos-out
        int main(int argc, char** argv)
        {
            auto read = [](const char* path)
            {
                std::vector<unsigned int> v;
                FILE* f = std::fopen(path, "rb");
                unsigned int x;
                while (std::fread(&x, 4, 1, f) == 1)
                    v.push_back(x);
                std::fclose(f);
                return v;
            };
            std::vector<unsigned int> bits = read(argv[1]);
            FILE* out = std::fopen(argv[2], "wb");
            for (unsigned int b : bits) { e3_bf16 h = e3_float_to_bf16(__uint_as_float(b)); std::fwrite(&h, 2, 1, out); }
            std::fclose(out);
            std::vector<unsigned int> angles = read(argv[3]);
            out = std::fopen(argv[4], "wb");
            for (unsigned int a : angles) { float s, c; e3_sincos(__uint_as_float(a), &s, &c); std::fwrite(&s, 4, 1, out); std::fwrite(&c, 4, 1, out); }
            std::fclose(out);
            return 0;
        }
        """;

    public static TheoryData<string> KernelFiles() => new(KernelCatalog.Embedded.Names);

    [Theory]
    [MemberData(nameof(KernelFiles))]
    public void KernelCompilesAsPlainCppWithOnlyTheAllowedBuiltins(string name)
    {
        using var temp = new TempFolder();
        File.WriteAllText(Path.Combine(temp.Path, "common.cuh"), KernelCatalog.Embedded.Headers["common.cuh"]);
        File.WriteAllText(Path.Combine(temp.Path, "shim.h"), BuiltinsShim);
        File.WriteAllText(Path.Combine(temp.Path, name + ".cu"), KernelCatalog.Embedded.Get(name).Text);
        // No __CUDA_ARCH__ and no __CUDACC_RTC__: the portable path the emulator runs.
        Run("g++", $"-std=c++17 -fsyntax-only -Wall -Werror -Wno-unused-function -include shim.h -x c++ {name}.cu", temp.Path);
    }

    [Fact]
    public void Bf16RoundingAndSinCosMatchReferences()
    {
        using var temp = new TempFolder();
        File.WriteAllText(Path.Combine(temp.Path, "common.cuh"), KernelCatalog.Embedded.Headers["common.cuh"]);
        File.WriteAllText(Path.Combine(temp.Path, "shim.h"), BuiltinsShim);
        File.WriteAllText(Path.Combine(temp.Path, "driver.cpp"), Driver);
        var exe = Path.Combine(temp.Path, "driver");
        Run("g++", $"-std=c++17 -O1 -Wall -Werror -Wno-unused-function -include shim.h driver.cpp -o {exe}", temp.Path);

        var floats = Bf16Inputs();
        var angles = Angles();
        string In(string name) => Path.Combine(temp.Path, name);
        File.WriteAllBytes(In("bits"), floats.SelectMany(f => BitConverter.GetBytes(BitConverter.SingleToUInt32Bits(f))).ToArray());
        File.WriteAllBytes(In("angles"), angles.SelectMany(BitConverter.GetBytes).ToArray());
        Run(exe, $"{In("bits")} {In("bf16")} {In("angles")} {In("sincos")}", temp.Path);

        var ours = File.ReadAllBytes(In("bf16"));
        // bf16 -> fp32 is exact, so torch's rounded values widened back to fp32 carry the bf16 bits on top.
        using (var input = torch.tensor(floats))
        using (var rounded = input.to(torch.bfloat16))
        using (var widened = rounded.to(torch.float32))
        {
            var expected = widened.data<float>().ToArray().Select(f => (short)(BitConverter.SingleToUInt32Bits(f) >> 16)).ToArray();
            for (int i = 0; i < floats.Length; i++)
            {
                ushort got = BitConverter.ToUInt16(ours, 2 * i);
                if (float.IsNaN(floats[i]))
                {
                    // Any quiet NaN with the input's sign is right; torch may canonicalise the payload.
                    Assert.True((got & 0x7fc0) == 0x7fc0 && (got >> 15) == (BitConverter.SingleToUInt32Bits(floats[i]) >> 31), $"NaN 0x{BitConverter.SingleToUInt32Bits(floats[i]):x8} -> 0x{got:x4}");
                    continue;
                }
                Assert.True((ushort)expected[i] == got, $"bf16({floats[i]:R} = 0x{BitConverter.SingleToUInt32Bits(floats[i]):x8}): torch 0x{(ushort)expected[i]:x4}, ours 0x{got:x4}");
            }
        }

        var sincos = File.ReadAllBytes(In("sincos"));
        double worst = 0;
        for (int i = 0; i < angles.Length; i++)
        {
            double angle = angles[i];
            worst = Math.Max(worst, Math.Abs(BitConverter.ToSingle(sincos, 8 * i) - Math.Sin(angle)));
            worst = Math.Max(worst, Math.Abs(BitConverter.ToSingle(sincos, 8 * i + 4) - Math.Cos(angle)));
        }
        // Budget for |error|: reduction in double is exact to ~1e-15 for these angles; rounding the reduced
        // argument to fp32 costs <= 2^-25 * pi/4 ~ 2.3e-8; the fp32 polynomials are accurate to ~6e-8 on
        // [-pi/4, pi/4]; fp32 evaluation adds a few half-ulps of 1 (~6e-8 each). 2.5e-7 (~4 ulp at 1.0) covers
        // the sum with margin while still catching a wrong quadrant, coefficient or reduction constant.
        output.WriteLine($"worst |sin/cos error| over {angles.Length} angles: {worst:E3}");
        Assert.True(worst < 2.5e-7, $"worst sin/cos error {worst:E3}");
    }

    private static float[] Bf16Inputs()
    {
        var values = new List<float>
        {
            0f, -0f, 1f, -1f, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue, float.PositiveInfinity, float.NegativeInfinity,
            float.NaN, BitConverter.UInt32BitsToSingle(0x7f800001), BitConverter.UInt32BitsToSingle(0xffc12345), // signalling and negative NaNs
            BitConverter.UInt32BitsToSingle(0x3f808000), // exactly halfway, even below: rounds down
            BitConverter.UInt32BitsToSingle(0x3f818000), // exactly halfway, odd below: rounds up
            BitConverter.UInt32BitsToSingle(0x7f7f8000), // halfway at the top: rounds to infinity
            BitConverter.UInt32BitsToSingle(0x00008000), // subnormal halfway
        };
        var random = new Random(1234);
        for (int i = 0; i < 20000; i++)
            values.Add(BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)));
        return values.ToArray();
    }

    private static float[] Angles()
    {
        var angles = new List<float>();
        var random = new Random(99);
        // RoPE angles: position (up to 128k) times inverse frequencies in (0, 1], plus small and negative ones.
        for (int i = 0; i < 20000; i++)
            angles.Add((float)(random.Next(0, 131072) * Math.Pow(1_000_000.0, -random.NextDouble())));
        for (int i = 0; i < 2000; i++)
            angles.Add((float)(random.NextDouble() * 20 - 10));
        angles.AddRange([0f, (float)(Math.PI / 4), (float)(Math.PI / 2), (float)Math.PI, 131071f]);
        return angles.ToArray();
    }

    private static void Run(string program, string arguments, string workingDirectory)
    {
        var start = new ProcessStartInfo(program, arguments)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(120_000))
        {
            process.Kill();
            Assert.Fail($"{program} timed out");
        }
        Assert.True(process.ExitCode == 0, $"{program} {arguments} exited {process.ExitCode}:\n{stdout}\n{stderr.Result}");
    }
}
