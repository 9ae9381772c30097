using Xunit;
using E3.Tests.Support;

namespace E3.Tests.Distill;

/// <summary>
/// A run of <c>e3 train</c> / <c>e3 distill</c> killed for real after a checkpoint at a random step and resumed must
/// write the same bytes as a run that was never interrupted: the batches are keyed by step, the fp32 parameters and
/// AdamW moments are saved exactly, and every reduction on the CPU has a fixed order.
/// </summary>
public sealed class TrainResumeTests
{
    const int Steps = 40;

    static string[] Common(string data, string checkpoint, string output) =>
    [
        "--data", data, "--tokens", (Steps * 2 * 16).ToString(), "--seq", "16", "--batch", "2", "--grad-accum", "1", "--lr", "3e-3",
        "--warmup", "5", "--clip", "0.5", "--weight-decay", "0.01", "--seed", "5", "--threads", "2", "--checkpoint", checkpoint,
        "--checkpoint-every", "1", "--out", output, "--json",
    ];

    [Fact]
    public void KilledTrainRunResumesBitIdentically()
    {
        using var dir = new TempDir("e3-train-resume");
        DistillTestModels.Write(dir["model"]);
        string data = DistillTestModels.WriteText(dir["data.txt"]);
        Check(dir, (checkpoint, output) => ["train", "--model", dir["model"], .. Common(data, checkpoint, output)]);
    }

    [Fact]
    public void KilledDistillRunWithAMaskResumesBitIdentically()
    {
        using var dir = new TempDir("e3-distill-resume");
        var (mask, data) = DistillInputs(dir);
        Check(dir, (checkpoint, output) => ["distill", "--teacher", dir["teacher"], "--mask", mask, .. Common(data, checkpoint, output)]);
        // The mask travels with the model; the dropped layer 1 is written unchanged, a kept layer is trained.
        Assert.True(File.Exists(Path.Combine(dir["uninterrupted"], "mask.json")));
        using var before = E3.Model.IO.SafeTensorsCheckpoint.Open(dir["teacher"]);
        using var after = E3.Model.IO.SafeTensorsCheckpoint.Open(dir["uninterrupted"]);
        Assert.Equal(before.Names.Order(), after.Names.Order());
        foreach (var name in before.Names)
        {
            bool same = before.GetBytes(name).SequenceEqual(after.GetBytes(name));
            if (name.StartsWith("model.layers.1.", StringComparison.Ordinal)) Assert.True(same, $"{name} of the dropped layer changed");
            else if (name.EndsWith("proj.weight", StringComparison.Ordinal)) Assert.False(same, $"{name} of a kept layer was not trained");
        }
    }

    /// <summary>
    /// Activation checkpointing recomputes each layer in the backward with the same arithmetic as its forward, so a
    /// run with it writes the same bytes as one without, and a run resumes across the flag.
    /// </summary>
    [Fact]
    public void ActivationCheckpointingChangesNoBit()
    {
        using var dir = new TempDir("e3-distill-recompute");
        var (mask, data) = DistillInputs(dir);
        string[] Args(string checkpoint, string output) => ["distill", "--teacher", dir["teacher"], "--mask", mask, .. Common(data, checkpoint, output)];
        var plain = DistillTestModels.E3(Args(dir["ckpt-a"], dir["plain"]));
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        var recomputed = DistillTestModels.E3([.. Args(dir["ckpt-b"], dir["recomputed"]), "--activation-checkpointing"]);
        Assert.True(recomputed.ExitCode == 0, recomputed.Stderr);
        Assert.Contains("\"activation_checkpointing\": true", recomputed.Stdout);
        Assert.Contains("\"activation_checkpointing\": false", plain.Stdout);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir["plain"], "model.safetensors")), File.ReadAllBytes(Path.Combine(dir["recomputed"], "model.safetensors")));
    }

    /// <summary>A 4-layer teacher in <c>teacher</c>, a mask that keeps layers 0, 2 and 3, and a text file to train on.</summary>
    static (string Mask, string Data) DistillInputs(TempDir dir)
    {
        var config = DistillTestModels.Write(dir["teacher"], layers: 4);
        return (DistillTestModels.WriteMask(dir["mask.json"], config, 0, 2, 3), DistillTestModels.WriteText(dir["data.txt"]));
    }

    static void Check(TempDir dir, Func<string, string, string[]> args)
    {
        var reference = DistillTestModels.E3(args(dir["ckpt-a"], dir["uninterrupted"]));
        Assert.True(reference.ExitCode == 0, reference.Stderr);

        long killAt = new Random().Next(2, Steps - 10); // a random step, with work left to do after it
        long saved = DistillTestModels.RunAndKillAfterCheckpoint(dir["ckpt-b"], killAt, args(dir["ckpt-b"], dir["resumed"]));
        Assert.InRange(saved, killAt, Steps - 1);
        Assert.False(Directory.Exists(dir["resumed"]), "a killed run left an output folder");

        var resumed = DistillTestModels.E3([.. args(dir["ckpt-b"], dir["resumed"]), "--resume"]);
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains("\"resumed\": true", resumed.Stdout);
        Assert.Contains($"\"start_step\": {saved}", resumed.Stdout);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir["uninterrupted"], "model.safetensors")), File.ReadAllBytes(Path.Combine(dir["resumed"], "model.safetensors")));
        Assert.Equal(File.ReadAllText(Path.Combine(dir["uninterrupted"], "config.json")), File.ReadAllText(Path.Combine(dir["resumed"], "config.json")));
    }
}
