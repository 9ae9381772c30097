using E3.Backends;
using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Tests.Reference;
using TorchSharp;
using Xunit;

namespace E3.Tests.Training;

/// <summary>fp32 masters of bf16 weights: exact upcasts on creation, and published back with torch's bf16 rounding.</summary>
public sealed class MasterWeightsTests
{
    [Fact]
    public void MastersAreExactUpcastsAndPublishRoundsLikeTorch()
    {
        using var c = new TrainingCase("qwen2", false, false, [1f, 1f], storage: ReferenceStorage.BF16);
        using var cpu = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, cpu);
        using var masters = new MasterWeights(model, ["model.layers.1.*"]);
        string name = "model.layers.0.self_attn.q_proj.weight";
        Assert.Contains(name, masters.Masters.Keys);
        Assert.DoesNotContain(masters.Masters.Keys, n => n.StartsWith("model.layers.1."));
        // Norms and biases are fp32 in the engine already: no master.
        Assert.DoesNotContain("model.layers.0.self_attn.q_proj.bias", masters.Masters.Keys);

        using var reference = ReferenceCheckpoint.Load(c.Folder);
        var stored = reference.Weight(name).data<float>().ToArray();
        var master = new float[stored.Length];
        cpu.Download(masters.Masters[name], master);
        Assert.Equal(stored, master);

        // A step far below bf16 resolution survives in the master, then publishing rounds to nearest even as torch does.
        var stepped = master.Select((x, i) => x + (i % 3 - 1) * 3e-3f).ToArray();
        cpu.Upload(stepped, masters.Masters[name]);
        masters.Publish();
        var published = new float[stepped.Length];
        cpu.Download(model.Weights.Layers[0].Q, published);
        using var expected = torch.tensor(stepped).to(torch.ScalarType.BFloat16).to(torch.ScalarType.Float32);
        Assert.Equal(expected.data<float>().ToArray(), published);
        Assert.NotEqual(stored, published);
    }
}
