using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text.Json.Nodes;

namespace E3.Pruning.Bench;

/// <summary>What this build and this machine are, as <c>e3 doctor</c> and every bench JSON report them.</summary>
internal static class HostFacts
{
    /// <summary>The build: version and the git commit it was built from (e.g. <c>1.0.0+2187d42…</c>).</summary>
    public static string Version { get; } =
        typeof(HostFacts).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(HostFacts).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>The CPU: model, architecture, logical cores and the SIMD features the CPU backend uses.</summary>
    public static JsonObject Cpu() => new()
    {
        ["model"] = CpuModel(),
        ["architecture"] = RuntimeInformation.ProcessArchitecture.ToString(),
        ["logical_cores"] = Environment.ProcessorCount,
        ["avx2"] = Avx2.IsSupported,
        ["fma"] = Fma.IsSupported,
        ["avx512f"] = Avx512F.IsSupported,
        ["vector_bits"] = System.Numerics.Vector<float>.Count * 32,
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
