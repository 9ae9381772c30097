using System.CommandLine;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text.Json.Nodes;

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

    static JsonObject Collect()
    {
        var cpu = new JsonObject
        {
            ["architecture"] = RuntimeInformation.ProcessArchitecture.ToString(),
            ["logical_cores"] = Environment.ProcessorCount,
            ["avx2"] = Avx2.IsSupported,
            ["fma"] = Fma.IsSupported,
            ["avx512f"] = Avx512F.IsSupported,
            ["vector_bits"] = System.Numerics.Vector<float>.Count * 32,
        };
        var libs = new JsonObject();
        foreach (var (name, sonames) in new[]
                 {
                     ("driver", new[] { "libcuda.so.1" }),
                     ("nvrtc", new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" }),
                     ("cublas", new[] { "libcublas.so.13", "libcublas.so.12", "libcublas.so.11" }),
                 })
            libs[name] = Probe(sonames);
        return new JsonObject
        {
            ["e3_version"] = typeof(DoctorCommand).Assembly.GetName().Version?.ToString(),
            ["runtime"] = RuntimeInformation.FrameworkDescription,
            ["os"] = RuntimeInformation.OSDescription,
            ["cpu"] = cpu,
            ["devices"] = CliRunner.ToJsonArrayStrings(CliRunner.Devices),
            ["cuda_libraries"] = libs,
        };
    }

    static JsonObject Probe(string[] sonames)
    {
        foreach (var so in sonames)
            if (NativeLibrary.TryLoad(so, out var handle))
            {
                NativeLibrary.Free(handle);
                return new JsonObject { ["found"] = true, ["library"] = so };
            }
        return new JsonObject { ["found"] = false, ["why"] = $"none of {string.Join(", ", sonames)} could be loaded" };
    }

    static void Print(JsonObject r)
    {
        var cpu = r["cpu"]!.AsObject();
        Console.Out.WriteLine($"e3 {r["e3_version"]} on {r["runtime"]}, {r["os"]}");
        Console.Out.WriteLine($"cpu: {cpu["architecture"]}, {cpu["logical_cores"]} threads, AVX2 {cpu["avx2"]}, FMA {cpu["fma"]}, AVX-512 {cpu["avx512f"]}, {cpu["vector_bits"]}-bit vectors");
        Console.Out.WriteLine($"devices: {string.Join(", ", r["devices"]!.AsArray().Select(n => n!.GetValue<string>()))}");
        foreach (var (k, v) in r["cuda_libraries"]!.AsObject())
            Console.Out.WriteLine($"{k}: {(v!["found"]!.GetValue<bool>() ? "found " + v["library"] : "not found (" + v["why"] + ")")}");
    }
}
