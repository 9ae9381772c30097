using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using E3.Backends;
using E3.Backends.Gpu;
using E3.Interop.Driver;
using E3.Interop.Gpu;

namespace E3.Pruning.Bench;

/// <summary>
/// The members every <c>e3 bench</c> JSON starts with: <c>schema</c>, which names the layout and its version, and
/// <c>environment</c>, which says which build ran on which CPU and GPU, and when. Results gathered from many machines
/// and builds can only be compared when each carries these. The layouts are JSON Schema documents in
/// <c>bench/schema/</c>; a version changes when a member is removed or changes meaning, not when one is added.
/// </summary>
internal static class BenchEnvironment
{
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
        ["e3_version"] = HostFacts.Version,
        ["timestamp_utc"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
        ["os"] = RuntimeInformation.OSDescription,
        ["runtime"] = RuntimeInformation.FrameworkDescription,
        ["cpu"] = HostFacts.Cpu(),
        ["gpu"] = gpu is null ? null : new JsonObject
        {
            ["name"] = gpu.Info.Name,
            ["compute_capability"] = gpu.Info.ComputeCapability,
            ["multiprocessors"] = gpu.Info.MultiprocessorCount,
            ["memory_bytes"] = gpu.Info.TotalMemoryBytes,
            ["driver_version"] = gpu is CudaDevice ? CudaDriver.DriverVersion.ToString() : null,
        },
    };
}
