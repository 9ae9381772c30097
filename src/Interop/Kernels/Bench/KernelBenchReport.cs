using System.Text.Json.Nodes;

namespace E3.Interop.Kernels.Bench;

/// <summary>One timed kernel (or copy, or GEMM): what ran, on what sizes, its analytic work and its median time.</summary>
/// <param name="Name">Kernel name, e.g. <c>rmsnorm</c> or <c>gemm_q_proj</c>.</param>
/// <param name="DType">Element type of its activations (bf16, f32).</param>
/// <param name="Shape">Named sizes the work formula takes (rows, cols, tokens, ...).</param>
/// <param name="Work">Bytes and FLOPs per call (<see cref="KernelWork"/>).</param>
/// <param name="MedianMilliseconds">Median over the timed repeats of one call's time.</param>
internal sealed record KernelMeasurement(string Name, string DType, IReadOnlyDictionary<string, long> Shape, KernelWork Work, double MedianMilliseconds)
{
    /// <summary>Bytes per second, in GB/s (1e9).</summary>
    public double GigabytesPerSecond => Work.Bytes / (MedianMilliseconds * 1e6);

    /// <summary>FLOPs per second, in TFLOP/s (1e12).</summary>
    public double TeraflopsPerSecond => Work.Flops / (MedianMilliseconds * 1e9);
}

/// <summary>
/// The result of one <c>e3 bench kernels</c> run. <see cref="ToJson"/> writes this schema:
/// <code>
/// {
///   "device": "cuda" | "emu" | "cpu",   "device_name": string,   "shape": "qwen3-8b" | "qwen3-32b" | "small",
///   "repeats": int,   "timer": "cuda-events" | "monotonic-clock",
///   "warmup_ms": number,     // the least untimed warm-up before each measurement (BenchWarmup), after at least 2 runs
///   "l2_flush_bytes": int,   // written before each timed run, outside the timing, so inputs come from DRAM (0: none)
///   "copy": MEASUREMENT,   // the device-to-device copy that defines the bandwidth roof
///   "gemm": MEASUREMENT,   // the large bf16 GEMM that defines the compute roof
///   "kernels": [ MEASUREMENT, ... ]
/// }
/// MEASUREMENT = { "name": string, "dtype": string,   // "bf16", "f32", or "student/teacher" for a mixed pass
///   "shape": { dim: int, ... }, "bytes": int, "flops": int,
///   "median_ms": number, "gbps": bytes / median / 1e9 * 1e3, "tflops": flops / median / 1e12 * 1e3,
///   "copy_fraction": gbps / copy.gbps, "gemm_fraction": tflops / gemm.tflops,
///   "bound": "memory" | "compute" | "latency" }   // which roof the kernel can at best reach (Bound below)
/// </code>
/// bytes and flops follow the <see cref="KernelWork"/> formula named after the kernel, over the listed shape.
/// </summary>
internal sealed record KernelBenchReport(string Device, string DeviceName, string ShapeName, int Repeats, string Timer, double WarmupMilliseconds,
    long L2FlushBytes, KernelMeasurement Copy, KernelMeasurement Gemm, IReadOnlyList<KernelMeasurement> Kernels)
{
    /// <summary>The report as the JSON document described above.</summary>
    public JsonObject ToJson()
    {
        var kernels = new JsonArray();
        foreach (var k in Kernels) kernels.Add((JsonNode)Entry(k));
        return new JsonObject
        {
            ["device"] = Device,
            ["device_name"] = DeviceName,
            ["shape"] = ShapeName,
            ["repeats"] = Repeats,
            ["timer"] = Timer,
            ["warmup_ms"] = WarmupMilliseconds,
            ["l2_flush_bytes"] = L2FlushBytes,
            ["copy"] = Entry(Copy),
            ["gemm"] = Entry(Gemm),
            ["kernels"] = kernels,
        };
    }

    /// <summary>A fixed-width table of the same figures, one kernel a line.</summary>
    public string ToTable()
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine($"device {Device} ({DeviceName}), shape {ShapeName}, median of {Repeats} after {WarmupMilliseconds:0} ms of warm-up, timer {Timer}" +
            (L2FlushBytes > 0 ? $", L2 flushed ({L2FlushBytes >> 20} MiB written) before each run" : ""));
        text.AppendLine($"copy roof {Copy.GigabytesPerSecond:F1} GB/s, GEMM roof {Gemm.TeraflopsPerSecond:F3} TFLOP/s");
        text.AppendLine($"{"kernel",-26} {"dtype",-8} {"ms",10} {"GB/s",9} {"TFLOP/s",8} {"%copy",6} {"%gemm",6} {"bound",-7}  shape");
        foreach (var k in Kernels)
            text.AppendLine($"{k.Name,-26} {k.DType,-8} {k.MedianMilliseconds,10:F4} {k.GigabytesPerSecond,9:F1} {k.TeraflopsPerSecond,8:F3} " +
                $"{100 * CopyFraction(k),6:F1} {100 * GemmFraction(k),6:F1} {Bound(k),-7}  {string.Join(" ", k.Shape.Select(d => $"{d.Key}={d.Value}"))}");
        return text.ToString();
    }

    private double CopyFraction(KernelMeasurement k) => k.GigabytesPerSecond / Copy.GigabytesPerSecond;

    /// <summary>
    /// A kernel whose work would take less than this at both roofs is bound by launch and tail latency, not by either roof.
    /// A launch and its last wave cost a few microseconds whatever the kernel does, so such a kernel cannot show 80% of
    /// either roof however it is written: its fraction says little.
    /// </summary>
    public const double LatencyFloorMilliseconds = 0.01;

    /// <summary>
    /// Which roof limits <paramref name="k"/>, from its analytic work and the roofs measured in this run: its bytes at the
    /// copy bandwidth against its FLOPs at the GEMM rate, the slower of the two; "latency" when both are under
    /// <see cref="LatencyFloorMilliseconds"/>. The fraction to judge a kernel by is the one of its bound.
    /// </summary>
    public string Bound(KernelMeasurement k)
    {
        double memory = k.Work.Bytes / (Copy.GigabytesPerSecond * 1e6), compute = k.Work.Flops / (Gemm.TeraflopsPerSecond * 1e9);
        if (Math.Max(memory, compute) < LatencyFloorMilliseconds) return "latency";
        return memory >= compute ? "memory" : "compute";
    }

    private double GemmFraction(KernelMeasurement k) => k.TeraflopsPerSecond / Gemm.TeraflopsPerSecond;

    private JsonObject Entry(KernelMeasurement k)
    {
        var shape = new JsonObject();
        foreach (var (dim, size) in k.Shape) shape[dim] = size;
        return new JsonObject
        {
            ["name"] = k.Name,
            ["dtype"] = k.DType,
            ["shape"] = shape,
            ["bytes"] = k.Work.Bytes,
            ["flops"] = k.Work.Flops,
            ["median_ms"] = k.MedianMilliseconds,
            ["gbps"] = k.GigabytesPerSecond,
            ["tflops"] = k.TeraflopsPerSecond,
            ["copy_fraction"] = CopyFraction(k),
            ["gemm_fraction"] = GemmFraction(k),
            ["bound"] = Bound(k),
        };
    }
}
