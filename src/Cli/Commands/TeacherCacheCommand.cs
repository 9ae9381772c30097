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

    /// <summary>Where a cache is built, and an interrupted run resumed, before it is renamed to <paramref name="output"/>.</summary>
    internal static string PartialPath(string output) => output + ".partial";

    private sealed record Request(string Model, string Data, int TopK, string Output, int SeqLen, string Device, int Threads, bool Json);

    private static int Run(Request r)
    {
        if (r.TopK < 1) throw new UsageException($"--topk: {r.TopK} must be >= 1");
        if (r.SeqLen < 1) throw new UsageException($"--seq-len: {r.SeqLen} must be >= 1");
        var tokens = TokenFile.Read(r.Data);
        if (tokens.Ids.Length == 0) throw new ArgumentException($"{r.Data}: holds no tokens; a teacher cache needs at least one");
        using var backend = CliRunner.CreateBackend(r.Device, r.Threads);
        using var teacher = DecoderModel.Load(r.Model, backend);
        int vocab = teacher.Config.VocabSize;
        if (r.TopK > vocab) throw new ArgumentException($"--topk: {r.TopK} exceeds the model's vocab_size {vocab}");
        tokens.Validate(vocab);
        var header = new TeacherCacheHeader(r.TopK, vocab, TeacherCacheDType.Float32, TeacherCacheHeader.ModelIdOf(r.Model), r.SeqLen,
            tokens.Ids.Length, TeacherCacheHeader.ChecksumTokens(tokens.Ids));

        // The cache is built under OUT.partial, which is also what an interrupted run resumes, and renamed to OUT once
        // every token is in: a file at OUT is always complete. An existing OUT is checked and reported, not recomputed.
        string partial = PartialPath(r.Output);
        bool complete = File.Exists(r.Output), resumed = complete || File.Exists(partial);
        using var writer = complete ? TeacherCacheWriter.Resume(r.Output, header)
            : resumed ? TeacherCacheWriter.Resume(partial, header) : TeacherCacheWriter.Create(partial, header);
        long startTokens = writer.TokensWritten;
        var clock = Stopwatch.StartNew();
        if (r.Json) Fill(teacher, tokens.Ids, writer, _ => { });
        else
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(context =>
                {
                    var task = context.AddTask("teacher-cache", maxValue: Math.Max(1, header.DataTokens));
                    task.Value = writer.TokensWritten;
                    Fill(teacher, tokens.Ids, writer, done =>
                    {
                        task.Value = done;
                        double rate = (done - startTokens) / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                        task.Description = $"teacher-cache {done}/{header.DataTokens} tokens, {rate:F0} tokens/s";
                    });
                });
        }
        double seconds = clock.Elapsed.TotalSeconds;
        long computed = writer.TokensWritten - startTokens;
        if (!complete)
        {
            if (!writer.IsComplete) throw new InvalidOperationException($"{partial}: {writer.TokensWritten} of {header.DataTokens} tokens written");
            writer.Dispose();
            File.Move(partial, r.Output);
        }
        if (r.Json)
            CliRunner.WriteJson(new JsonObject
            {
                ["out"] = r.Output,
                ["resumed"] = resumed,
                ["tokens"] = writer.TokensWritten,
                ["tokens_computed"] = computed,
                ["shards"] = writer.ShardCount,
                ["topk"] = r.TopK,
                ["vocab"] = vocab,
                ["seconds"] = seconds,
                ["tokens_per_second"] = computed / Math.Max(1e-9, seconds),
            });
        else
            Console.Error.WriteLine($"wrote {r.Output}: {writer.TokensWritten} tokens in {writer.ShardCount} shards ({computed} computed now{(resumed ? ", resumed" : "")})");
        return ExitCodes.Ok;
    }

    // One forward pass and one shard per sequence; shards start at multiples of the sequence length.
    private static void Fill(DecoderModel teacher, int[] ids, TeacherCacheWriter writer, Action<long> progress)
    {
        var header = writer.Header;
        int k = header.K;
        if (writer.TokensWritten % header.SequenceLength != 0 && !writer.IsComplete)
            throw new TeacherCacheException(writer.Path, "shards", $"they end at token {writer.TokensWritten}, not at a sequence boundary of {header.SequenceLength}");
        var indices = new int[header.SequenceLength * k];
        var logProbs = new float[header.SequenceLength * k];
        for (long start = writer.TokensWritten; start < ids.Length; start += header.SequenceLength)
        {
            int n = (int)Math.Min(header.SequenceLength, ids.Length - start);
            TeacherTopK.Compute(teacher, ids.AsSpan((int)start, n), indices.AsSpan(0, n * k), logProbs.AsSpan(0, n * k));
            writer.Append(indices.AsSpan(0, n * k), logProbs.AsSpan(0, n * k), n);
            progress(writer.TokensWritten);
        }
    }

}
