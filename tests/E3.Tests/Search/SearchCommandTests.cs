using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using E3.Cli.Commands;
using E3.Pruning.Masks;
using E3.Pruning.Search;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Search;

/// <summary><c>e3 search</c> end to end: a real kill and resume, and bad input turned into named errors with no output left behind.</summary>
public sealed class SearchCommandTests
{
    private const int Layers = 4;

    private static (string Model, string Data) Setup(TempDir dir, string modelName = "model", int seed = 3)
    {
        string model = SearchModels.Write(dir, modelName, Layers, weakLayers: [2], seed: seed);
        var (data, _) = SearchModels.Tokens(dir, "data.bin", 2000);
        return (model, data);
    }

    private static string[] Args(string model, string data, string output, params string[] extra) =>
    [
        "search", "--model", model, "--data", data, "--keep", "2", "--seq", "16", "--batch", "2", "--samples", "2",
        "--threads", "2", "--seed", "7", "--init-batches", "1", "--out", output, "--json", .. extra,
    ];

    private static int InProcess(params string[] args) => new RootCommand { SearchCommand.Create() }.Parse(args).Invoke();

    [Fact]
    public void KilledRunResumesToTheSameMaskAsAnUninterruptedRun()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        // 60 steps of 32 tokens, a checkpoint every 2 steps.
        string[] common = ["--tokens", "1920", "--checkpoint-every", "2"];
        string reference = dir["reference.json"], resumed = dir["resumed.json"], checkpoint = dir["ck"];
        Assert.Equal(0, InProcess(Args(model, data, reference, [.. common, "--checkpoint", dir["ck-reference"]])));

        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "e3.dll"));
        foreach (var a in Args(model, data, resumed, [.. common, "--checkpoint", checkpoint])) psi.ArgumentList.Add(a);
        string state = Path.Combine(checkpoint, SearchCheckpoint.StateFileName);
        // Killed once a randomly chosen checkpoint is on disk, i.e. anywhere in the step or checkpoint after it.
        int killAfter = 2 * new Random().Next(1, 16);
        using (var child = Process.Start(psi)!)
        {
            var deadline = Stopwatch.StartNew();
            while (SavedStep(state) < killAfter && !child.HasExited && deadline.Elapsed < TimeSpan.FromMinutes(3))
                Thread.Sleep(1);
            bool finishedEarly = child.HasExited; // checked before anything reads its output, which would wait for it
            Assert.False(finishedEarly, "the child finished before it could be interrupted");
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
        Assert.False(File.Exists(resumed), "a killed search must not leave a mask.json");
        Assert.InRange(SavedStep(state), killAfter, 59); // really interrupted, with finished work to keep

        Assert.Equal(0, InProcess(Args(model, data, resumed, [.. common, "--checkpoint", checkpoint, "--resume"])));
        var expected = MaskFile.Load(reference);
        var actual = MaskFile.Load(resumed);
        Assert.Equal(expected.Alpha!.Select(BitConverter.DoubleToInt64Bits), actual.Alpha!.Select(BitConverter.DoubleToInt64Bits));
        Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(resumed)); // kept layers, τ, steps, loss history: all of it
        Assert.Equal(60, actual.Steps);
        Assert.Equal(60, actual.LossHistory.Count);
        Assert.True(new FileInfo(Path.ChangeExtension(resumed, ".png")).Length > 1000, "the plot was not written");
    }

    /// <summary>
    /// SIGTERM (as Ctrl+C's SIGINT) stops the search after its current step, with no regular checkpoint due for hundreds of
    /// steps: it saves the steps done, exits 130, and the resumed run ends with the uninterrupted run's mask, bit for bit.
    /// </summary>
    [Fact]
    public void AnInterruptedRunSavesItsStepsExits130AndResumesToTheSameMask()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        string[] common = ["--tokens", "9600", "--checkpoint-every", "1000"]; // 300 steps of 32 tokens
        string reference = dir["reference.json"], resumed = dir["resumed.json"], checkpoint = dir["ck"];
        Assert.Equal(0, InProcess(Args(model, data, reference, [.. common, "--checkpoint", dir["ck-reference"]])));

        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "e3.dll"));
        foreach (var a in Args(model, data, resumed, [.. common, "--checkpoint", checkpoint])) psi.ArgumentList.Add(a);
        var stderr = new System.Collections.Concurrent.ConcurrentQueue<string>();
        int exitCode, signalled = 0, killResult = -1;
        using (var child = new Process { StartInfo = psi })
        {
            child.ErrorDataReceived += (_, e) =>
            {
                if (e.Data == null) return;
                stderr.Enqueue(e.Data);
                // The first progress line comes after the first step: interrupt there, with most of the run still to go.
                if (e.Data.StartsWith("search: step", StringComparison.Ordinal) && Interlocked.Exchange(ref signalled, 1) == 0)
                    killResult = Signals.Kill(child.Id, Signals.Terminate);
            };
            child.OutputDataReceived += (_, _) => { };
            child.Start();
            child.BeginErrorReadLine();
            child.BeginOutputReadLine();
            Assert.True(child.WaitForExit(TimeSpan.FromMinutes(3)), "the interrupted search did not stop");
            child.WaitForExit(); // flushes the asynchronous readers
            exitCode = child.ExitCode;
        }
        string log = string.Join("\n", stderr);
        Assert.True(killResult == 0, $"kill failed or never sent: {log}");
        Assert.True(exitCode == 130, $"exit {exitCode}: {log}");
        Assert.Contains("e3: interrupted", log);
        Assert.False(File.Exists(resumed), "an interrupted search must not leave a mask.json");
        long saved = SavedStep(Path.Combine(checkpoint, SearchCheckpoint.StateFileName));
        Assert.InRange(saved, 1, 299); // the steps done when the signal came were saved, although none was due

        Assert.Equal(0, InProcess(Args(model, data, resumed, [.. common, "--checkpoint", checkpoint, "--resume"])));
        Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(resumed)); // kept layers, α, steps, loss history
    }

    /// <summary>Recomputing each layer for the gate gradients is the forward's own arithmetic: the same α, mask and history, bit for bit.</summary>
    [Fact]
    public void ActivationCheckpointingFindsTheSameBits()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        string plain = dir["plain.json"], recomputed = dir["recomputed.json"];
        var first = CliProcess.Run(Args(model, data, plain, "--tokens", "512"));
        var second = CliProcess.Run(Args(model, data, recomputed, "--tokens", "512", "--activation-checkpointing"));
        Assert.True(first.ExitCode == 0 && second.ExitCode == 0, first.Stderr + second.Stderr);
        // The flag reached the search (its JSON reports the search's own setting), and changed no bit of the result.
        Assert.False(JsonNode.Parse(first.Stdout)!["activation_checkpointing"]!.GetValue<bool>());
        Assert.True(JsonNode.Parse(second.Stdout)!["activation_checkpointing"]!.GetValue<bool>());
        Assert.Equal(File.ReadAllBytes(plain), File.ReadAllBytes(recomputed));
    }

    // The step of the checkpoint on disk, or -1 while there is none (the state file is replaced by rename, so a read
    // sees a whole file).
    private static long SavedStep(string state)
    {
        if (!File.Exists(state)) return -1;
        return JsonNode.Parse(File.ReadAllText(state))!["step"]!.GetValue<long>();
    }

    [Theory]
    [InlineData("0", "--keep: 0 is out of range 1..4")]
    [InlineData("5", "--keep: 5 is out of range 1..4")]
    [InlineData("4", "--keep: 4 keeps every layer")]
    public void KeepOutOfRangeIsANamedError(string value, string message)
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        var args = Args(model, data, dir["mask.json"]);
        args[Array.IndexOf(args, "--keep") + 1] = value;
        var result = CliProcess.Run(args);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(message, result.Stderr);
        Assert.False(File.Exists(dir["mask.json"]));
    }

    [Theory]
    [InlineData("0.5", 2)] // drops round(0.5·4) = 2
    [InlineData("0.3", 3)] // drops round(1.2) = 1
    public void PruneFractionSetsTheKeptCount(string prune, int keep)
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        var args = Args(model, data, dir["mask.json"], "--tokens", "32").ToList();
        int at = args.IndexOf("--keep");
        args[at] = "--prune";
        args[at + 1] = prune;
        var result = CliProcess.Run([.. args]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(keep, MaskFile.Load(dir["mask.json"]).Keep);
        Assert.Equal(keep, JsonNode.Parse(result.Stdout)!["kept"]!.AsArray().Count);
    }

    [Fact]
    public void PruneTogetherWithKeepIsAUsageError()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        var result = CliProcess.Run([.. Args(model, data, dir["mask.json"]), "--prune", "0.5"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("exactly one of --prune and --keep", result.Stderr);
    }

    [Fact]
    public void EmptyDataFileIsAnErrorNamingTheFile()
    {
        using var dir = new TempDir();
        var (model, _) = Setup(dir);
        File.WriteAllBytes(dir["empty.bin"], []);
        var result = CliProcess.Run(Args(model, dir["empty.bin"], dir["mask.json"]));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(dir["empty.bin"], result.Stderr);
        Assert.False(File.Exists(dir["mask.json"]));
    }

    [Fact]
    public void TeacherCacheOfAnotherModelIsRefused()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        string other = SearchModels.Write(dir, "other", Layers, weakLayers: [], seed: 4);
        string cache = dir["other.e3tk"];
        var made = CliProcess.Run("teacher-cache", "--model", other, "--data", data, "--topk", "8", "--seq-len", "16", "--out", cache, "--threads", "2", "--json");
        Assert.Equal(0, made.ExitCode);
        var result = CliProcess.Run([.. Args(model, data, dir["mask.json"]), "--teacher-cache", cache]);
        Assert.Equal(1, result.ExitCode);
        // Same config, other weights: the ids differ in the weights' fingerprint.
        Assert.Contains($"{cache}: model_id: 'other#", result.Stderr);
        Assert.Contains("': the cache was made for another model than 'model#", result.Stderr);
        Assert.False(File.Exists(dir["mask.json"]));

        // The same model under another folder name is the same teacher.
        CopyFolder(other, dir["renamed"]);
        var renamed = CliProcess.Run([.. Args(dir["renamed"], data, dir["mask2.json"]), "--teacher-cache", cache, "--tokens", "128"]);
        Assert.True(renamed.ExitCode == 0, renamed.Stderr);
    }

    static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    [Fact]
    public void SearchWithATeacherCacheOfTheSameModelRuns()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        string cache = dir["model.e3tk"];
        Assert.Equal(0, CliProcess.Run("teacher-cache", "--model", model, "--data", data, "--topk", "8", "--seq-len", "16", "--out", cache, "--threads", "2", "--json").ExitCode);
        var result = CliProcess.Run([.. Args(model, data, dir["mask.json"]), "--teacher-cache", cache, "--tokens", "128"]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        var mask = MaskFile.Load(dir["mask.json"]);
        Assert.Equal(2, mask.Keep);
        Assert.Equal(4, mask.Steps);
        Assert.All(mask.LossHistory, p => Assert.True(double.IsFinite(p.Loss) && p.Loss > 0));
    }

    [Fact]
    public void CorruptOrForeignCheckpointsAreNamedErrors()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        string checkpoint = dir["ck"];
        string[] common = ["--tokens", "128", "--checkpoint", checkpoint, "--checkpoint-every", "2"];
        Assert.Equal(0, CliProcess.Run(Args(model, data, dir["first.json"], common)).ExitCode);
        string state = Path.Combine(checkpoint, SearchCheckpoint.StateFileName);

        // Without --resume an existing checkpoint is not overwritten.
        var again = CliProcess.Run(Args(model, data, dir["mask.json"], common));
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already holds a search checkpoint", again.Stderr);

        // Other options (another seed): the fingerprint differs.
        var args = Args(model, data, dir["mask.json"], [.. common, "--resume"]);
        args[Array.IndexOf(args, "--seed") + 1] = "8";
        var foreign = CliProcess.Run(args);
        Assert.Equal(1, foreign.ExitCode);
        Assert.Contains($"{state}: fingerprint:", foreign.Stderr);

        // A truncated optimizer file.
        string optimizer = Directory.GetFiles(checkpoint, "adamw-*.bin").Single();
        var bytes = File.ReadAllBytes(optimizer);
        File.WriteAllBytes(optimizer, bytes[..(bytes.Length / 2)]);
        var truncated = CliProcess.Run(Args(model, data, dir["mask.json"], [.. common, "--resume"]));
        Assert.Equal(1, truncated.ExitCode);
        Assert.Contains(optimizer, truncated.Stderr);

        // A state file cut in half.
        var text = File.ReadAllText(state);
        File.WriteAllText(state, text[..(text.Length / 2)]);
        var corrupt = CliProcess.Run(Args(model, data, dir["mask.json"], [.. common, "--resume"]));
        Assert.Equal(1, corrupt.ExitCode);
        Assert.Contains($"{state}: (json): corrupt checkpoint", corrupt.Stderr);
        Assert.False(File.Exists(dir["mask.json"]));
    }
}
