using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Pruning.TeacherCache;
using Spectre.Console;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 teacher-cache</c>: runs the teacher over a token file in sequences of --seq-len tokens and stores each
/// position's top-K log-probabilities, one shard per sequence. Re-running with the same arguments resumes an
/// interrupted cache: complete shards are kept (nothing recomputed), a shard cut short is dropped and redone.
/// </summary>
public static class TeacherCacheCommand
{
    /// <summary>The command, for the root of the <c>e3</c> command tree.</summary>
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var data = new Option<string>("--data") { Description = "Token file: raw uint32 .bin or integer .npy", Required = true };
        var topK = new Option<int>("--topk") { Description = "Entries stored per token (K)", DefaultValueFactory = _ => 10 };
        var output = CommonOptions.OutputFile(new Option<string>("--out") { Description = "Cache file to create: built as FILE.partial, which a rerun resumes, and renamed to FILE when complete", Required = true });
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per forward pass (and per shard)", DefaultValueFactory = _ => 512 };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("teacher-cache", "Store the teacher's top-K log-probabilities for every token of a data file (resumable)")
        {
            model, data, topK, output, seqLen, device, threads, json,
        };
        cmd.SetAction(p => CliRunner.Guard(() => Run(new Request(p.GetValue(model)!, p.GetValue(data)!, p.GetValue(topK), p.GetValue(output)!,
            p.GetValue(seqLen), p.GetValue(device)!, p.GetValue(threads), p.GetValue(json)))));
        return cmd;
    }

    private sealed record Request(string Model, string Data, int TopK, string Output, int SeqLen, string Device, int Threads, bool Json);

    private static int Run(Request r)
    {
        if (r.TopK < 1) throw new UsageException($"--topk: {r.TopK} must be >= 1");
        if (r.SeqLen < 1) throw new UsageException($"--seq-len: {r.SeqLen} must be >= 1");
        var tokens = TokenFile.Read(r.Data);
        if (tokens.Ids.Length == 0) throw new ArgumentException($"{r.Data}: holds no tokens; a teacher cache needs at least one");
        using var backend = CliRunner.CreateBackend(r.Device, r.Threads);
        using var teacher = DecoderModel.Load(r.Model, backend);
        tokens.Validate(teacher.Config.VocabSize); // names the data file
        TeacherCacheBuild build;
        if (r.Json) build = TeacherCacheBuilder.Build(teacher, tokens.Ids, r.TopK, r.SeqLen, r.Output);
        else
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            var clock = Stopwatch.StartNew();
            long first = -1;
            build = null!;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(context =>
                {
                    var task = context.AddTask("teacher-cache", maxValue: Math.Max(1, tokens.Ids.Length));
                    build = TeacherCacheBuilder.Build(teacher, tokens.Ids, r.TopK, r.SeqLen, r.Output, (done, total) =>
                    {
                        if (first < 0) first = done;
                        task.Value = done;
                        double rate = (done - first) / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                        task.Description = $"teacher-cache {done}/{total} tokens, {rate:F0} tokens/s";
                    });
                });
        }
        if (r.Json)
            CliRunner.WriteJson(E3.Pruning.Reports.ResultJson.TeacherCache(build, r.TopK, teacher.Config.VocabSize));
        else
            Console.Error.WriteLine($"wrote {build.Path}: {build.Tokens} tokens in {build.Shards} shards ({build.TokensComputed} computed now{(build.Resumed ? ", resumed" : "")})");
        return ExitCodes.Ok;
    }
}
