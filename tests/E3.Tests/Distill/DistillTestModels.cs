using Xunit;
using System.Diagnostics;
using System.Text;
using E3.Model;
using E3.Pruning.Masks;
using E3.Tests.Support;

namespace E3.Tests.Distill;

/// <summary>Tiny models, data files and an e3 child process for the train/distill command tests.</summary>
internal static class DistillTestModels
{
    /// <summary>A random byte-tokenizer Qwen3 model (vocab 264, fits <see cref="E3.Model.Tokenization.ByteTokenizer"/>).</summary>
    public static ModelConfig Write(string folder, int layers = 3, int vocab = 264, int seed = 1, bool tied = true) =>
        RandomModel.Write(new RandomModelSpec
        {
            Layers = layers, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 64, Vocab = vocab, TieEmbeddings = tied,
            Seed = seed, InitStd = 0.05f,
        }, folder);

    /// <summary>A text file of <paramref name="verses"/> lines of simple, repetitive English.</summary>
    public static string WriteText(string path, int verses = 200)
    {
        var text = new StringBuilder();
        string[] subjects = ["the king", "the people", "the prophet", "the priest", "the children of israel"];
        string[] verbs = ["went up to", "came unto", "spake unto", "looked upon", "blessed"];
        string[] objects = ["the city", "the temple", "the mountain", "the river", "the land of egypt"];
        for (int i = 0; i < verses; i++)
            text.Append("And ").Append(subjects[i % 5]).Append(' ').Append(verbs[(i / 5) % 5]).Append(' ').Append(objects[(i / 25) % 5]).Append(".\n");
        File.WriteAllText(path, text.ToString());
        return path;
    }

    /// <summary>A mask.json for <paramref name="config"/> keeping <paramref name="kept"/>.</summary>
    public static string WriteMask(string path, ModelConfig config, params int[] kept)
    {
        MaskFile.For(config, "test", kept).Save(path);
        return path;
    }

    /// <summary>
    /// Starts e3 with <paramref name="args"/>, kills it (for real, the whole process tree) as soon as the checkpoint
    /// folder's <c>latest</c> names step <paramref name="killAfterStep"/> or later, and returns that step.
    /// </summary>
    public static long RunAndKillAfterCheckpoint(string checkpointFolder, long killAfterStep, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "e3.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        string latest = Path.Combine(checkpointFolder, "latest");
        using var child = Process.Start(psi)!;
        var deadline = Stopwatch.StartNew();
        long step = -1;
        while (!child.HasExited && deadline.Elapsed < TimeSpan.FromMinutes(4))
        {
            step = ReadLatest(latest);
            if (step >= killAfterStep) break;
            Thread.Sleep(5);
        }
        bool finishedEarly = child.HasExited; // checked before reading its output, which would wait for it
        if (!finishedEarly) child.Kill(entireProcessTree: true);
        child.WaitForExit();
        Assert.False(finishedEarly, $"e3 finished before it could be killed at step {killAfterStep}: {child.StandardError.ReadToEnd()}");
        return ReadLatest(latest);
    }

    static long ReadLatest(string latest)
    {
        try
        {
            string name = File.ReadAllText(latest).Trim();
            return name.StartsWith("step-", StringComparison.Ordinal) && long.TryParse(name[5..], out long s) ? s : -1;
        }
        catch (IOException)
        {
            return -1;
        }
    }

    /// <summary>Runs e3 in a child process (the real executable) and returns its result.</summary>
    public static CliProcess.Result E3(params string[] args) => CliProcess.Run(args);
}
