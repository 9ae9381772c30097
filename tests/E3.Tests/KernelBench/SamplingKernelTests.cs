using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using E3.Tests.Masking;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary>
/// kernels/sampling.cu through the typed wrapper on the emulator: argmax exactly as a sequential scan (ties, NaN,
/// infinities, padded rows, bf16), sampled tokens identical to <see cref="SamplingReference"/> (same Philox stream,
/// same fp32 expressions), and the sampled law checked by chi-square against the exact softmax.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class SamplingKernelTests(EmuFixture fixture) : IDisposable
{
    private readonly EmuDeviceScope emu = new();
    private readonly List<DeviceBuffer> buffers = [];

    [Theory]
    [InlineData(5, 1000, 1000)]
    [InlineData(3, 37, 40)]     // fewer columns than threads, padded rows
    [InlineData(2, 5000, 5003)]
    public void ArgMaxMatchesASequentialScan(int rows, int vocab, int ld)
    {
        _ = fixture.Device;
        var logits = Logits(rows, ld, seed: vocab);
        // Planted cases: a tie for the maximum (lowest index wins), a NaN (wins, as in torch.argmax), an all -inf row.
        logits[0 * ld + 3] = logits[0 * ld + vocab - 1] = 100f;
        logits[1 * ld + vocab / 2] = float.NaN;
        logits[1 * ld + vocab - 1] = float.NaN;
        if (rows > 2) Array.Fill(logits, float.NegativeInfinity, 2 * ld, vocab);
        for (int r = 0; r < rows; r++)
            for (int c = vocab; c < ld; c++) logits[r * ld + c] = 1e30f; // padding must be ignored

        using var kernels = new SamplingKernels(emu.Device);
        var ids = emu.Upload<int>(buffers, new int[rows]);
        kernels.ArgMax(emu.Upload<float>(buffers, logits), ld, ids, rows, vocab, emu.Stream.Handle);
        var got = emu.Download(ids, rows);

        var want = Enumerable.Range(0, rows).Select(r => SamplingReference.ArgMax(logits.AsSpan(r * ld, vocab))).ToArray();
        Assert.Equal(want, got);
        Assert.Equal(3, got[0]);
        Assert.Equal(vocab / 2, got[1]);
        if (rows > 2) Assert.Equal(0, got[2]);
    }

    [Fact]
    public void Bf16ArgMaxComparesTheStoredValues()
    {
        _ = fixture.Device;
        const int rows = 4, vocab = 3001;
        var values = Logits(rows, vocab, seed: 7);
        var bits = values.Select(v => new Bf16(Bf16Bits(v))).ToArray();
        var rounded = bits.Select(b => BitConverter.UInt32BitsToSingle((uint)b.Bits << 16)).ToArray();
        using var kernels = new SamplingKernels(emu.Device);
        var ids = emu.Upload<int>(buffers, new int[rows]);
        kernels.ArgMax(emu.Upload<Bf16>(buffers, bits), vocab, ids, rows, vocab, emu.Stream.Handle);
        Assert.Equal(Enumerable.Range(0, rows).Select(r => SamplingReference.ArgMax(rounded.AsSpan(r * vocab, vocab))), emu.Download(ids, rows));
    }

    public static TheoryData<float, int, float, bool> SamplingCases() => new()
    {
        { 1.0f, 0, 1.0f, false },  // the whole row
        { 0.7f, 0, 1.0f, true },
        { 1.3f, 40, 1.0f, false }, // top-k
        { 0.9f, 0, 0.8f, false },  // top-p alone (within the 64 best)
        { 1.0f, 20, 0.5f, true },  // both
        { 2.0f, 1, 1.0f, false },  // top-1 is the argmax
    };

    [Theory]
    [MemberData(nameof(SamplingCases))]
    public void SampledTokensMatchTheReferenceDrawForDraw(float temperature, int topK, float topP, bool bf16)
    {
        _ = fixture.Device;
        const int rows = 24, vocab = 777;
        const ulong seed = 0x5EED_1234_ABCDUL;
        var values = Logits(rows, vocab, seed: 11, scale: 2.5);
        if (bf16) values = values.Select(v => BitConverter.UInt32BitsToSingle((uint)Bf16Bits(v) << 16)).ToArray();
        var settings = new SamplingSettings(temperature, topK, topP, seed, Step: 42);
        using var kernels = new SamplingKernels(emu.Device);
        var ids = emu.Upload<int>(buffers, new int[rows]);
        if (bf16)
            kernels.Sample(emu.Upload<Bf16>(buffers, values.Select(v => new Bf16(Bf16Bits(v))).ToArray()), vocab, ids, rows, vocab, settings, emu.Stream.Handle);
        else
            kernels.Sample(emu.Upload<float>(buffers, values), vocab, ids, rows, vocab, settings, emu.Stream.Handle);
        var got = emu.Download(ids, rows);

        float inverse = 1f / temperature;
        var want = Enumerable.Range(0, rows)
            .Select(r => SamplingReference.Sample(values.AsSpan(r * vocab, vocab), inverse, topK, topP, seed, 42, r)).ToArray();
        Assert.Equal(want, got);
        if (topK == 1)
            Assert.Equal(Enumerable.Range(0, rows).Select(r => SamplingReference.ArgMax(values.AsSpan(r * vocab, vocab))), got);
        Assert.True(got.Distinct().Count() > 1 || topK == 1, "different rows should draw different tokens");
    }

    [Theory]
    [InlineData(0, 1.0f)]
    [InlineData(4, 1.0f)]
    public void DrawsFollowTheTemperedSoftmax(int topK, float topP)
    {
        _ = fixture.Device;
        // One small row repeated: each row has its own Philox counter, so the rows are independent draws.
        float[] row = [0.0f, 0.5f, 1.0f, -1.0f, 2.0f, 0.25f, -0.5f, 1.5f];
        const int vocab = 8, draws = 2000;
        const float temperature = 1.5f;
        var logits = Enumerable.Range(0, draws).SelectMany(_ => row).ToArray();
        using var kernels = new SamplingKernels(emu.Device);
        var ids = emu.Upload<int>(buffers, new int[draws]);
        kernels.Sample(emu.Upload<float>(buffers, logits), vocab, ids, draws, vocab, new SamplingSettings(temperature, topK, topP, 99, 0), emu.Stream.Handle);
        var counts = new int[vocab];
        foreach (int id in emu.Download(ids, draws)) counts[id]++;

        // The law in double: softmax of the fp32 scores over the kept tokens (the top-k by score), zero elsewhere.
        float inverse = 1f / temperature;
        var z = row.Select(v => (double)(v * inverse)).ToArray();
        var kept = Enumerable.Range(0, vocab).OrderByDescending(i => z[i]).Take(topK == 0 ? vocab : topK).ToHashSet();
        double norm = kept.Sum(i => Math.Exp(z[i]));
        double chi = 0;
        for (int i = 0; i < vocab; i++)
        {
            if (!kept.Contains(i))
            {
                Assert.Equal(0, counts[i]);
                continue;
            }
            double expected = draws * Math.Exp(z[i]) / norm;
            chi += (counts[i] - expected) * (counts[i] - expected) / expected;
        }
        // A correct sampler fails this 1 time in 10^4 (fixed seed, so the outcome is deterministic); a law off by a
        // few percent in any cell (e.g. a wrong temperature or an off-by-one in top-k) gives p far below it.
        double p = ChiSquare.PValue(chi, kept.Count - 1);
        Assert.True(p > 1e-4, $"chi-square {chi:F2} on {kept.Count - 1} degrees of freedom, p = {p:E2}; counts {string.Join(",", counts)}");
    }

    [Fact]
    public void BadSettingsAreRejectedNamingTheField()
    {
        _ = fixture.Device;
        using var kernels = new SamplingKernels(emu.Device);
        var ids = emu.Upload<int>(buffers, new int[1]);
        var x = emu.Upload<float>(buffers, new float[8]);
        void Sample(SamplingSettings s) => kernels.Sample(x, 8, ids, 1, 8, s, emu.Stream.Handle);
        Assert.Equal("Temperature", Assert.Throws<ArgumentOutOfRangeException>(() => Sample(new(0f, 0, 1f, 1, 0))).ParamName);
        Assert.Equal("TopK", Assert.Throws<ArgumentOutOfRangeException>(() => Sample(new(1f, 65, 1f, 1, 0))).ParamName);
        Assert.Equal("TopP", Assert.Throws<ArgumentOutOfRangeException>(() => Sample(new(1f, 0, 0f, 1, 0))).ParamName);
        Assert.Equal("ld", Assert.Throws<ArgumentOutOfRangeException>(() => kernels.ArgMax(x, 4, ids, 1, 8, emu.Stream.Handle)).ParamName);
    }

    private static float[] Logits(int rows, int ld, int seed, double scale = 4.0)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, rows * ld).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
    }

    // Round to nearest even, as the kernels' e3_float_to_bf16 (finite inputs only here).
    private static ushort Bf16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }

    public void Dispose()
    {
        foreach (var b in buffers) b.Dispose();
        emu.Dispose();
    }
}
