using E3.Interop.IO;
using E3.Model.IO;
using System.CommandLine;
using E3.Interop.Gpu;
using E3.Interop.Kernels.Bench;
using E3.Pruning.Bench;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 bench kernels [--device cuda|emu|cpu] [--shape qwen3-8b|qwen3-32b|small] [--repeats N] [--json] [--out FILE]</c>:
/// every forward kernel family and the projection GEMMs at one model's layer shapes, after warm-up, median of N
/// repeats (CUDA events on cuda, the monotonic clock on emu and cpu), with bytes moved, FLOPs, GB/s, TFLOP/s and
/// the fractions of the copy bandwidth and GEMM rate the same run measures. The default shape is qwen3-8b on cuda
/// and small on emu and cpu (the emulator runs kernels on the CPU, so real shapes would take hours there).
/// The JSON schema is documented on <see cref="KernelBenchReport"/>; --out writes the same output to FILE atomically.
/// </summary>
internal static class BenchKernelsCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cuda, emu (the kernels on the CPU emulator) or cpu (the CPU backend's equivalents)", DefaultValueFactory = _ => "cuda" };
        var shape = new Option<string?>("--shape") { Description = $"Layer shapes: {string.Join(", ", BenchShape.Names)} (default: qwen3-8b on cuda, small on emu and cpu)" };
        var repeats = new Option<int>("--repeats") { Description = "Timed repeats per kernel (median reported)", DefaultValueFactory = _ => 5 };
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var output = CommonOptions.OutputFile(new Option<string?>("--out") { Description = "Write the report to this file (atomically) instead of standard output" });
        var cmd = new Command("kernels", "Time every kernel family and the projection GEMMs against the device's measured copy and GEMM roofs")
            { device, shape, repeats, threads, json, output };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            string name = p.GetValue(device)!;
            var preset = CliRunner.ParseOption(() => BenchShape.Parse(p.GetValue(shape) ?? (name == "cuda" ? BenchShape.Qwen3_8B.Name : BenchShape.Small.Name)));
            int n = p.GetValue(repeats);
            bool asJson = p.GetValue(json);
            Action<string>? progress = asJson ? null : k => Console.Error.WriteLine($"  {k}");
            if (name is not ("cuda" or "emu" or "cpu"))
                throw new UsageException($"--device: '{name}' is not one of cuda, emu, cpu");
            using var gpu = name == "cpu" ? null : GpuDevices.Open(name);
            var report = gpu is null ? CpuKernelBenchmark.Run(preset, n, p.GetValue(threads), progress) : GpuKernelBenchmark.Run(gpu, name, preset, n, progress);
            string text = asJson
                ? CliRunner.FormatJson(BenchEnvironment.Wrap("e3.bench.kernels/1", report.ToJson(), gpu)) + Environment.NewLine
                : report.ToTable();
            if (p.GetValue(output) is { } path) AtomicFile.WriteAllText(Path.GetFullPath(path), text);
            else Console.Out.Write(text);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
