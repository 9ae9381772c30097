using E3.Interop.Kernels;
using E3.Interop.Nvrtc;
using Xunit;

namespace E3.Tests.Cuda;

public sealed class KernelCacheTests
{
    private static readonly KernelTarget Sm80 = new(80, KernelImageKind.Cubin);

    [Fact]
    public void MissThenHitReturnsTheSameImageAndReport()
    {
        NvrtcRequirement.Ensure();
        using var temp = new TempFolder();
        var compiler = new KernelCompiler(KernelCatalog.Embedded, new KernelCache(temp.Path));

        var first = compiler.Compile("swiglu", Sm80);
        var second = compiler.Compile("swiglu", Sm80);

        Assert.Equal(KernelCacheOutcome.Miss, first.Cache);
        Assert.Equal(KernelCacheOutcome.Hit, second.Cache);
        Assert.Equal(first.Image, second.Image);
        Assert.Equal(first.Resources, second.Resources);
        Assert.Single(Directory.GetFiles(temp.Path)); // one entry, no temp files left behind
    }

    [Theory]
    [InlineData(0.5)]   // inside the image
    [InlineData(0.001)] // inside the header
    public void FlippedByteIsDetectedAndTheEntryRebuilt(double where)
    {
        NvrtcRequirement.Ensure();
        using var temp = new TempFolder();
        var cache = new KernelCache(temp.Path);
        var compiler = new KernelCompiler(KernelCatalog.Embedded, cache);
        var original = compiler.Compile("embedding", Sm80);
        var entry = Directory.GetFiles(temp.Path).Single();
        var bytes = File.ReadAllBytes(entry);
        int position = Math.Max(4, (int)(bytes.Length * where));
        bytes[position] ^= 0x01;
        File.WriteAllBytes(entry, bytes);

        var rebuilt = compiler.Compile("embedding", Sm80);
        var afterRebuild = compiler.Compile("embedding", Sm80);

        Assert.Equal(KernelCacheOutcome.Corrupt, rebuilt.Cache);
        Assert.Equal(original.Image, rebuilt.Image);
        Assert.Equal(KernelCacheOutcome.Hit, afterRebuild.Cache);
        Assert.Equal(original.Image, afterRebuild.Image);
    }

    [Fact]
    public void UnwritableCacheStillYieldsTheKernel()
    {
        NvrtcRequirement.Ensure();
        using var temp = new TempFolder();
        var blocker = Path.Combine(temp.Path, "not-a-folder");
        File.WriteAllText(blocker, "a file where the cache folder should be");
        var compiler = new KernelCompiler(KernelCatalog.Embedded, new KernelCache(blocker));

        var module = compiler.Compile("swiglu", Sm80);

        Assert.Equal(KernelCacheOutcome.Miss, module.Cache);
        Assert.Equal([0x7f, (byte)'E', (byte)'L', (byte)'F'], module.Image[..4]);
        Assert.Contains("kernel cache not written", module.Log);
    }

    [Fact]
    public void UnreadableEntryIsRebuiltNotFatal()
    {
        NvrtcRequirement.Ensure();
        using var temp = new TempFolder();
        var cache = new KernelCache(temp.Path);
        var compiler = new KernelCompiler(KernelCatalog.Embedded, cache);
        var original = compiler.Compile("swiglu", Sm80);
        // A folder where the entry should be: reading it fails (as a file without read permission would, for a user
        // other than root), and so does writing the rebuilt entry over it.
        var entry = Directory.GetFiles(temp.Path).Single();
        File.Delete(entry);
        Directory.CreateDirectory(entry);

        var rebuilt = compiler.Compile("swiglu", Sm80);

        Assert.Equal(KernelCacheOutcome.Corrupt, rebuilt.Cache);
        Assert.Equal(original.Image, rebuilt.Image);
        Assert.Contains("kernel cache not written", rebuilt.Log);
    }

    [Fact]
    public void TruncatedEntryIsCorrupt()
    {
        using var temp = new TempFolder();
        var cache = new KernelCache(temp.Path);
        var key = new KernelCacheKey("k", "sm_80", new string('a', 64));
        cache.Write(key, [1, 2, 3, 4, 5], "log");
        Assert.Equal(KernelCacheOutcome.Hit, cache.TryRead(key, out var image, out var log));
        Assert.Equal([1, 2, 3, 4, 5], image);
        Assert.Equal("log", log);

        var path = cache.PathFor(key);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^1]);
        Assert.Equal(KernelCacheOutcome.Corrupt, cache.TryRead(key, out _, out _));
        Assert.Equal(KernelCacheOutcome.Miss, cache.TryRead(key with { Hash = new string('b', 64) }, out _, out _));
    }

    [Fact]
    public void KeyChangesWithEveryInput()
    {
        var source = new KernelSource("k", "k.cu", "extern \"C\" __global__ void e3_k() {}");
        var headers = new Dictionary<string, string> { ["common.cuh"] = "// v1" };
        IReadOnlyList<string> options = ["-arch=sm_80", "-std=c++17"];
        var version = new Version(11, 8);
        var baseline = KernelCacheKey.Compute(source, headers, options, Sm80, version);

        Assert.Equal(baseline, KernelCacheKey.Compute(source, new Dictionary<string, string>(headers), options.ToArray(), Sm80, new Version(11, 8)));
        KernelCacheKey[] variants =
        [
            KernelCacheKey.Compute(source with { Text = source.Text + " " }, headers, options, Sm80, version),
            KernelCacheKey.Compute(source, new Dictionary<string, string> { ["common.cuh"] = "// v2" }, options, Sm80, version),
            KernelCacheKey.Compute(source, headers, ["-arch=sm_80", "-std=c++17", "--use_fast_math"], Sm80, version),
            KernelCacheKey.Compute(source, headers, options, new KernelTarget(90, KernelImageKind.Cubin), version),
            KernelCacheKey.Compute(source, headers, options, new KernelTarget(80, KernelImageKind.Ptx), version),
            KernelCacheKey.Compute(source, headers, options, Sm80, new Version(12, 4)),
        ];
        Assert.All(variants, v => Assert.NotEqual(baseline.Hash, v.Hash));
        Assert.Equal(variants.Length, variants.Select(v => v.Hash).Distinct().Count());
    }
}
