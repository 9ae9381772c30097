using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text.Json.Nodes;
using E3.Backends;
using E3.Backends.Gpu;
using E3.Interop.Driver;
using E3.Interop.Gpu;

namespace E3.Cli.Commands;

/// <summary>
/// The members every <c>e3 bench</c> JSON starts with: <c>schema</c>, which names the layout and its version, and
/// <c>environment</c>, which says which build ran on which CPU and GPU, and when. Results gathered from many machines
/// and builds can only be compared when each carries these. The layouts are JSON Schema documents in
/// <c>bench/schema/</c>; a version changes when a member is removed or changes meaning, not when one is added.
/// </summary>
internal static class BenchEnvironment
{
    /// <summary>The build: version and the git commit it was built from (e.g. <c>1.0.0+2187d42…</c>).</summary>
    public static string Version { get; } =
        typeof(BenchEnvironment).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(BenchEnvironment).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>A bench JSON: <paramref name="schema"/> and the environment first, then <paramref name="body"/>'s members.</summary>
    public static JsonObject Wrap(string schema, JsonObject body, IGpuDevice? gpu)
    {
        var result = new JsonObject { ["schema"] = schema, ["environment"] = Describe(gpu) };
        foreach (var (key, value) in body.ToArray())
        {
            body.Remove(key);
            result[key] = value;
        }
        return result;
    }

    /// <summary>The GPU behind <paramref name="backend"/>, or null for the CPU backend.</summary>
    public static IGpuDevice? GpuOf(IBackend backend) => backend is GpuBackend g ? g.Device : null;

    /// <summary>Build, time, operating system, runtime, CPU and (when one ran the bench) GPU.</summary>
    public static JsonObject Describe(IGpuDevice? gpu) => new()
    {
        ["e3_version"] = Version,
        ["timestamp_utc"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
        ["os"] = RuntimeInformation.OSDescription,
        ["runtime"] = RuntimeInformation.FrameworkDescription,
        ["cpu"] = new JsonObject
        {
            ["model"] = CpuModel(),
            ["architecture"] = RuntimeInformation.ProcessArchitecture.ToString(),
            ["logical_cores"] = Environment.ProcessorCount,
            ["avx2"] = Avx2.IsSupported,
            ["avx512f"] = Avx512F.IsSupported,
        },
        ["gpu"] = gpu is null ? null : new JsonObject
        {
            ["name"] = gpu.Info.Name,
            ["compute_capability"] = gpu.Info.ComputeCapability,
            ["multiprocessors"] = gpu.Info.MultiprocessorCount,
            ["memory_bytes"] = gpu.Info.TotalMemoryBytes,
            ["driver_version"] = gpu is CudaDevice ? CudaDriver.DriverVersion.ToString() : null,
        },
    };

    // The "model name" line of /proc/cpuinfo on Linux; null elsewhere or when it cannot be read.
    static string? CpuModel()
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo")) return null;
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is var colon and > 0)
                    return line[(colon + 1)..].Trim();
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }
}
