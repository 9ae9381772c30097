using E3.Backends;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// Every <see cref="IBackend"/> operation of GpuBackend on the emulator against the CPU backend (fp32) on the same
/// random inputs. With bf16 activations the CPU sees the bf16-rounded inputs, so only the GPU side's own roundings
/// separate the two.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GpuBackendOpTests(EmuFixture fixture) : IDisposable
{
    // fp32: both backends are within ~2e-6 relative of the exact result for norms and elementwise ops (see
    // EmuGpuDeviceTests), so 1e-5 relative (plus 1e-6 absolute for values that cancel to ~0) bounds their difference.
    const double F32Relative = 1e-5, F32Absolute = 1e-6;

    // One bf16 rounding of a result: bf16 keeps 8 significant bits, so round-to-nearest is off by at most 2^-8 relative.
    const double Bf16Step = 1.0 / 256;

    readonly EmuDeviceScope _emu = new();
    readonly List<BackendPair> _pairs = [];

    const int Rows = 6, Hidden = 64;

    BackendPair Pair(DType activations)
    {
        _ = fixture.Device;
        var pair = new BackendPair(_emu.Device, activations);
        _pairs.Add(pair);
        return pair;
    }

    public static TheoryData<DType> Activations() => new() { DType.F32, DType.BF16 };

    [Theory, MemberData(nameof(Activations))]
    public void UploadAndDownloadConvertLikeTheCpuBackend(DType act)
    {
        var p = Pair(act);
        var values = Approx.Random(Rows * Hidden, 1, 10f);
        var t = p.Activation(values, Rows, Hidden);
        var (cpu, gpu) = p.Read(t);
        // Exact: both hold the same (bf16-rounded when bf16) values and widen them to fp32 without error.
        Assert.Equal(cpu, gpu);
        using var bf16Weight = p.Gpu.Upload(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()), DType.F32, [Rows, Hidden], DType.BF16);
        Assert.Equal(DType.BF16, bf16Weight.DType);
        Assert.Equal(Approx.RoundBf16(values), p.Read(p.Gpu, bf16Weight));
        Assert.Throws<ArgumentException>(() => p.Gpu.Upload(new byte[7], DType.F32, [2], DType.F32));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.Gpu.Allocate(DType.F16, 2));
        // An empty tensor (no rows yet) has no device memory; uploads and downloads of nothing still work.
        using var empty = p.Gpu.Allocate(act, 0, Hidden);
        p.Gpu.Upload(ReadOnlySpan<float>.Empty, empty);
        p.Gpu.Download(empty, Span<float>.Empty);
    }

    [Theory, MemberData(nameof(Activations))]
    public void EmbeddingGathersRows(DType act)
    {
        var p = Pair(act);
        const int vocab = 13;
        var table = p.Weight(Approx.Random(vocab * Hidden, 2), act, vocab, Hidden);
        int[] ids = [4, 12, 0, 4, 7, 1];
        var y = p.Zeros(ids.Length, Hidden);
        p.Cpu.Embedding(table.Cpu, ids, y.Cpu);
        p.Gpu.Embedding(table.Gpu, ids, y.Gpu);
        var (cpu, gpu) = p.Read(y);
        Assert.Equal(cpu, gpu); // a copy of the same stored values
        Assert.Throws<ArgumentOutOfRangeException>(() => p.Gpu.Embedding(table.Gpu, [vocab], p.Zeros(1, Hidden).Gpu));
    }

    [Theory, MemberData(nameof(Activations))]
    public void RmsNormAndAddRmsNorm(DType act)
    {
        var p = Pair(act);
        var x = p.Activation(Approx.Random(Rows * Hidden, 3, 2f), Rows, Hidden);
        var delta = p.Activation(Approx.Random(Rows * Hidden, 4), Rows, Hidden);
        // fp32 norm weight under bf16 activations: the backend converts it once (exactly, the values are bf16-rounded).
        var w = p.Weight(Approx.RoundBf16(Approx.Random(Hidden, 5, 1.5f)), DType.F32, Hidden);
        var y = p.Zeros(Rows, Hidden);
        p.Cpu.RmsNorm(x.Cpu, w.Cpu, 1e-6f, y.Cpu);
        p.Gpu.RmsNorm(x.Gpu, w.Gpu, 1e-6f, y.Gpu);
        // bf16: the normed value and the product with w are each rounded, 2 steps.
        Compare(p.Read(y), act == DType.F32 ? F32Relative : 2 * Bf16Step + F32Relative, "RmsNorm");

        var sum = p.Zeros(Rows, Hidden);
        p.Cpu.AddRmsNorm(x.Cpu, delta.Cpu, sum.Cpu, w.Cpu, 1e-6f, y.Cpu);
        p.Gpu.AddRmsNorm(x.Gpu, delta.Gpu, sum.Gpu, w.Gpu, 1e-6f, y.Gpu);
        // bf16: the sum is rounded once (1 step, which the norm carries into y) before the two steps above.
        Compare(p.Read(sum), act == DType.F32 ? F32Relative : Bf16Step, "AddRmsNorm sum");
        Compare(p.Read(y), act == DType.F32 ? F32Relative : 3 * Bf16Step + F32Relative, "AddRmsNorm y");

        // sum may be x itself.
        p.Cpu.AddRmsNorm(x.Cpu, delta.Cpu, x.Cpu, w.Cpu, 1e-6f, y.Cpu);
        p.Gpu.AddRmsNorm(x.Gpu, delta.Gpu, x.Gpu, w.Gpu, 1e-6f, y.Gpu);
        Compare(p.Read(x), act == DType.F32 ? F32Relative : Bf16Step, "AddRmsNorm in place");
        Compare(p.Read(y), act == DType.F32 ? F32Relative : 3 * Bf16Step + F32Relative, "AddRmsNorm in place y");
    }

    [Theory]
    [InlineData(DType.F32, 1f)]
    [InlineData(DType.F32, 0.375f)]
    [InlineData(DType.BF16, 1f)]
    [InlineData(DType.BF16, 0.375f)]
    public void GatedResidual(DType act, float gate)
    {
        var p = Pair(act);
        var h = p.Activation(Approx.Random(Rows * Hidden, 6), Rows, Hidden);
        var a = p.Activation(Approx.Random(Rows * Hidden, 7), Rows, Hidden);
        var m = p.Activation(Approx.Random(Rows * Hidden, 8), Rows, Hidden);
        var sum = p.Read(p.Cpu, a.Cpu).Zip(p.Read(p.Cpu, m.Cpu), (x, y) => (double)x + y).ToArray();
        p.Cpu.GatedResidual(h.Cpu, a.Cpu, m.Cpu, gate);
        p.Gpu.GatedResidual(h.Gpu, a.Gpu, m.Gpu, gate);
        var (cpu, gpu) = p.Read(h);
        if (act == DType.F32 && gate == 1f)
            Assert.Equal(cpu, gpu); // gate 1 writes a + m itself, bit for bit
        else if (act == DType.F32)
            Approx.Close(cpu, gpu, F32Relative, F32Absolute, "GatedResidual");
        else
            // bf16: a + m rounded (a step of |a + m|, scaled by the gate) and the result rounded (a step of |h|).
            Approx.Close(cpu.Select(v => (double)v).ToArray(), gpu, i => Bf16Step * (Math.Abs(cpu[i]) + gate * Math.Abs(sum[i])) + 1e-7, "GatedResidual bf16");
    }

    [Theory]
    [InlineData(DType.F32, DType.F32, false)]
    [InlineData(DType.F32, DType.F32, true)]
    [InlineData(DType.F32, DType.BF16, true)]
    [InlineData(DType.BF16, DType.BF16, false)]
    [InlineData(DType.BF16, DType.F32, true)]
    public void MatMulWithAndWithoutBias(DType act, DType weights, bool withBias)
    {
        var p = Pair(act);
        const int n = 40;
        // Weights scaled by 1/sqrt(K) keep outputs of order 1, so the K = 64 fp32 accumulations of either backend are
        // within 64·2^-24·Σ|x·w| ≈ 64·6e-8·2 ≈ 8e-6 of exact: 1e-5 absolute plus 1e-5 relative bounds their difference.
        var x = p.Activation(Approx.Random(Rows * Hidden, 9), Rows, Hidden);
        // bf16-exact weights: storing them as either dtype changes no value, so the two backends multiply the same numbers.
        var w = p.Weight(Approx.RoundBf16(Approx.Random(n * Hidden, 10, 0.125f)), weights, n, Hidden);
        var bias = withBias ? p.Weight(Approx.RoundBf16(Approx.Random(n, 11)), DType.F32, n) : default;
        var y = p.Zeros(Rows, n);
        p.Cpu.MatMul(x.Cpu, w.Cpu, bias.Cpu, y.Cpu);
        p.Gpu.MatMul(x.Gpu, w.Gpu, bias.Gpu, y.Gpu);
        var (cpu, gpu) = p.Read(y);
        // bf16 output: one rounding of the epilogue's x·wᵀ + bias, as torch's addmm.
        Approx.Close(cpu, gpu, act == DType.F32 ? 1e-5 : Bf16Step + 1e-5, 1e-5, $"MatMul {act}/{weights} bias={withBias}");
    }

    [Theory]
    [InlineData(DType.F32, true)]
    [InlineData(DType.F32, false)]
    [InlineData(DType.BF16, true)]
    public void HeadNormRope(DType act, bool withNorm)
    {
        var p = Pair(act);
        const int heads = 4, headDim = 16, T = 3, start = 2;
        var x = p.Activation(Approx.Random(Rows * heads * headDim, 12, 2f), Rows, heads * headDim);
        var w = withNorm ? p.Weight(Approx.RoundBf16(Approx.Random(headDim, 13, 1.5f)), DType.F32, headDim) : default;
        p.Cpu.HeadNormRope(x.Cpu, heads, headDim, w.Cpu, 1e-6f, 1e6f, T, start);
        p.Gpu.HeadNormRope(x.Gpu, heads, headDim, w.Gpu, 1e-6f, 1e6f, T, start);
        var (cpu, gpu) = p.Read(x);
        // Relative to each rotation pair's size r = sqrt(y_i² + y_{i+half}²) (|a| + |b| ≤ √2·r): fp32 angles p·θ^(-2i/d)
        // with p ≤ 4 carry ~1e-6 absolute error, and sin/cos tables vs polynomials a few ulp: 1e-5·r. bf16 takes seven
        // rounding steps on terms no larger than |a| + |b| (see EmuGpuDeviceTests): 7·2^-8·√2·r < 2^-4·r.
        double factor = act == DType.F32 ? 1e-5 : 1.0 / 16;
        int half = headDim / 2;
        double PairSize(int i)
        {
            int j = i % headDim < half ? i + half : i - half;
            return Math.Sqrt((double)cpu[i] * cpu[i] + (double)cpu[j] * cpu[j]);
        }
        Approx.Close(cpu.Select(v => (double)v).ToArray(), gpu, i => factor * PairSize(i) + 1e-7, $"HeadNormRope {act} norm={withNorm}");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void QkNormRopeEqualsHeadNormRopeOnEach(DType act)
    {
        // One launch for q and k (each with its own norm weight; here k has none) gives what two launches give, bit for
        // bit, and the CPU backend's QkNormRope is its two HeadNormRope calls.
        var p = Pair(act);
        const int heads = 4, kvHeads = 2, headDim = 16, T = 3, start = 5;
        float[] qValues = Approx.Random(Rows * heads * headDim, 30, 2f), kValues = Approx.Random(Rows * kvHeads * headDim, 31, 2f);
        var qNorm = p.Weight(Approx.RoundBf16(Approx.Random(headDim, 32, 1.5f)), DType.F32, headDim);
        var (q, k) = (p.Activation(qValues, Rows, heads * headDim), p.Activation(kValues, Rows, kvHeads * headDim));
        var (q2, k2) = (p.Activation(qValues, Rows, heads * headDim), p.Activation(kValues, Rows, kvHeads * headDim));
        p.Gpu.QkNormRope(q.Gpu, k.Gpu, heads, kvHeads, headDim, qNorm.Gpu, null, 1e-6f, 1e6f, T, start);
        p.Gpu.HeadNormRope(q2.Gpu, heads, headDim, qNorm.Gpu, 1e-6f, 1e6f, T, start);
        p.Gpu.HeadNormRope(k2.Gpu, kvHeads, headDim, null, 1e-6f, 1e6f, T, start);
        p.Cpu.QkNormRope(q.Cpu, k.Cpu, heads, kvHeads, headDim, qNorm.Cpu, null, 1e-6f, 1e6f, T, start);
        p.Cpu.HeadNormRope(q2.Cpu, heads, headDim, qNorm.Cpu, 1e-6f, 1e6f, T, start);
        p.Cpu.HeadNormRope(k2.Cpu, kvHeads, headDim, null, 1e-6f, 1e6f, T, start);
        var (qCpu, qGpu) = p.Read(q);
        var (q2Cpu, q2Gpu) = p.Read(q2);
        var (kCpu, kGpu) = p.Read(k);
        var (k2Cpu, k2Gpu) = p.Read(k2);
        Assert.Equal(q2Gpu, qGpu);
        Assert.Equal(k2Gpu, kGpu);
        Assert.Equal(q2Cpu, qCpu);
        Assert.Equal(k2Cpu, kCpu);
        Assert.NotEqual(qValues, qGpu.Select(v => (float)v).ToArray());
    }

    [Theory, MemberData(nameof(Activations))]
    public void AttentionPrefillThenDecodeWithGqa(DType act)
    {
        var p = Pair(act);
        const int batch = 2, heads = 4, kvHeads = 2, headDim = 16, capacity = 6, T = 4;
        int qw = heads * headDim, kvw = kvHeads * headDim;
        var kCache = p.Zeros(batch, capacity, kvw);
        var vCache = p.Zeros(batch, capacity, kvw);
        float scale = 1f / MathF.Sqrt(headDim);
        int seed = 20;
        foreach (var (tokens, start) in new[] { (T, 0), (1, T), (1, T + 1) })
        {
            var q = p.Activation(Approx.Random(batch * tokens * qw, seed++), batch * tokens, qw);
            var k = p.Activation(Approx.Random(batch * tokens * kvw, seed++), batch * tokens, kvw);
            var v = p.Activation(Approx.Random(batch * tokens * kvw, seed++), batch * tokens, kvw);
            var o = p.Zeros(batch * tokens, qw);
            p.Cpu.Attention(q.Cpu, k.Cpu, v.Cpu, kCache.Cpu, vCache.Cpu, batch, tokens, start, heads, kvHeads, headDim, scale, o.Cpu);
            p.Gpu.Attention(q.Gpu, k.Gpu, v.Gpu, kCache.Gpu, vCache.Gpu, batch, tokens, start, heads, kvHeads, headDim, scale, o.Gpu);
            // The kernel sums in another order than the CPU (tiled online softmax, split-K decode): in fp32 the outputs,
            // convex combinations of |v| <= 1, agree to a few fp32 roundings of each dot product and exp (1e-5 covers
            // headDim = 16 terms with margin); in bf16 the single output rounding can land one bf16 step apart on top.
            var (cpu, gpu) = p.Read(o);
            Approx.Close(cpu, gpu, act == DType.F32 ? 1e-5 : 2 * Bf16Step, 1e-6, $"Attention output (start {start})");
            var (kc, kg) = p.Read(kCache);
            Assert.Equal(kc, kg);
        }
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
        {
            var q = p.Zeros(batch * 2, qw);
            var kv = p.Zeros(batch * 2, kvw);
            p.Gpu.Attention(q.Gpu, kv.Gpu, kv.Gpu, kCache.Gpu, vCache.Gpu, batch, 2, capacity - 1, heads, kvHeads, headDim, scale, q.Gpu);
        });
        Assert.Contains("exceed the KV cache capacity 6", error.Message);
    }

    [Theory, MemberData(nameof(Activations))]
    public void SwiGluInPlaceAndGatherRows(DType act)
    {
        var p = Pair(act);
        var gate = p.Activation(Approx.Random(Rows * Hidden, 30, 5f), Rows, Hidden);
        var up = p.Activation(Approx.Random(Rows * Hidden, 31, 2f), Rows, Hidden);
        p.Cpu.SwiGlu(gate.Cpu, up.Cpu, gate.Cpu);
        p.Gpu.SwiGlu(gate.Gpu, up.Gpu, gate.Gpu);
        // bf16: silu(g) and the product are each rounded, 2 steps.
        Compare(p.Read(gate), act == DType.F32 ? F32Relative : 2 * Bf16Step + F32Relative, "SwiGlu");

        int[] rows = [5, 0, 5];
        var picked = p.Zeros(rows.Length, Hidden);
        p.Cpu.GatherRows(gate.Cpu, rows, picked.Cpu);
        p.Gpu.GatherRows(gate.Gpu, rows, picked.Gpu);
        var (cpuRows, gpuRows) = p.Read(picked);
        var gpuAll = p.Read(p.Gpu, gate.Gpu);
        // Exact copies of the GPU's own rows.
        Assert.Equal(rows.SelectMany(r => gpuAll.AsSpan(r * Hidden, Hidden).ToArray()).ToArray(), gpuRows);
        Assert.Equal(rows.Length * Hidden, cpuRows.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => p.Gpu.GatherRows(gate.Gpu, [Rows], p.Zeros(1, Hidden).Gpu));
    }

    [Fact]
    public void TensorsOfAnotherBackendOrDtypeAreRejected()
    {
        var p = Pair(DType.BF16);
        var cpuOnly = p.Zeros(2, Hidden).Cpu;
        var f32 = p.Gpu.Allocate(DType.F32, 2, Hidden);
        try
        {
            var y = p.Zeros(2, Hidden).Gpu;
            Assert.Contains("does not belong", Assert.Throws<ArgumentException>(() => p.Gpu.SwiGlu(cpuOnly, y, y)).Message);
            Assert.Contains("computes with BF16 activations", Assert.Throws<ArgumentException>(() => p.Gpu.SwiGlu(f32, y, y)).Message);
        }
        finally
        {
            f32.Dispose();
        }
    }

    static void Compare((float[] Cpu, float[] Gpu) values, double relative, string what) =>
        Approx.Close(values.Cpu, values.Gpu, relative, F32Absolute, what);

    public void Dispose()
    {
        foreach (var p in _pairs) p.Dispose();
        _emu.Dispose();
    }
}
