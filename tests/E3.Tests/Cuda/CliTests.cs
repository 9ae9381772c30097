using System.CommandLine;
using System.Text.Json;
using E3.Cli.Commands;
using E3.Interop.Kernels;
using Xunit;

namespace E3.Tests.Cuda;

public sealed class CliTests
{
    private static (int Exit, string Output, string Error) Run(params string[] args)
    {
        var root = new RootCommand("test") { KernelCommands.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    [Fact]
    public void CompileReportsEveryEntryPointAsJson()
    {
        NvrtcRequirement.Ensure();
        using var cache = new TempFolder();
        var (exit, output, error) = Run("kernels", "compile", "--arch", "sm_90", "--json", "--cache-dir", cache.Path);
        Assert.True(exit == 0, error);

        using var json = JsonDocument.Parse(output);
        var files = json.RootElement.EnumerateArray().ToArray();
        Assert.Equal(KernelCatalog.Embedded.Names.Select(n => n + ".cu"), files.Select(f => f.GetProperty("file").GetString()));
        Assert.All(files, f => Assert.Equal("sm_90", f.GetProperty("arch").GetString()));
        var kernels = files.SelectMany(f => f.GetProperty("kernels").EnumerateArray()).ToArray();
        var expected = KernelCatalog.Embedded.Names.SelectMany(n => KernelCatalog.Embedded.Get(n).EntryPoints).Order();
        Assert.Equal(expected, kernels.Select(k => k.GetProperty("name").GetString()!).Order());
        Assert.All(kernels, k => Assert.True(k.GetProperty("registers").GetInt32() > 0));
        Assert.All(kernels, k => Assert.Equal(0, k.GetProperty("spillStoreBytes").GetInt32()));
    }

    [Fact]
    public void CompileRejectsAMalformedArch()
    {
        var (exit, _, error) = Run("kernels", "compile", "--arch", "sm_80,ampere");
        Assert.Equal(2, exit);
        Assert.Contains("'ampere'", error);
    }

    [Fact]
    public void PtxWritesTheFileAtomically()
    {
        NvrtcRequirement.Ensure();
        using var folder = new TempFolder();
        var path = Path.Combine(folder.Path, "rmsnorm.ptx");
        var (exit, _, error) = Run("kernels", "ptx", "rmsnorm", "--arch", "sm_90", "--out", path);
        Assert.True(exit == 0, error);
        var ptx = File.ReadAllText(path);
        Assert.Contains(".target sm_90", ptx);
        Assert.Contains(".entry e3_rmsnorm_f32", ptx);
        Assert.Equal([path], Directory.GetFiles(folder.Path)); // no temp file left behind
    }

    [Fact]
    public void PtxOfAnUnknownKernelNamesTheAvailableOnes()
    {
        NvrtcRequirement.Ensure();
        var (exit, _, error) = Run("kernels", "ptx", "nosuch", "--arch", "sm_80");
        Assert.Equal(1, exit);
        Assert.Contains("nosuch.cu", error);
        Assert.Contains("rmsnorm", error);
    }

    [Fact]
    public void DoctorExplainsEachMissingPieceInsteadOfThrowing()
    {
        NvrtcRequirement.Ensure();
        var report = GpuDoctor.Examine();

        // Exactly one of "found" and "why not" per component, whatever this machine has.
        Assert.True(report.DriverVersion is null != (report.DriverProblem is null));
        Assert.True(report.CublasVersion is null != (report.CublasProblem is null));
        if (report.DriverVersion is null)
        {
            Assert.Empty(report.Gpus);
            Assert.Contains("libcuda.so.1", report.DriverProblem);
        }
        Assert.NotNull(report.NvrtcVersion);
        Assert.Contains(90, report.NvrtcArchitectures);
        Assert.False(string.IsNullOrEmpty(report.KernelCacheFolder));
        var text = report.ToText();
        Assert.Contains($"NVRTC: {report.NvrtcVersion}", text);
        Assert.Contains("Kernel cache: ", text);
    }
}
