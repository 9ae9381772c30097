using Xunit;
using E3.Tests.Support;

namespace E3.Tests.Distill;

/// <summary>Bad input to train/distill: exit 1, one line naming the file and field, and no output folder.</summary>
public sealed class BadInputTests
{
    static string[] Small(string data, string output) =>
        ["--data", data, "--tokens", "64", "--seq", "8", "--batch", "2", "--threads", "1", "--out", output];

    static void AssertFailed(CliProcess.Result r, string output, params string[] named) => AssertRefused(r, output, 1, named);

    static void AssertRefused(CliProcess.Result r, string output, int exitCode, params string[] named)
    {
        Assert.True(r.ExitCode == exitCode, $"exit {r.ExitCode}: {r.Stderr}");
        foreach (var n in named) Assert.Contains(n, r.Stderr);
        Assert.False(Directory.Exists(output), "a failed run left an output folder");
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(output)!, ".*tmp*"));
    }

    [Fact]
    public void TeacherAndStudentWithDifferentVocabulariesAreRefused()
    {
        using var dir = new TempDir("e3-distill-bad");
        DistillTestModels.Write(dir["teacher"], vocab: 264);
        DistillTestModels.Write(dir["student"], vocab: 300);
        string data = DistillTestModels.WriteText(dir["data.txt"], 20);
        var r = DistillTestModels.E3(["distill", "--teacher", dir["teacher"], "--student", dir["student"], .. Small(data, dir["out"])]);
        AssertFailed(r, dir["out"], "vocab_size", "300", "264", Path.Combine(dir["student"], "config.json"));
    }

    [Theory]
    [InlineData("bf16", null, "--teacher-dtype: bf16 needs --device cuda or emu")] // the cpu backend computes in fp32 only
    [InlineData("f16", null, "--teacher-dtype: 'f16' is not one of bf16, f32")]
    [InlineData("f32", "cache.e3tc", "--teacher-dtype f32: the teacher is not run with --teacher-cache")]
    public void ATeacherDTypeThatCannotApplyIsRefused(string dtype, string? cache, string message)
    {
        using var dir = new TempDir("e3-distill-bad");
        var config = DistillTestModels.Write(dir["teacher"], layers: 4, seed: 1);
        string mask = DistillTestModels.WriteMask(dir["mask.json"], config, 0, 1, 3);
        string data = DistillTestModels.WriteText(dir["data.txt"], 20);
        string[] extra = cache == null ? [] : ["--teacher-cache", dir[cache]];
        var r = DistillTestModels.E3(["distill", "--teacher", dir["teacher"], "--mask", mask, "--teacher-dtype", dtype, .. extra, .. Small(data, dir["out"])]);
        AssertRefused(r, dir["out"], 2, message); // a usage error
    }

    [Fact]
    public void AnExistingOutputIsKeptUnlessForced()
    {
        using var dir = new TempDir("e3-distill-bad");
        DistillTestModels.Write(dir["model"]);
        string data = DistillTestModels.WriteText(dir["data.txt"], 20);
        Directory.CreateDirectory(dir["out"]);
        File.WriteAllText(dir["out/notes.txt"], "mine");
        var r = DistillTestModels.E3(["train", "--model", dir["model"], .. Small(data, dir["out"])]);
        Assert.True(r.ExitCode == 1, r.Stderr);
        Assert.Contains($"--out: {dir["out"]} exists and is not empty; choose another folder or pass --force", r.Stderr);
        Assert.Equal("mine", File.ReadAllText(dir["out/notes.txt"]));

        var forced = DistillTestModels.E3(["train", "--model", dir["model"], .. Small(data, dir["out"]), "--force"]);
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        Assert.False(File.Exists(dir["out/notes.txt"]));
        Assert.True(File.Exists(dir["out/model.safetensors"]));
    }

    [Theory]
    [InlineData("train")]
    [InlineData("distill")]
    public void AnOutputThatHoldsAnInputIsRefusedEvenWhenForced(string command)
    {
        // --out naming the model's parent folder, or the folder one runs in, would be replaced with the output.
        using var dir = new TempDir("e3-distill-bad");
        var config = DistillTestModels.Write(dir["par/m"], layers: 4, seed: 1);
        string mask = DistillTestModels.WriteMask(dir["mask.json"], config, 0, 1, 3);
        string data = DistillTestModels.WriteText(dir["data.txt"], 20);
        string[] model = command == "train" ? ["--model", dir["par/m"]] : ["--teacher", dir["par/m"], "--mask", mask];
        var r = DistillTestModels.E3([command, .. model, .. Small(data, dir["par"]), "--force"]);
        Assert.True(r.ExitCode == 1, r.Stderr);
        Assert.Contains($"--out: {dir["par"]} holds {dir["par/m"]}, which this command reads", r.Stderr);
        Assert.True(File.Exists(dir["par/m/model.safetensors"]));

        Directory.CreateDirectory(dir["work/sub"]);
        var here = CliProcess.RunIn(dir["work/sub"], [command, .. model, .. Small(data, dir["work"]), "--force"]);
        Assert.True(here.ExitCode == 1, here.Stderr);
        Assert.Contains($"--out: {dir["work"]} holds the working directory", here.Stderr);
        Assert.True(Directory.Exists(dir["work/sub"]));
    }

    [Fact]
    public void EmptyDataIsRefused()
    {
        using var dir = new TempDir("e3-distill-bad");
        DistillTestModels.Write(dir["model"]);
        File.WriteAllText(dir["empty.txt"], "");
        var r = DistillTestModels.E3(["train", "--model", dir["model"], .. Small(dir["empty.txt"], dir["out"])]);
        AssertFailed(r, dir["out"], dir["empty.txt"], "0 tokens");
    }

    [Fact]
    public void MaskForAnotherModelIsRefused()
    {
        using var dir = new TempDir("e3-distill-bad");
        DistillTestModels.Write(dir["teacher"], layers: 4, seed: 1);
        var other = DistillTestModels.Write(dir["other"], layers: 4, seed: 1, tied: false); // same depth, different config
        string mask = DistillTestModels.WriteMask(dir["mask.json"], other, 0, 1, 3);
        string data = DistillTestModels.WriteText(dir["data.txt"], 20);
        var r = DistillTestModels.E3(["distill", "--teacher", dir["teacher"], "--mask", mask, .. Small(data, dir["out"])]);
        AssertFailed(r, dir["out"], mask, "config_hash");
    }

    [Fact]
    public void CorruptCheckpointOnResumeIsRefused()
    {
        using var dir = new TempDir("e3-distill-bad");
        DistillTestModels.Write(dir["model"]);
        string data = DistillTestModels.WriteText(dir["data.txt"], 20);
        string[] args = ["train", "--model", dir["model"], .. Small(data, dir["first"]), "--checkpoint", dir["ckpt"], "--checkpoint-every", "1"];
        var first = DistillTestModels.E3(args);
        Assert.True(first.ExitCode == 0, first.Stderr);

        string step = Path.Combine(dir["ckpt"], File.ReadAllText(Path.Combine(dir["ckpt"], "latest")).Trim());
        string parameters = Path.Combine(step, "params.safetensors");
        byte[] bytes = File.ReadAllBytes(parameters);
        File.WriteAllBytes(parameters, bytes[..(bytes.Length / 2)]); // truncated, as by a full disk
        var r = DistillTestModels.E3(["train", "--model", dir["model"], .. Small(data, dir["second"]), "--checkpoint", dir["ckpt"], "--resume"]);
        AssertFailed(r, dir["second"], parameters);

        // A checkpoint of a run with other options is refused by its fingerprint, naming the state file.
        File.WriteAllBytes(parameters, bytes);
        var other = DistillTestModels.E3(["train", "--model", dir["model"], .. Small(data, dir["second"]), "--lr", "5e-4", "--checkpoint", dir["ckpt"], "--resume"]);
        AssertFailed(other, dir["second"], Path.Combine(step, "state.json"), "fingerprint");
    }

    [Fact]
    public void ACheckpointThatLiesIsRefusedNamingTheFileAndField()
    {
        using var dir = new TempDir("e3-distill-bad");
        DistillTestModels.Write(dir["model"]);
        string data = DistillTestModels.WriteText(dir["data.txt"], 20);
        var first = DistillTestModels.E3(["train", "--model", dir["model"], .. Small(data, dir["first"]), "--checkpoint", dir["ckpt"], "--checkpoint-every", "1"]);
        Assert.True(first.ExitCode == 0, first.Stderr);
        string step = Path.Combine(dir["ckpt"], File.ReadAllText(Path.Combine(dir["ckpt"], "latest")).Trim());
        string statePath = Path.Combine(step, "state.json"), parameters = Path.Combine(step, "params.safetensors");
        string state = File.ReadAllText(statePath);
        CliProcess.Result Resume() => DistillTestModels.E3(["train", "--model", dir["model"], .. Small(data, dir["second"]), "--checkpoint", dir["ckpt"], "--resume"]);

        // A loss history entry that is not [step, loss] (was a NullReferenceException).
        var json = System.Text.Json.Nodes.JsonNode.Parse(state)!;
        json["loss_history"]![0]![0] = null;
        File.WriteAllText(statePath, json.ToJsonString());
        AssertFailed(Resume(), dir["second"], statePath, "loss_history[0]", "is not [step, loss]");

        // A step beyond the run's length, in both files that record it (was accepted: "-968 steps now").
        json = System.Text.Json.Nodes.JsonNode.Parse(state)!;
        json["step"] = 1000;
        File.WriteAllText(statePath, json.ToJsonString());
        string optimizer = Path.Combine(step, "adamw.bin");
        byte[] adam = File.ReadAllBytes(optimizer);
        byte[] lying = (byte[])adam.Clone();
        BitConverter.TryWriteBytes(lying.AsSpan(8, 8), 1000L);
        File.WriteAllBytes(optimizer, lying);
        AssertFailed(Resume(), dir["second"], dir["ckpt"], "step", "1000 is beyond this run's");
        File.WriteAllBytes(optimizer, adam);
        File.WriteAllText(statePath, state);

        // A NaN weight (was carried into the output model).
        string name = E3.Tests.IO.RawSafeTensors.SetF32(parameters, float.NaN, from: 2, to: 3);
        AssertFailed(Resume(), dir["second"], parameters, name, "element 2 is NaN");
    }
}
