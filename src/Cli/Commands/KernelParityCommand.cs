using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Backends;
using E3.Backends.Cpu;
using E3.Backends.Gpu;
using E3.Interop.Gpu;
using E3.Pruning.Bench;

namespace E3.Cli.Commands;

/// <summary><c>e3 kernels parity</c>: every backend operation on the device against the CPU backend (<see cref="BackendParity"/>).</summary>
internal static class KernelParityCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cuda or emu", DefaultValueFactory = _ => "cuda" };
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("parity", "Run every forward, backward, distillation and teacher-cache operation on the device and on the CPU backend with " +
            "the same inputs and compare; exits 1 when one is off by more than its bound") { device, threads, json };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            string name = p.GetValue(device)!;
            if (name is not ("cuda" or "emu")) throw new UsageException($"--device: '{name}' is not one of cuda, emu");
            string scratch = Path.Combine(Path.GetTempPath(), $"e3-parity-{Guid.NewGuid():N}");
            IReadOnlyList<ParityCheck> checks;
            string gpu;
            try
            {
                using var gpuDevice = GpuDevices.Open(name);
                gpu = gpuDevice.Info.Name;
                using var reference = new CpuBackend(p.GetValue(threads));
                using var f32 = new GpuBackend(gpuDevice, DType.F32, ownsDevice: false);
                using var bf16 = new GpuBackend(gpuDevice, DType.BF16, ownsDevice: false);
                checks = BackendParity.Run(reference, f32, bf16, scratch);
            }
            finally
            {
                if (Directory.Exists(scratch)) Directory.Delete(scratch, true);
            }
            bool passed = checks.All(c => c.Passed);
            if (p.GetValue(json))
                CliRunner.WriteJson(new JsonObject
                {
                    ["device"] = name,
                    ["gpu"] = gpu,
                    ["passed"] = passed,
                    ["checks"] = new JsonArray(checks.Select(c => (JsonNode)new JsonObject
                    {
                        ["name"] = c.Name, ["dtype"] = c.DType, ["error"] = double.IsFinite(c.Error) ? c.Error : null, ["bound"] = c.Bound, ["passed"] = c.Passed,
                        ["failure"] = c.Failure,
                    }).ToArray()),
                });
            else
            {
                Console.Out.WriteLine($"{"operation",-26} {"dtype",-5} {"error",10} {"bound",8}  result   ({name}: {gpu}, against cpu)");
                foreach (var c in checks)
                    Console.Out.WriteLine($"{c.Name,-26} {c.DType,-5} {c.Error,10:0.00e+00} {c.Bound,8:G2}  {(c.Passed ? "ok" : "FAILED")}");
            }
            foreach (var c in checks.Where(c => !c.Passed))
                Console.Error.WriteLine(c.Failure is { } failure
                    ? $"e3 kernels parity: {c.Name} ({c.DType}) failed: {failure}"
                    : $"e3 kernels parity: {c.Name} ({c.DType}) is off by {c.Error:E3} relative, more than {c.Bound:G3}");
            return passed ? ExitCodes.Ok : ExitCodes.Failure;
        }));
        return cmd;
    }
}
