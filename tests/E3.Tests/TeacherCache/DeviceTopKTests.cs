using E3.Backends;
using E3.Model;
using E3.Model.Decoder;
using E3.Pruning.TeacherCache;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using E3.Tests.Support;
using Xunit;
using Gpu = E3.Backends.Gpu.GpuBackend;

namespace E3.Tests.TeacherCache;

/// <summary>
/// The teacher cache's top-K selected on the device (kernels/sampling.cu, <c>e3_topk_logprobs</c>, through
/// GpuBackend over the emulator) against <see cref="TopKSelector"/>, the host selection in double, on the same logits.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class DeviceTopKTests(EmuFixture fixture) : IDisposable
{
    // The kernel sums expf(z − max) per thread in double and the host sums exp in double; expf is within 1 ulp, so the
    // log-sum-exp agrees to ~1e-7 relative. The stored value is fp32, whose ulp is 9.5e-7 for |log p| in [8, 16): two
    // ulps at the largest magnitudes here. A wrong row, index or normaliser is off by far more.
    const float Bound = 2e-6f;

    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    static float[] Logits(int rows, int vocab, int seed)
    {
        var random = new Random(seed);
        var x = new float[rows * vocab];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 12 - 6);
        // Ties: the row's best value repeated further on, and a run of equal values, must come out lower index first.
        for (int r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * vocab, vocab);
            float best = row.ToArray().Max();
            row[vocab - 1] = best;
            row[vocab / 2] = best;
            for (int c = 3; c < 9 && c < vocab; c++) row[c] = 5.5f;
        }
        return x;
    }

    [Theory]
    [InlineData(DType.F32, 5, 100, 1)]     // fewer columns than threads
    [InlineData(DType.F32, 3, 4099, 10)]   // the cache's usual K, a ragged last stride
    [InlineData(DType.F32, 2, 1000, 64)]   // the largest K
    [InlineData(DType.BF16, 4, 777, 12)]   // bf16 logits, many exact ties after rounding
    public void DeviceSelectionMatchesTheHostOne(DType dtype, int rows, int vocab, int k)
    {
        using var backend = new Gpu(_emu.Device, dtype, ownsDevice: false);
        using var logits = backend.Allocate(dtype, rows, vocab);
        backend.Upload(Logits(rows, vocab, 40 + k), logits);
        var values = new float[rows * vocab];
        backend.Download(logits, values); // the bf16-rounded values, for the host reference
        var indices = new int[rows * k];
        var logProbs = new float[rows * k];
        backend.TopKLogProbs(logits, indices, logProbs);

        var wantIndices = new int[rows * k];
        var wantLogProbs = new float[rows * k];
        for (int r = 0; r < rows; r++)
            TopKSelector.Select(values.AsSpan(r * vocab, vocab), wantIndices.AsSpan(r * k, k), wantLogProbs.AsSpan(r * k, k));
        Assert.Equal(wantIndices, indices);
        for (int i = 0; i < logProbs.Length; i++)
            Assert.True(Math.Abs(logProbs[i] - wantLogProbs[i]) <= Bound, $"[{i}] {logProbs[i]} vs {wantLogProbs[i]}");
    }

    [Fact]
    public void ANonFiniteRowIsNamed()
    {
        using var backend = new Gpu(_emu.Device, DType.F32, ownsDevice: false);
        using var logits = backend.Allocate(DType.F32, 3, 50);
        var x = Logits(3, 50, 7);
        x[2 * 50 + 11] = float.NegativeInfinity;
        backend.Upload(x, logits);
        var e = Assert.Throws<ArgumentException>(() => backend.TopKLogProbs(logits, new int[3 * 4], new float[3 * 4]));
        Assert.Contains("logits row 2 holds NaN or an infinity", e.Message);
        Assert.Throws<ArgumentException>(() => backend.TopKLogProbs(logits, new int[3 * 65], new float[3 * 65])); // K above 64
    }

    [Fact]
    public void TheTeacherEntriesOnTheDeviceAreTheHostSelectionOfTheSameLogits()
    {
        using var dir = new TempDir("e3-device-topk");
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 64, Vocab = 300, InitStd = 0.2f, Seed = 3 },
            dir["model"]);
        using var backend = new Gpu(_emu.Device, DType.BF16, ownsDevice: false);
        using var teacher = DecoderModel.Load(dir["model"], backend);
        int[] ids = Enumerable.Range(0, 21).Select(i => (i * 53 + 7) % 300).ToArray();
        const int k = 10;
        var indices = new int[ids.Length * k];
        var logProbs = new float[ids.Length * k];
        TeacherTopK.Compute(teacher, ids, indices, logProbs);

        var logits = teacher.Forward(ids); // the same computation, downloaded
        for (int t = 0; t < ids.Length; t++)
        {
            var wantIndices = new int[k];
            var wantLogProbs = new float[k];
            TopKSelector.Select(logits.AsSpan(t * 300, 300), wantIndices, wantLogProbs);
            Assert.Equal(wantIndices, indices.AsSpan(t * k, k).ToArray());
            for (int i = 0; i < k; i++) Assert.True(Math.Abs(logProbs[t * k + i] - wantLogProbs[i]) <= Bound);
        }
    }

    public void Dispose() => _emu.Dispose();
}
