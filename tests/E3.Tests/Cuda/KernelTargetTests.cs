using E3.Interop.Kernels;
using Xunit;

namespace E3.Tests.Cuda;

public sealed class KernelTargetTests
{
    private static readonly int[] Nvrtc118 = [35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90];

    [Fact]
    public void KnownDeviceGetsCubinForItsExactArch()
    {
        Assert.Equal(new KernelTarget(86, KernelImageKind.Cubin), KernelTarget.ForDevice(86, Nvrtc118));
        Assert.Equal("sm_90", KernelTarget.ForDevice(90, Nvrtc118).Arch);
    }

    [Fact]
    public void NewerDeviceGetsPtxForTheNewestKnownArch()
    {
        var target = KernelTarget.ForDevice(100, Nvrtc118);
        Assert.Equal(new KernelTarget(90, KernelImageKind.Ptx), target);
        Assert.Equal("compute_90", target.Arch);
    }

    [Fact]
    public void OlderDeviceIsRejectedWithTheSupportedList()
    {
        var error = Assert.Throws<NotSupportedException>(() => KernelTarget.ForDevice(30, Nvrtc118));
        Assert.Contains("sm_30", error.Message);
        Assert.Contains("sm_35", error.Message);
    }

    [Fact]
    public void ParseRoundTripsAndRejectsGarbage()
    {
        Assert.Equal(new KernelTarget(80, KernelImageKind.Cubin), KernelTarget.Parse("sm_80"));
        Assert.Equal(new KernelTarget(90, KernelImageKind.Ptx), KernelTarget.Parse(" compute_90 "));
        Assert.Throws<FormatException>(() => KernelTarget.Parse("sm80"));
        Assert.Throws<FormatException>(() => KernelTarget.Parse("sm_"));
        Assert.Throws<FormatException>(() => KernelTarget.Parse("sm_-5"));
    }

    [Fact]
    public void OptionsAreExplicitAndFastMathIsOptIn()
    {
        var plain = new KernelSource("a", "a.cu", "extern \"C\" __global__ void e3_a() {}");
        var fast = plain with { Text = "// e3: fast-math\n" + plain.Text };
        Assert.Equal(["-arch=sm_90", "-std=c++17", "-lineinfo", "--ptxas-options=-v"], KernelCompileOptions.For(plain, new KernelTarget(90, KernelImageKind.Cubin)));
        Assert.Equal(["-arch=compute_90", "-std=c++17", "-lineinfo", "--use_fast_math"], KernelCompileOptions.For(fast, new KernelTarget(90, KernelImageKind.Ptx)));
        // Every shipped kernel is accurate-math unless it says otherwise; none opts in today.
        Assert.All(KernelCatalog.Embedded.Names, n => Assert.False(KernelCatalog.Embedded.Get(n).FastMath, n));
    }
}
