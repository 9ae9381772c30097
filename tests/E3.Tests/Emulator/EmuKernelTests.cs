using E3.Interop.Emulator;
using Xunit;

namespace E3.Tests.Emulator;

/// <summary>The semantics test kernels (native/tests/kernels) run from C# and checked against C# references.</summary>
[Collection(EmuCollection.Name)]
public sealed class EmuKernelTests(EmuFixture fixture)
{
    private readonly EmuDevice _device = fixture.Device;

    [Fact]
    public void BlockReductionMatchesExactSums()
    {
        // Multiples of 1/16 in [-0.5, 0.5]: every partial sum of 300k of them fits in 24 significant bits,
        // so the emulated float reduction is exact whatever its order, and must equal the double sum exactly.
        const int n = 300_001, blocks = 48, threads = 128;
        var random = new Random(7);
        var x = new float[n];
        for (var i = 0; i < n; i++) x[i] = random.Next(-8, 9) / 16f;
        var expected = new double[blocks];
        for (var i = 0; i < n; i++) expected[i / threads % blocks] += x[i];

        using var input = _device.Upload<float>(x);
        using var sums = _device.Allocate(blocks * sizeof(float));
        var kernel = _device.GetFunction("reduce", "e3t_block_reduce_sum");
        _device.Launch(kernel, blocks, threads, 0, null, input, sums, n);

        var got = sums.Download<float>(blocks);
        for (var b = 0; b < blocks; b++) Assert.Equal(expected[b], (double)got[b]);
    }

    [Fact]
    public void WarpMatrixMultiplyFollowsThePtxFragmentLayout()
    {
        // D = A·B + C for A 16x16, B 16x8 in bf16, C fp32. Entries are multiples of 1/8 in [-2, 2] (exact in bf16) and C
        // of 1/64, so every product and partial sum is exact in fp32 and D must equal the double product exactly: any
        // element taken from the wrong lane, register or half moves a sum by at least 1/64.
        var random = new Random(11);
        float[] a = Enumerable.Range(0, 16 * 16).Select(_ => random.Next(-16, 17) / 8f).ToArray();
        float[] b = Enumerable.Range(0, 16 * 8).Select(_ => random.Next(-16, 17) / 8f).ToArray(); // row-major B[k][n]
        float[] c = Enumerable.Range(0, 16 * 8).Select(_ => random.Next(-64, 65) / 64f).ToArray();
        ushort[] aBits = a.Select(E3.Backends.Numerics.BFloat16.FromSingle).ToArray();
        ushort[] bByColumn = new ushort[16 * 8];
        for (int k = 0; k < 16; k++)
            for (int n = 0; n < 8; n++)
                bByColumn[n * 16 + k] = E3.Backends.Numerics.BFloat16.FromSingle(b[k * 8 + n]);

        using var da = _device.Upload<ushort>(aBits);
        using var db = _device.Upload<ushort>(bByColumn);
        using var dc = _device.Upload<float>(c);
        using var dd = _device.Allocate(16 * 8 * sizeof(float));
        dd.Fill(0xff);
        _device.Launch(_device.GetFunction("mma", "e3t_mma_bf16_16x8x16"), 1, 32, 0, null, da, db, dc, dd);

        var d = dd.Download<float>(16 * 8);
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++)
            {
                double want = c[m * 8 + n];
                for (int k = 0; k < 16; k++) want += (double)a[m * 16 + k] * b[k * 8 + n];
                Assert.Equal(want, (double)d[m * 8 + n]);
            }
    }

    [Fact]
    public void TiledTransposeOfNonMultipleSizeMatchesIndexReference()
    {
        const int rows = 333, cols = 190;
        var input = new float[rows * cols];
        for (var i = 0; i < input.Length; i++) input[i] = i * 0.25f;

        using var din = _device.Upload<float>(input);
        using var dout = _device.Allocate(input.Length * sizeof(float));
        dout.Fill(0xff); // NaN: an element the kernel forgets cannot compare equal
        var kernel = _device.GetFunction("transpose", "e3t_transpose");
        _device.Launch(kernel, new Dim3((cols + 31) / 32, (rows + 31) / 32), new Dim3(32, 8), 0, null, din, dout, rows, cols);

        var output = dout.Download<float>(input.Length);
        for (var y = 0; y < rows; y++)
            for (var x = 0; x < cols; x++)
                Assert.Equal(input[y * cols + x], output[x * rows + y]);
    }

    [Fact]
    public void BarrierDivergenceThrowsWithKernelBlockAndThread()
    {
        using var x = _device.Allocate(64 * sizeof(float));
        var kernel = _device.GetFunction("faults", "e3t_barrier_divergence");

        var error = Assert.Throws<EmuException>(() => _device.Launch(kernel, 1, 64, 0, null, x, 50));

        Assert.Equal(EmuResult.LaunchFailed, error.Result);
        Assert.Equal("CUDA_ERROR_LAUNCH_FAILED", error.ErrorName);
        Assert.Contains("kernel e3t_barrier_divergence block (0,0,0)", error.Detail);
        Assert.Contains("thread (50,0,0) has exited", error.Detail);
    }

    [Fact]
    public void WrongArgumentCountIsRejectedBeforeLaunch()
    {
        var kernel = _device.GetFunction("transpose", "e3t_transpose");
        Assert.Equal(4, kernel.ParameterCount);
        var error = Assert.Throws<ArgumentException>(() => _device.Launch(kernel, 1, 32, 0, null, 1, 2));
        Assert.Contains("takes 4 parameters, 2 given", error.Message);
    }

    [Fact]
    public void UnknownKernelNamesTheModule()
    {
        var error = Assert.Throws<EmuException>(() => _device.GetFunction("reduce", "e3t_missing"));
        Assert.Equal(EmuResult.NotFound, error.Result);
        Assert.Contains("module 'reduce' has no kernel named 'e3t_missing'", error.Detail);
    }

    [Fact]
    public void EventsRecordElapsedTimeAroundWork()
    {
        using var stream = _device.CreateStream();
        using var start = _device.CreateEvent();
        using var end = _device.CreateEvent();
        start.Record(stream);
        Thread.Sleep(20);
        end.Record(stream);
        stream.Synchronize();
        var ms = EmuEvent.ElapsedMilliseconds(start, end);
        Assert.InRange(ms, 20f, 20_000f); // Sleep(20) waits at least 20 ms; the upper bound only catches garbage
    }
}

/// <summary>Which emulator library the process bound: E3_EMU_LIB when set (test-asan), else the test library.</summary>
[Collection(EmuCollection.Name)]
public sealed class EmuLibrarySelectionTests(EmuFixture fixture)
{
    [Fact]
    public void LoadedLibraryHonoursTheEnvironmentOverride()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable(EmuLibrary.PathVariable);
        var expected = string.IsNullOrEmpty(fromEnvironment)
            ? EmuLibrary.Locate(EmuLibrary.TestFileName)
            : Path.GetFullPath(fromEnvironment);
        Assert.Equal(expected, fixture.Device.LibraryPath);
        Assert.Equal(expected, EmuLibrary.LoadedPath);
        Assert.True(fixture.Device.WorkerCount >= 1);
    }

    [Fact]
    public void ProductRequestIsServedByTheLoadedTestLibrary()
    {
        // Other test classes open the product library; the test library already bound holds its kernels too.
        Assert.Equal(fixture.Device.LibraryPath, EmuLibrary.Load(EmuLibrary.ProductFileName));
    }
}
