using E3.Backends;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.GpuTraining;

/// <summary>
/// Every <see cref="ITrainingBackend"/> method of GpuBackend on the emulator against the CPU backend, on the same random
/// fp32 inputs (and fp32 or bf16 weights where the method reads a weight).
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GpuTrainingOpTests : IDisposable
{
    // Both backends compute the same fp32 formulas; they differ only in summation order (GEMM blocking, warp and block
    // reductions against the CPU's SIMD dot products). Each result element sums at most ~100 products of O(1) values,
    // so the rounding difference is a few fp32 ulps of the sum, ~1e-6 relative norm-wise; 1e-5 leaves a factor of ten,
    // while a wrong term, scale or index shows as an O(1) relative error.
    const double Bound = 1e-5;

    readonly EmuDeviceScope _emu = new();
    readonly BackendPair _p;

    public GpuTrainingOpTests(EmuFixture fixture)
    {
        _ = fixture.Device;
        _p = new BackendPair(_emu.Device, DType.F32);
    }

    /// <summary>Runs the same operation on the CPU and on the emulator; <c>pick</c> selects that backend's half of a pair.</summary>
    void Both(Action<ITrainingBackend, Func<(Tensor Cpu, Tensor Gpu), Tensor>> op)
    {
        op(_p.Cpu, t => t.Cpu);
        op(_p.Gpu, t => t.Gpu);
    }

    void Same((Tensor Cpu, Tensor Gpu) t, string what, double floor = 0)
    {
        var (cpu, gpu) = _p.Read(t);
        GradientAssert.Close(cpu, gpu, Bound, what, floor);
    }

    (Tensor Cpu, Tensor Gpu) Random(int seed, params int[] shape) => _p.Activation(Approx.Random(shape.Aggregate(1, (a, b) => a * b), seed), shape);

    [Fact]
    public void CopyAndAddInPlaceAreExact()
    {
        var x = Random(1, 5, 12);
        var y = Random(2, 5, 12);
        var copy = _p.Zeros(5, 12);
        Both((b, pick) => { b.Copy(pick(x), pick(copy)); b.AddInPlace(pick(y), pick(x)); });
        var (cpuCopy, gpuCopy) = _p.Read(copy);
        Assert.Equal(cpuCopy, gpuCopy);
        var (cpuSum, gpuSum) = _p.Read(y);
        Assert.Equal(cpuSum, gpuSum); // one fp32 add per element on both sides
        Assert.Equal(_p.Read(_p.Gpu, x.Gpu), gpuCopy);
    }

    [Fact]
    public void ClearZeroesWhereTheTensorLives()
    {
        var x = Random(3, 7, 33);
        Assert.Contains(_p.Read(_p.Gpu, x.Gpu), v => v != 0f); // so the check below can fail
        Both((b, pick) => b.Clear(pick(x)));
        var (cpu, gpu) = _p.Read(x);
        Assert.All(cpu, v => Assert.Equal(0f, v));
        Assert.All(gpu, v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData(DType.F32, false)]
    [InlineData(DType.F32, true)]
    [InlineData(DType.BF16, true)]
    public void MatMulGradientsMatchTheCpu(DType weightType, bool withBias)
    {
        const int m = 13, n = 24, k = 40;
        var dy = Random(3, m, n);
        var x = Random(4, m, k);
        var w = _p.Weight(Approx.Random(n * k, 5, 0.3f), weightType, n, k);
        var dx = Random(6, m, k); // accumulated into below
        var dxFresh = _p.Zeros(m, k);
        var dw = Random(7, n, k);
        var db = Random(8, n);
        Both((b, pick) =>
        {
            b.MatMulInputGrad(pick(dy), pick(w), pick(dx), accumulate: true);
            b.MatMulInputGrad(pick(dy), pick(w), pick(dxFresh), accumulate: false);
            b.MatMulWeightGrad(pick(x), pick(dy), pick(dw), withBias ? pick(db) : null);
        });
        Same(dx, "dx (accumulated)");
        Same(dxFresh, "dx");
        Same(dw, "dw");
        // The bias gradient adds the rows of dy in row order on both sides: the same fp32 additions, bit for bit.
        var (cpuBias, gpuBias) = _p.Read(db);
        if (withBias) Assert.Equal(cpuBias, gpuBias);
        else Assert.Equal(Approx.Random(n, 8), gpuBias);
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public void RmsNormBackwardMatchesTheCpu(bool accumulate, bool weightGradient)
    {
        const int rows = 9, d = 48;
        var x = Random(10, rows, d);
        var w = _p.Weight(Approx.Random(d, 11), DType.F32, d);
        var dy = Random(12, rows, d);
        var dx = Random(13, rows, d);
        var dw = Random(14, d);
        Both((b, pick) => b.RmsNormBackward(pick(x), pick(w), 1e-6f, pick(dy), pick(dx), accumulate, weightGradient ? pick(dw) : null));
        Same(dx, "dx");
        Same(dw, "dw");
    }

    [Theory]
    [InlineData(true, 0)]
    [InlineData(true, 5)]
    [InlineData(false, 0)]
    public void HeadNormRopeBackwardMatchesTheCpu(bool norm, int start)
    {
        const int batch = 2, T = 7, heads = 3, headDim = 8;
        var input = Random(20, batch * T, heads * headDim);
        var w = _p.Weight(Approx.Random(headDim, 21), DType.F32, headDim);
        var grad = Random(22, batch * T, heads * headDim);
        var dw = Random(23, headDim);
        Both((b, pick) => b.HeadNormRopeBackward(pick(input), heads, headDim, norm ? pick(w) : null, 1e-6f, 10_000f, T, start, pick(grad),
            norm ? pick(dw) : null));
        Same(grad, "d input");
        Same(dw, "d norm weight");
    }

    [Theory]
    [InlineData(2, 17, 4, 2, 8)]   // T crosses a 16-row tile; two query heads per kv head
    [InlineData(1, 33, 2, 1, 72)]  // three tiles; head dim above 64 (the next register footprint); one kv head for all
    [InlineData(3, 1, 2, 2, 16)]   // a single position: each row attends only to itself
    [InlineData(1, 5, 2, 1, 200)]  // head dim above 128: the largest register footprint, shared memory above 48 KiB (opt-in)
    public void AttentionForwardAndBackwardMatchTheCpu(int batch, int T, int heads, int kvHeads, int headDim)
    {
        int rows = batch * T;
        float scale = 1f / MathF.Sqrt(headDim);
        var q = Random(30, rows, heads * headDim);
        var k = Random(31, rows, kvHeads * headDim);
        var v = Random(32, rows, kvHeads * headDim);
        var o = _p.Zeros(rows, heads * headDim);
        var lse = _p.Zeros(rows, heads);
        var dO = Random(33, rows, heads * headDim);
        var (dq, dk, dv) = (Random(34, rows, heads * headDim), Random(35, rows, kvHeads * headDim), Random(36, rows, kvHeads * headDim));
        Both((b, pick) =>
        {
            b.AttentionForward(pick(q), pick(k), pick(v), batch, T, heads, kvHeads, headDim, scale, pick(o), pick(lse));
            b.AttentionBackward(pick(q), pick(k), pick(v), pick(o), pick(dO), pick(lse), batch, T, heads, kvHeads, headDim, scale,
                pick(dq), pick(dk), pick(dv));
        });
        Same(o, "output");
        Same(lse, "log-sum-exp");
        // dS = P·(dO·v − rowsum(dO∘O)) cancels exactly when a row sees one key (T = 1: O = v), so dq and dk are zero up to
        // rounding of size ε·|dO||v|: measured against ‖dO‖ there rather than against a zero reference.
        double floor = Norm(_p.Read(_p.Cpu, dO.Cpu));
        Same(dq, "dq", floor);
        Same(dk, "dk", floor);
        Same(dv, "dv");

        // No atomics anywhere in the attention backward: a second run gives the same bits (the emulator runs blocks on
        // several worker threads, so a racy accumulation would show here).
        var first = (_p.Read(_p.Gpu, dq.Gpu), _p.Read(_p.Gpu, dk.Gpu), _p.Read(_p.Gpu, dv.Gpu));
        _p.Gpu.AttentionBackward(q.Gpu, k.Gpu, v.Gpu, o.Gpu, dO.Gpu, lse.Gpu, batch, T, heads, kvHeads, headDim, scale, dq.Gpu, dk.Gpu, dv.Gpu);
        Assert.Equal(first.Item1, _p.Read(_p.Gpu, dq.Gpu));
        Assert.Equal(first.Item2, _p.Read(_p.Gpu, dk.Gpu));
        Assert.Equal(first.Item3, _p.Read(_p.Gpu, dv.Gpu));
    }

    static double Norm(float[] values) => Math.Sqrt(values.Sum(x => (double)x * x));

    [Fact]
    public void SwiGluBackwardMatchesTheCpu()
    {
        var gate = Random(40, 6, 40);
        var up = Random(41, 6, 40);
        var dy = Random(42, 6, 40);
        var (dGate, dUp) = (_p.Zeros(6, 40), _p.Zeros(6, 40));
        Both((b, pick) => b.SwiGluBackward(pick(gate), pick(up), pick(dy), pick(dGate), pick(dUp)));
        // Elementwise: only expf may differ between libm and the CPU's MathF.Exp by an ulp or so.
        Same(dGate, "d gate");
        Same(dUp, "d up");
    }

    [Theory]
    [InlineData(0f, 5, 48)]
    [InlineData(0.4f, 5, 48)]
    [InlineData(1f, 300, 256)] // 76,800 values: the kernel's 256 blocks each loop over several elements
    public void GatedResidualBackwardMatchesTheCpuDoubleSum(float gate, int rows, int width)
    {
        var h = Random(50, rows, width);
        var a = Random(51, rows, width);
        var mlp = Random(52, rows, width);
        var dOut = Random(53, rows, width);
        var dh = _p.Zeros(rows, width);
        var dLayer = _p.Zeros(rows, width);
        double cpu = _p.Cpu.GatedResidualBackward(h.Cpu, a.Cpu, mlp.Cpu, gate, dOut.Cpu, dh.Cpu, dLayer.Cpu);
        double gpu = _p.Gpu.GatedResidualBackward(h.Gpu, a.Gpu, mlp.Gpu, gate, dOut.Gpu, dh.Gpu, dLayer.Gpu);
        // Each product is formed identically in double on both sides; only the order of the double additions differs,
        // and each block's sum travels as an fp32 (hi, lo) pair good to ~2^-48. So the two agree to 1e-12 of Σ|terms|.
        var (hv, av, mv, gv) = (_p.Read(_p.Cpu, h.Cpu), _p.Read(_p.Cpu, a.Cpu), _p.Read(_p.Cpu, mlp.Cpu), _p.Read(_p.Cpu, dOut.Cpu));
        double magnitude = 0;
        for (int i = 0; i < hv.Length; i++) magnitude += Math.Abs((double)gv[i] * ((double)av[i] + mv[i] - hv[i]));
        Assert.True(Math.Abs(gpu - cpu) <= 1e-12 * magnitude, $"dL/dgate {gpu} vs the CPU's {cpu} (Σ|terms| {magnitude})");
        var (cpuDh, gpuDh) = _p.Read(dh);
        var (cpuDl, gpuDl) = _p.Read(dLayer);
        Assert.Equal(cpuDh, gpuDh); // one fp32 multiply per element on both sides
        Assert.Equal(cpuDl, gpuDl);
        // dh may be dOut itself (the trainer passes the same tensor).
        _p.Gpu.GatedResidualBackward(h.Gpu, a.Gpu, mlp.Gpu, gate, dOut.Gpu, dOut.Gpu, dLayer.Gpu);
        Assert.Equal(cpuDh, _p.Read(_p.Gpu, dOut.Gpu));
    }

    [Fact]
    public void EmbeddingBackwardAddsRepeatedIdsInTokenOrder()
    {
        int[] ids = [3, 0, 3, 7, 3, 0, 9];
        var dy = Random(60, ids.Length, 20);
        var table = Random(61, 10, 20);
        Both((b, pick) => b.EmbeddingBackward(ids, pick(dy), pick(table)));
        // The grouped kernel adds each id's rows in token order, as the CPU's loop does: the same bits.
        var (cpu, gpu) = _p.Read(table);
        Assert.Equal(cpu, gpu);
        Assert.NotEqual(Approx.Random(200, 61)[60], gpu[60]); // row 3 really changed
        var two = Random(62, 2, 20);
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => _p.Gpu.EmbeddingBackward([1, 10], two.Gpu, table.Gpu));
        Assert.Contains("ids[1] = 10", bad.Message);
    }

    [Fact]
    public void Bf16ActivationsAreRefusedWithAClearError()
    {
        using var bf16 = new BackendPair(_emu.Device, DType.BF16);
        var (_, x) = bf16.Zeros(2, 4);
        var (_, y) = bf16.Zeros(2, 4);
        var error = Assert.Throws<NotSupportedException>(() => bf16.Gpu.AddInPlace(y, x));
        Assert.Contains("F32 activations", error.Message);
    }

    public void Dispose()
    {
        _p.Dispose();
        _emu.Dispose();
    }
}
