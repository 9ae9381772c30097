using E3.Backends;
using E3.Backends.Cpu;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.KernelBench;

/// <summary>
/// RoPE angles at long positions: the kernel (emulator) must build inv_freq the way transformers does in fp32 (with an
/// exactly rounded pow), so that at positions up to 32768 its rotation matches a double-precision rotation by the same
/// fp32 angles, and the CPU backend, which builds the same frequencies.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class RopeFrequencyTests(EmuFixture fixture) : IDisposable
{
    private const int HeadDim = 128, Heads = 2, TokensPerLaunch = 8;
    private const double U = 1.0 / (1 << 24); // fp32 unit roundoff
    private static readonly int[] Starts = [0, 3996, 16380, 32761]; // positions up to 32768

    private readonly EmuDeviceScope emu = new();
    private readonly List<DeviceBuffer> buffers = [];

    [Theory]
    [InlineData(1e6f)]
    [InlineData(5e5f)]
    public void KernelRotationMatchesTorchFrequenciesAtLongPositions(float theta)
    {
        _ = fixture.Device;
        // The reference frequencies: theta^(fp32(2i)/d) in fp64 rounded once to fp32, then 1/x in fp32 - torch's fp32
        // recipe with an exactly rounded pow. torch's own CPU pow (a vectorised 1-ulp powf) agrees to within one ulp:
        // for theta = 1e6, d = 128 it differs at i = 37 only, where theta^e lies 0.51 ulp above a float and torch rounds down.
        var invFreq = Enumerable.Range(0, HeadDim / 2).Select(i => 1f / (float)Math.Pow(theta, (2 * i) / (float)HeadDim)).ToArray();
        var torchInvFreq = TorchInverseFrequencies(theta);
        for (int i = 0; i < HeadDim / 2; i++)
            Assert.True(Math.Abs(BitConverter.SingleToInt32Bits(torchInvFreq[i]) - BitConverter.SingleToInt32Bits(invFreq[i])) <= 1,
                $"inv_freq[{i}]: torch {torchInvFreq[i]:R} vs {invFreq[i]:R}");

        foreach (int start in Starts)
        {
            var x = Input(start);
            var got = RunKernel(x, theta, start);
            var (want, pairSize) = Reference(x, invFreq, start);
            for (int i = 0; i < x.Length; i++)
            {
                // e3_sincos is within 2 ulp (2^-23 absolute, |cos|, |sin| <= 1) of the exact cos/sin of the fp32 angle,
                // and a·c - b·s rounds three times (3u relative to |a| + |b|): 7u; 8u leaves a margin. The former
                // expf/logf frequencies were ~1e-6 off relatively, i.e. ~1e-4 rad here, hundreds of times this bound.
                double bound = 8 * U * pairSize[i];
                Assert.True(Math.Abs(got[i] - want[i]) <= bound,
                    $"theta {theta}, position {start + i / (Heads * HeadDim)}, element {i % HeadDim}: kernel {got[i]} vs {want[i]} (bound {bound:E2})");
            }
        }
    }

    [Theory]
    [InlineData(1e6f)]
    [InlineData(5e5f)]
    public void KernelAndCpuBackendAgree(float theta)
    {
        _ = fixture.Device;
        using var cpu = new CpuBackend(1);
        foreach (int start in Starts)
        {
            var x = Input(start);
            var got = RunKernel(x, theta, start);
            using var t = cpu.Allocate(DType.F32, TokensPerLaunch, Heads * HeadDim);
            cpu.Upload(x, t);
            cpu.HeadNormRope(t, Heads, HeadDim, null, 1e-6f, theta, TokensPerLaunch, start);
            var want = new float[x.Length];
            cpu.Download(t, want);
            for (int i = 0; i < x.Length; i++)
            {
                // Same fp32 angles; MathF.Cos/Sin are within 1 ulp and e3_sincos within 2, plus the three roundings of
                // a·c - b·s on each side: (2 + 1) · 2^-23 + 6u = 12u relative to |a| + |b|.
                int pair = i % HeadDim < HeadDim / 2 ? i + HeadDim / 2 : i - HeadDim / 2;
                double bound = 12 * U * (Math.Abs(x[i]) + Math.Abs(x[pair]));
                Assert.True(Math.Abs(got[i] - want[i]) <= bound, $"theta {theta}, start {start}, element {i}: emu {got[i]} vs cpu {want[i]}");
            }
        }
    }

    // transformers' default RoPE init: 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), fp32.
    private static float[] TorchInverseFrequencies(float theta)
    {
        using var scope = NewDisposeScope();
        var exponent = arange(0, HeadDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / HeadDim;
        var inv = tensor(theta, ScalarType.Float32).pow(exponent).reciprocal();
        return inv.data<float>().ToArray();
    }

    // rotate_half with the fp32 angle position * inv_freq (one fp32 product, as transformers' matmul of the two) and
    // cos/sin of that angle in double.
    private static (double[] Values, double[] PairSize) Reference(float[] x, float[] invFreq, int start)
    {
        var values = new double[x.Length];
        var pairSize = new double[x.Length];
        int half = HeadDim / 2;
        for (int row = 0; row < TokensPerLaunch; row++)
            for (int h = 0; h < Heads; h++)
            {
                int o = (row * Heads + h) * HeadDim;
                float position = start + row;
                for (int i = 0; i < half; i++)
                {
                    double angle = position * invFreq[i];
                    double a = x[o + i], b = x[o + i + half], c = Math.Cos(angle), s = Math.Sin(angle);
                    values[o + i] = a * c - b * s;
                    values[o + i + half] = b * c + a * s;
                    pairSize[o + i] = pairSize[o + i + half] = Math.Abs(a) + Math.Abs(b);
                }
            }
        return (values, pairSize);
    }

    private float[] RunKernel(float[] x, float theta, int start)
    {
        using var rope = new RopeKernels(emu.Device);
        var buffer = emu.Upload<float>(buffers, x);
        rope.HeadNormRope(buffer, default, 1e-6f, new RopeLayout(TokensPerLaunch, Heads, HeadDim, theta, TokensPerLaunch, start), emu.Stream.Handle);
        return emu.Download(buffer, x.Length);
    }

    private static float[] Input(int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, TokensPerLaunch * Heads * HeadDim).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    public void Dispose()
    {
        foreach (var b in buffers) b.Dispose();
        emu.Dispose();
    }
}
