using System.CommandLine;
using System.Diagnostics;
using E3.Cli.Commands;
using E3.Model;
using E3.Pruning.TeacherCache;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.TeacherCache;

/// <summary><c>e3 teacher-cache</c>: contents against the forward pass, and a real interruption resumed byte for byte.</summary>
public sealed class TeacherCacheCommandTests
{
    private const int Vocab = 4096, SeqLen = 8, K = 10;

    private static (string Model, string Data) Setup(TempDir dir, int tokens)
    {
        string model = dir["teacher"];
        RandomModel.Write(new RandomModelSpec { Layers = 4, Hidden = 256, Heads = 4, KvHeads = 2, HeadDim = 64, Intermediate = 1024, Vocab = Vocab, Seed = 5, InitStd = 0.05f }, model);
        var random = new Random(9);
        var bytes = new byte[tokens * 4];
        for (int i = 0; i < tokens; i++) BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), (uint)random.Next(Vocab));
        string data = dir["data.bin"];
        File.WriteAllBytes(data, bytes);
        return (model, data);
    }

    private static int InProcess(params string[] args) => new RootCommand { TeacherCacheCommand.Create() }.Parse(args).Invoke();

    private static string[] Args(string model, string data, string output) =>
        ["teacher-cache", "--model", model, "--data", data, "--topk", $"{K}", "--out", output, "--seq-len", $"{SeqLen}", "--threads", "1", "--json"];

    [Fact]
    public void CacheHoldsTheTopKOfTheForwardPass()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir, 20);
        string output = dir["cache.e3tk"];
        Assert.Equal(0, InProcess(Args(model, data, output)));

        using var reader = TeacherCacheReader.Open(output);
        reader.RequireModel(K, Vocab);
        var teacher = reader.ToSparseTeacher();
        var ids = E3.Model.IO.TokenFile.Read(data).Ids;
        using var backend = new E3.Backends.Cpu.CpuBackend(1);
        using var decoder = E3.Model.Decoder.DecoderModel.Load(model, backend);
        for (int start = 0; start < ids.Length; start += SeqLen)
        {
            int n = Math.Min(SeqLen, ids.Length - start);
            float[] logits = decoder.Forward(ids.AsSpan(start, n));
            for (int t = 0; t < n; t++)
            {
                var row = logits.AsSpan(t * Vocab, Vocab).ToArray();
                var expected = Enumerable.Range(0, Vocab).OrderByDescending(c => row[c]).ThenBy(c => c).Take(K).ToArray();
                Assert.Equal(expected, teacher.Indices.Slice((start + t) * K, K).ToArray());
                double lse = Math.Log(row.Sum(z => Math.Exp(z)));
                for (int i = 0; i < K; i++)
                    // Stored as fp32: half an ulp of values up to ~16 is 1e-6.
                    Assert.Equal(row[expected[i]] - lse, teacher.LogProbs.Span[(start + t) * K + i], 2e-6);
            }
        }
    }

    [Fact]
    public void KilledRunResumesToTheSameBytesAsAnUninterruptedRun()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir, 1200);
        string reference = dir["uninterrupted.e3tk"], resumed = dir["resumed.e3tk"];
        Assert.Equal(0, InProcess(Args(model, data, reference)));

        // The real command in a child process, killed once a few shards are on disk.
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "e3.dll"));
        foreach (var a in Args(model, data, resumed)) psi.ArgumentList.Add(a);
        using (var child = Process.Start(psi)!)
        {
            var deadline = Stopwatch.StartNew();
            string partial = resumed + ".partial";
            while (!(File.Exists(partial) && new FileInfo(partial).Length > 3_000) && !child.HasExited && deadline.Elapsed < TimeSpan.FromMinutes(2))
                Thread.Yield(); // a tight poll: the child writes a shard every few milliseconds
            bool finishedEarly = child.HasExited; // checked before anything reads its output, which would wait for it
            Assert.False(finishedEarly, "the child finished before it could be interrupted");
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
        // The unfinished cache is only ever FILE.partial: FILE appears when every token is in.
        Assert.False(File.Exists(resumed));
        long writtenBeforeResume;
        using (var referenceReader = TeacherCacheReader.Open(reference))
        using (var probe = TeacherCacheWriter.Resume(resumed + ".partial", referenceReader.Header))
            writtenBeforeResume = probe.TokensWritten;
        Assert.InRange(writtenBeforeResume, SeqLen, 1200 - 1); // really interrupted, with work to keep

        Assert.Equal(0, InProcess(Args(model, data, resumed)));
        Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(resumed));
        Assert.False(File.Exists(resumed + ".partial"));
    }

    [Fact]
    public void AFailedRunLeavesNoCacheFile()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir, 40);
        // NaN final-norm weights: every logit is NaN, and the first shard fails.
        E3.Tests.IO.RawSafeTensors.SetF32(Path.Combine(model, "model.safetensors"), float.NaN, "model.norm.weight");

        string output = dir["cache.e3tk"];
        var stderr = new StringWriter();
        var saved = Console.Error;
        Console.SetError(stderr);
        try
        {
            Assert.Equal(1, InProcess(Args(model, data, output)));
        }
        finally
        {
            Console.SetError(saved);
        }
        Assert.Contains("NaN", stderr.ToString());
        Assert.False(File.Exists(output)); // a cache file is complete or absent; the work so far stays in cache.e3tk.partial
    }

    [Fact]
    public void ResumingWithAnotherKIsAnErrorNamingTheField()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir, 12);
        string output = dir["cache.e3tk"];
        Assert.Equal(0, InProcess(Args(model, data, output)));
        var args = Args(model, data, output);
        args[6] = "5";
        var stderr = new StringWriter();
        var saved = Console.Error;
        Console.SetError(stderr);
        try
        {
            Assert.Equal(1, InProcess(args));
        }
        finally
        {
            Console.SetError(saved);
        }
        Assert.Contains($"{output}: K: the cache holds top-10, expected top-5", stderr.ToString());
    }
}
