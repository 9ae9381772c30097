using Xunit;
using E3.Interop.Kernels;
using E3.Interop.Nvrtc;
using Xunit.Abstractions;

namespace E3.Tests.Cuda;

public sealed class KernelCompileTests(ITestOutputHelper output)
{
    public static TheoryData<string, int> KernelsAndArchs()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in KernelCatalog.Embedded.Names)
            foreach (var sm in new[] { 80, 90 })
                data.Add(name, sm);
        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsAndArchs))]
    public void EveryCatalogKernelCompilesToCubinWithoutSpills(string name, int sm)
    {
        NvrtcRequirement.Ensure();
        var compiler = new KernelCompiler(KernelCatalog.Embedded, cache: null);
        var module = compiler.Compile(name, new KernelTarget(sm, KernelImageKind.Cubin));
        output.WriteLine(module.Log);

        // A CUBIN is an ELF file: the loader rejects anything else.
        Assert.Equal([0x7f, (byte)'E', (byte)'L', (byte)'F'], module.Image[..4]);
        var entryPoints = KernelCatalog.Embedded.Get(name).EntryPoints;
        Assert.NotEmpty(entryPoints);
        // ptxas reports every entry point of the file, once, for the requested arch.
        Assert.Equal(entryPoints.Order(), module.Resources.Select(r => r.Kernel).Order());
        Assert.All(module.Resources, r =>
        {
            Assert.Equal($"sm_{sm}", r.Arch);
            Assert.True(r.Registers > 0, $"{r.Kernel}: {r.Registers} registers");
            Assert.False(r.HasSpills, $"{r.Kernel} spills {r.SpillStoreBytes}/{r.SpillLoadBytes} bytes");
        });
    }

    [Fact]
    public void PtxTargetProducesPtxForTheVirtualArch()
    {
        NvrtcRequirement.Ensure();
        var module = new KernelCompiler(KernelCatalog.Embedded, null).Compile("swiglu", new KernelTarget(80, KernelImageKind.Ptx));
        var ptx = System.Text.Encoding.UTF8.GetString(module.Image);
        Assert.Contains(".target sm_80", ptx);
        Assert.Contains(".entry e3_swiglu_f32", ptx);
        Assert.EndsWith("\0", ptx); // the driver requires NUL-terminated PTX
        Assert.Empty(module.Resources); // ptxas did not run
    }

    [Fact]
    public void CompileErrorCarriesTheLogWithFileAndLine()
    {
        NvrtcRequirement.Ensure();
        const string source = "#include \"common.cuh\"\nextern \"C\" __global__ void e3_broken(float* y)\n{\n    y[0] = undeclared_name;\n}\n";
        var catalog = new KernelCatalog(new Dictionary<string, string>
        {
            ["broken.cu"] = source,
            ["common.cuh"] = KernelCatalog.Embedded.Headers["common.cuh"],
        });
        var error = Assert.Throws<NvrtcException>(() => new KernelCompiler(catalog, null).Compile("broken", new KernelTarget(80, KernelImageKind.Cubin)));
        Assert.Equal("NVRTC_ERROR_COMPILATION", error.ResultName);
        Assert.Contains("broken.cu(4)", error.Log); // NVRTC's "file(line): error" form, line 4 holds the bad name
        Assert.Contains("undeclared_name", error.Message);
        Assert.Contains("nvrtcCompileProgram(broken.cu", error.Message);
    }

    [Fact]
    public void NameExpressionsLowerTemplatedKernels()
    {
        NvrtcRequirement.Ensure();
        using var program = new NvrtcProgram("template <typename T> __global__ void scale(T* x) { x[0] *= 2; }", "scale.cu");
        program.AddNameExpression("scale<float>");
        program.Compile(["-arch=compute_80", "-std=c++17"]);
        // Itanium mangling of void scale<float>(float*).
        Assert.Equal("_Z5scaleIfEvPT_", program.GetLoweredName("scale<float>"));
    }

    [Fact]
    public void NvrtcReportsItsVersionAndArchs()
    {
        NvrtcRequirement.Ensure();
        Assert.True(NvrtcCompiler.Version >= new Version(11, 2));
        Assert.Contains(80, NvrtcCompiler.SupportedArchitectures);
        Assert.Equal(NvrtcCompiler.SupportedArchitectures.Order(), NvrtcCompiler.SupportedArchitectures);
    }
}
