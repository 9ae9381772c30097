using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Backends;
using E3.Pruning.Distill;
using E3.Backends.Cpu;
using E3.Backends.Gpu;
using E3.Interop.Gpu;
using E3.Model;
using E3.Model.Decoder;

namespace E3.Cli.Commands;

/// <summary>Shared plumbing: turning known failures into one clear line and exit code 1, devices, JSON output.</summary>
internal static class CliRunner
{
    /// <summary>
    /// Runs a command body. Any failure becomes one line on stderr and exit code 1 (2 for a <see cref="UsageException"/>);
    /// outputs are written atomically by the writers themselves, so a failure leaves nothing half-written. E3_DEBUG=1
    /// adds the stack trace.
    /// </summary>
    public static int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("e3: interrupted: stopped after a whole step; where a checkpoint folder was given, the steps done are saved in it, and the same command with --resume continues from there");
            return ExitCodes.Interrupted;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // One line, whatever the exception: .NET puts "Actual value was …" of an ArgumentOutOfRangeException on its own line.
            Console.Error.WriteLine($"e3: error: {string.Join(' ', e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))}");
            if (Environment.GetEnvironmentVariable("E3_DEBUG") == "1") Console.Error.WriteLine(e);
            return e is UsageException ? ExitCodes.Usage : ExitCodes.Failure;
        }
    }

    /// <summary>Parses an option value with a library parser whose refusal is then a usage error.</summary>
    public static T ParseOption<T>(Func<T> parse)
    {
        try
        {
            return parse();
        }
        catch (ArgumentException e) when (e is not UsageException)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>Writes a library warning to <paramref name="writer"/> as the CLI words one (<c>e3: warning: …</c>).</summary>
    public static Action<string> Warning(TextWriter writer) => line => writer.WriteLine($"e3: warning: {line}");

    public static readonly string[] Devices = [.. ComputeDevice.Names];

    /// <summary>
    /// cpu: the C# backend. cuda: device 0 through the driver and cuBLAS; emu: the same kernels on the CPU emulator
    /// (libe3emu.so, or the file E3_EMU_LIB names). Both GPU devices keep bf16 activations, as inference on a GPU does;
    /// weights follow --precision. A missing driver, GPU or emulator library is one clear error naming what is missing.
    /// </summary>
    public static IBackend CreateBackend(string device, int threads) =>
        ComputeDevice.CreateBackend(KnownDevice(device), new ComputeDeviceOptions { Threads = threads });

    /// <summary>
    /// The backend for a command that runs a backward pass (train, distill, search): as <see cref="CreateBackend"/>, but a
    /// GPU device keeps fp32 activations, because the backward computes in fp32 (bf16 matrices are widened to fp32 at each use).
    /// </summary>
    /// <param name="device">cpu, cuda or emu.</param>
    /// <param name="threads">CPU threads (cpu only).</param>
    /// <param name="tf32">Run the fp32 GEMMs with TF32 operands on the tensor cores (<see cref="GemmCompute.FastTf32"/>); GPU devices only.</param>
    public static IBackend CreateTrainingBackend(string device, int threads, bool tf32 = false)
    {
        if (tf32) RequireTensorCores(device);
        return ComputeDevice.CreateBackend(KnownDevice(device), new ComputeDeviceOptions { Threads = threads, Training = true, Tf32 = tf32 });
    }

    static string KnownDevice(string device) => ComputeDevice.Names.Contains(device)
        ? device
        : throw new UsageException($"--device: '{device}' is not available in this build (available: {string.Join(", ", Devices)})");

    /// <summary>Refuses --tf32 (a usage error) on a device that has no tensor cores to run it on.</summary>
    public static void RequireTensorCores(string device)
    {
        if (device is not ("cuda" or "emu"))
            throw new UsageException($"--tf32: the {device} backend has no tensor cores; it needs --device cuda or emu");
    }

    /// <summary>
    /// The backend a dense distillation teacher runs on beside the student's <paramref name="training"/> backend, and the
    /// weight precision to load it with (<see cref="Distiller.TeacherBackend"/>), for --teacher-dtype <paramref name="dtype"/>.
    /// </summary>
    public static (GpuBackend? Backend, WeightPrecision Precision) CreateTeacherBackend(IBackend training, string? dtype) =>
        Distiller.TeacherBackend(training, TeacherActivations(training, dtype));

    /// <summary>--teacher-dtype as the dtype the teacher computes in (null: the default); what the device cannot do is a usage error.</summary>
    public static DType? TeacherActivations(IBackend training, string? dtype) => dtype switch
    {
        null => null,
        "f32" => DType.F32,
        "bf16" when training is GpuBackend { ActivationType: DType.F32 } => DType.BF16,
        "bf16" => throw new UsageException($"--teacher-dtype: bf16 needs --device cuda or emu (the {training.Name} backend computes in f32)"),
        _ => throw new UsageException($"--teacher-dtype: '{dtype}' is not one of bf16, f32"),
    };

    public static void WriteJson(JsonNode node) => Console.Out.WriteLine(FormatJson(node));

    /// <summary>As every JSON file the engine writes (<see cref="E3.Pruning.Reports.ResultJson.Format"/>).</summary>
    public static string FormatJson(JsonNode node) => E3.Pruning.Reports.ResultJson.Format(node);
}
