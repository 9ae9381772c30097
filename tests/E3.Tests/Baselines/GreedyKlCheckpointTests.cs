using System.Diagnostics;
using E3.Model;
using E3.Model.IO;
using E3.Pruning.Baselines;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Baselines;

/// <summary>drop-one-kl's checkpoint: a resumed run ends where an uninterrupted one does, and a wrong checkpoint is refused.</summary>
public sealed class GreedyKlCheckpointTests : IDisposable
{
    readonly BaselineFixture _fixture = new(6, modelSeed: 35, sequenceLength: 8, batch: 2, batches: 1, dataSeed: 2);

    [Fact]
    public void ResumingFromEveryStepGivesTheUninterruptedResult()
    {
        using var model = _fixture.LoadModel();
        var states = new List<GreedyKlResult>();
        var full = GreedyDropOneKl.Run(model, _fixture.Data, 3, stepFinished: states.Add);
        Assert.Equal(3, states.Count);
        string path = Path.Combine(Path.GetDirectoryName(_fixture.Folder)!, "greedy.json");
        var (configHash, calibrationHash) = GreedyKlCheckpoint.Identity(model.Config, _fixture.Data);
        foreach (var state in states)
        {
            // Through the file, as a restarted process would see it.
            new GreedyKlCheckpoint(configHash, 3, calibrationHash, state).Save(path);
            var loaded = GreedyKlCheckpoint.Load(path, model.Config, _fixture.Data, 3).State;
            var resumed = GreedyDropOneKl.Run(model, _fixture.Data, 3, resumeFrom: loaded);
            Assert.Equal(full.Order, resumed.Order);
            Assert.Equal(full.KlAfterStep, resumed.KlAfterStep); // exact: doubles round-trip through JSON
            Assert.Equal(full.DropOneKl, resumed.DropOneKl);
        }
    }

    [Fact]
    public void ACheckpointForOtherDataAnotherCountOrCorruptIsRefusedByField()
    {
        using var model = _fixture.LoadModel();
        string path = Path.Combine(Path.GetDirectoryName(_fixture.Folder)!, "greedy.json");
        var (configHash, calibrationHash) = GreedyKlCheckpoint.Identity(model.Config, _fixture.Data);
        var state = new GreedyKlResult([4], [0.25], [1, 2, 3, 4, 5, 6]);
        new GreedyKlCheckpoint(configHash, 3, calibrationHash, state).Save(path);

        var otherData = new CalibrationSet(8, 2, [_fixture.Data.Batches[0].Select(t => (t + 1) % BaselineFixture.Vocab).ToArray()]);
        Assert.Equal("calibration_hash", Assert.Throws<ModelFormatException>(() => GreedyKlCheckpoint.Load(path, model.Config, otherData, 3)).Field);
        Assert.Equal("drop", Assert.Throws<ModelFormatException>(() => GreedyKlCheckpoint.Load(path, model.Config, _fixture.Data, 2)).Field);

        File.WriteAllText(path, File.ReadAllText(path).Replace("\"order\":[4]", "\"order\":[9]"));
        Assert.Equal("order[0]", Assert.Throws<ModelFormatException>(() => GreedyKlCheckpoint.Load(path, model.Config, _fixture.Data, 3)).Field);
        File.WriteAllText(path, "{\"format\": \"e3-greedy-kl-check");
        Assert.Equal("(json)", Assert.Throws<ModelFormatException>(() => GreedyKlCheckpoint.Load(path, model.Config, _fixture.Data, 3)).Field);
    }

    [Fact]
    public void AKilledRunResumesToTheSameMaskBytes()
    {
        using var dir = new TempDir("e3-baseline-kill");
        string model = dir["model"], data = dir["data.bin"];
        // Sized so that a greedy step takes on the order of a second: the kill lands between the first step's
        // checkpoint and the end of the run.
        RandomModel.Write(new RandomModelSpec { Layers = 8, Hidden = 128, Heads = 4, KvHeads = 2, HeadDim = 32, Intermediate = 384, Vocab = 300, Seed = 3, InitStd = 0.08f }, model);
        File.WriteAllBytes(data, Enumerable.Range(0, 3000).SelectMany(i => BitConverter.GetBytes((uint)((i * 7919) % 300))).ToArray());
        string[] Args(string name, string checkpoint) =>
            ["baseline", "--method", "drop-one-kl", "--model", model, "--data", data, "--keep", "5", "--tokens", "512", "--seq", "64",
             "--batch", "4", "--threads", "1", "--json", "--out", dir[name], "--checkpoint", dir[checkpoint], "--resume"];

        var uninterrupted = CliProcess.Run(Args("reference.json", "ckpt-reference"));
        Assert.True(uninterrupted.ExitCode == 0, uninterrupted.Stderr);

        string checkpointFile = Path.Combine(dir["ckpt-resumed"], GreedyKlCheckpoint.FileName);
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "e3.dll"));
        foreach (var a in Args("resumed.json", "ckpt-resumed")) psi.ArgumentList.Add(a);
        using (var child = Process.Start(psi)!)
        {
            var deadline = Stopwatch.StartNew();
            while (!File.Exists(checkpointFile) && !child.HasExited && deadline.Elapsed < TimeSpan.FromMinutes(3))
                Thread.Sleep(2);
            bool finishedEarly = child.HasExited; // before reading its output, which would wait for it
            Assert.False(finishedEarly, "the child finished before it could be interrupted");
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
        Assert.False(File.Exists(dir["resumed.json"]), "a killed run left a mask");
        Assert.Empty(Directory.GetFiles(dir.Path, "resumed.json.tmp-*"));
        var partial = File.ReadAllText(checkpointFile);
        Assert.DoesNotContain("\"order\":[]", partial);

        var resumed = CliProcess.Run(Args("resumed.json", "ckpt-resumed"));
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Equal(File.ReadAllBytes(dir["reference.json"]), File.ReadAllBytes(dir["resumed.json"]));
    }

    public void Dispose() => _fixture.Dispose();
}
