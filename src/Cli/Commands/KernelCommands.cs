using E3.Interop.IO;
using E3.Model.IO;
using System.CommandLine;
using System.Text;
using System.Text.Json;
using E3.Interop.Kernels;
using E3.Interop.Nvrtc;

namespace E3.Cli.Commands;

/// <summary><c>e3 kernels compile|ptx</c>: compile the embedded kernels with NVRTC (needs no GPU); <c>parity</c> is <see cref="KernelParityCommand"/>.</summary>
public static class KernelCommands
{
    /// <summary>Builds the <c>kernels</c> command with its <c>compile</c>, <c>ptx</c> and <c>parity</c> subcommands.</summary>
    public static Command Create()
    {
        var kernels = new Command("kernels", "Compile the embedded CUDA kernels with NVRTC (no GPU needed), or check them against the CPU backend.");
        kernels.Subcommands.Add(CreateCompile());
        kernels.Subcommands.Add(CreatePtx());
        kernels.Subcommands.Add(KernelParityCommand.Create());
        return kernels;
    }

    private static Command CreateCompile()
    {
        var arch = new Option<string>("--arch")
        {
            Description = "Comma-separated SM architectures to compile CUBIN for, e.g. sm_80,sm_90.",
            DefaultValueFactory = _ => "sm_80,sm_90",
        };
        var json = new Option<bool>("--json") { Description = "Print the resource report as JSON." };
        var allowSpills = new Option<bool>("--allow-spills") { Description = "Exit 0 even when a kernel spills registers." };
        var cacheDir = new Option<string>("--cache-dir")
        {
            Description = $"Kernel cache folder (default: ${KernelCache.DirectoryVariable}, else $XDG_CACHE_HOME/e3/kernels, else ~/.cache/e3/kernels).",
            DefaultValueFactory = _ => KernelCache.DefaultDirectory(),
        };
        var command = new Command("compile", "Compile every kernel for each architecture and print registers, shared memory, stack and spills.");
        command.Options.Add(arch);
        command.Options.Add(json);
        command.Options.Add(allowSpills);
        command.Options.Add(cacheDir);
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            if (!TryParseTargets(parse.GetValue(arch)!, KernelImageKind.Cubin, out var targets, out var problem))
            {
                error.WriteLine($"e3 kernels compile: --arch: {problem}");
                return 2;
            }
            if (!NvrtcCompiler.IsAvailable(out var nvrtcProblem))
            {
                error.WriteLine($"e3 kernels compile: {nvrtcProblem}");
                return 1;
            }
            var results = CompileAll(new KernelCompiler(KernelCatalog.Embedded, new KernelCache(parse.GetValue(cacheDir)!)), targets);
            output.Write(parse.GetValue(json) ? ToJson(results) : ToTable(results));
            bool failed = results.Any(r => r.Error is not null);
            bool spilled = results.Any(r => r.Resources.Any(k => k.HasSpills));
            foreach (var failure in results.Where(r => r.Error is not null))
                error.WriteLine($"{failure.File}.cu for {failure.Arch}: {failure.Error}");
            if (spilled && !parse.GetValue(allowSpills))
                error.WriteLine("register spills found (pass --allow-spills to accept them)");
            return failed || (spilled && !parse.GetValue(allowSpills)) ? 1 : 0;
        });
        return command;
    }

    private static Command CreatePtx()
    {
        var name = new Argument<string>("name") { Description = "Kernel file without extension, e.g. rmsnorm." };
        var arch = new Option<string>("--arch") { Description = "Architecture, e.g. sm_90 (emits PTX for compute_90).", DefaultValueFactory = _ => "sm_90" };
        var outFile = new Option<FileInfo?>("--out") { Description = "Write the PTX to this file instead of standard output." };
        var command = new Command("ptx", "Print the PTX of one kernel file.");
        command.Arguments.Add(name);
        command.Options.Add(arch);
        command.Options.Add(outFile);
        command.SetAction(parse =>
        {
            var error = parse.InvocationConfiguration.Error;
            if (!TryParseTargets(parse.GetValue(arch)!, KernelImageKind.Ptx, out var targets, out var problem) || targets.Count != 1)
            {
                error.WriteLine($"e3 kernels ptx: --arch: {problem ?? "give exactly one architecture"}");
                return 2;
            }
            try
            {
                var module = new KernelCompiler(KernelCatalog.Embedded, cache: null).Compile(parse.GetValue(name)!, targets[0]);
                var ptx = Encoding.UTF8.GetString(module.Image).TrimEnd('\0');
                if (parse.GetValue(outFile) is { } file)
                    AtomicFile.WriteAllText(file.FullName, ptx);
                else
                    parse.InvocationConfiguration.Output.Write(ptx);
                return 0;
            }
            catch (Exception e) when (e is KeyNotFoundException or NvrtcException or DllNotFoundException or IOException or UnauthorizedAccessException)
            {
                error.WriteLine($"e3 kernels ptx: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    /// <summary>The outcome of compiling one kernel file for one architecture.</summary>
    internal sealed record CompileResult(string File, string Arch, IReadOnlyList<KernelResources> Resources, string? Error);

    internal static IReadOnlyList<CompileResult> CompileAll(KernelCompiler compiler, IReadOnlyList<KernelTarget> targets)
    {
        var results = new List<CompileResult>();
        foreach (var target in targets)
            foreach (var file in compiler.Catalog.Names)
            {
                try
                {
                    results.Add(new CompileResult(file, target.Arch, compiler.Compile(file, target).Resources, null));
                }
                catch (NvrtcException e)
                {
                    results.Add(new CompileResult(file, target.Arch, [], e.Message));
                }
            }
        return results;
    }

    /// <summary>Parses "sm_80,sm_90" (or compute_XX) into targets of <paramref name="kind"/>.</summary>
    internal static bool TryParseTargets(string list, KernelImageKind kind, out IReadOnlyList<KernelTarget> targets, out string? problem)
    {
        var parsed = new List<KernelTarget>();
        targets = parsed;
        problem = null;
        foreach (var item in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            try
            {
                parsed.Add(KernelTarget.Parse(item) with { Kind = kind });
            }
            catch (FormatException e)
            {
                problem = e.Message;
                return false;
            }
        }
        if (parsed.Count == 0)
            problem = $"'{list}' names no architecture";
        return parsed.Count > 0;
    }

    internal static string ToTable(IReadOnlyList<CompileResult> results)
    {
        var text = new StringBuilder();
        text.AppendLine($"{"kernel",-34} {"arch",-6} {"regs",5} {"shared",7} {"stack",6} {"spill st",9} {"spill ld",9}");
        foreach (var result in results)
        {
            if (result.Error is not null)
                text.AppendLine($"{result.File + ".cu",-34} {result.Arch,-6} FAILED");
            foreach (var k in result.Resources)
                text.AppendLine($"{k.Kernel,-34} {k.Arch,-6} {k.Registers,5} {k.SharedBytes,7} {k.StackFrameBytes,6} {k.SpillStoreBytes,9} {k.SpillLoadBytes,9}");
        }
        return text.ToString();
    }

    internal static string ToJson(IReadOnlyList<CompileResult> results)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartArray();
            foreach (var result in results)
            {
                writer.WriteStartObject();
                writer.WriteString("file", result.File + ".cu");
                writer.WriteString("arch", result.Arch);
                if (result.Error is not null)
                    writer.WriteString("error", result.Error);
                writer.WriteStartArray("kernels");
                foreach (var k in result.Resources)
                {
                    writer.WriteStartObject();
                    writer.WriteString("name", k.Kernel);
                    writer.WriteNumber("registers", k.Registers);
                    writer.WriteNumber("sharedBytes", k.SharedBytes);
                    writer.WriteNumber("stackFrameBytes", k.StackFrameBytes);
                    writer.WriteNumber("spillStoreBytes", k.SpillStoreBytes);
                    writer.WriteNumber("spillLoadBytes", k.SpillLoadBytes);
                    writer.WriteEndObject();
                }
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + Environment.NewLine;
    }
}
