using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using E3.Pruning.Bench;
using E3.Interop.Gpu;
using E3.Pruning.Reports;

namespace E3.Cli.Commands;

/// <summary><c>e3 doctor</c>: what this machine offers E3. It never fails because something is absent; it says why.</summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var json = CommonOptions.Json();
        var cmd = new Command("doctor", "Report CPU features, threads and the CUDA libraries E3 can find") { json };
        cmd.SetAction(p =>
        {
            var report = Collect();
            if (p.GetValue(json)) CliRunner.WriteJson(report);
            else Print(report);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    static JsonObject Collect() => new()
    {
        ["e3_version"] = HostFacts.Version,
        ["runtime"] = RuntimeInformation.FrameworkDescription,
        ["os"] = RuntimeInformation.OSDescription,
        ["cpu"] = HostFacts.Cpu(),
        ["devices"] = ResultJson.Array(CliRunner.Devices),
        ["cuda"] = Cuda(GpuDoctor.Examine()),
    };

    static JsonObject Cuda(GpuDoctorReport g) => new()
    {
        ["driver_version"] = g.DriverVersion?.ToString(),
        ["driver_problem"] = g.DriverProblem,
        ["gpus"] = new JsonArray(g.Gpus.Select(d => (JsonNode?)new JsonObject
        {
            ["ordinal"] = d.Ordinal, ["name"] = d.Name, ["sm"] = d.ComputeCapability, ["memory_bytes"] = d.TotalMemoryBytes,
            ["multiprocessors"] = d.MultiprocessorCount, ["l2_bytes"] = d.L2CacheBytes,
        }).ToArray()),
        ["nvrtc_version"] = g.NvrtcVersion?.ToString(),
        ["nvrtc_architectures"] = ResultJson.Array(g.NvrtcArchitectures),
        ["nvrtc_problem"] = g.NvrtcProblem,
        ["cublas_version"] = g.CublasVersion?.ToString(),
        ["cublas_problem"] = g.CublasProblem,
        ["kernel_cache"] = g.KernelCacheFolder,
    };

    static void Print(JsonObject r)
    {
        var cpu = r["cpu"]!.AsObject();
        Console.Out.WriteLine($"e3 {r["e3_version"]} on {r["runtime"]}, {r["os"]}");
        Console.Out.WriteLine($"cpu: {cpu["architecture"]}, {cpu["logical_cores"]} threads, AVX2 {cpu["avx2"]}, FMA {cpu["fma"]}, AVX-512 {cpu["avx512f"]}, {cpu["vector_bits"]}-bit vectors");
        Console.Out.WriteLine($"devices: {string.Join(", ", r["devices"]!.AsArray().Select(n => n!.GetValue<string>()))}");
        Console.Out.Write(GpuDoctor.Examine().ToText());
    }
}
