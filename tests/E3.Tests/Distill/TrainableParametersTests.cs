using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Pruning.Distill;
using E3.Tests.Reference;
using E3.Tests.Training;
using TorchSharp;
using Xunit;

namespace E3.Tests.Distill;

/// <summary>
/// The fp32 masters a training job keeps of a bf16 model: exact upcasts of the stored weights, published back with
/// torch's bf16 rounding, so that a step far below bf16 resolution accumulates in the master instead of rounding away.
/// </summary>
public sealed class TrainableParametersTests
{
    [Fact]
    public void MastersAreExactUpcastsAndPublishRoundsLikeTorch()
    {
        using var c = new TrainingCase("qwen2", false, false, [1f, 1f], storage: ReferenceStorage.BF16);
        using var cpu = new CpuBackend(2);
        using var model = DecoderModel.Load(c.Folder, cpu);
        var parameters = new TrainableParameters(model, ["model.layers.1.*"]);
        const string Name = "model.layers.0.self_attn.q_proj.weight";
        int index = parameters.Names.ToList().IndexOf(Name);
        Assert.True(index >= 0);
        Assert.DoesNotContain(parameters.Names, n => n.StartsWith("model.layers.1.", StringComparison.Ordinal));
        // fp32 norms and biases are trained too; their values are the engine's own.
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", parameters.Names);
        Assert.Equal(parameters.Values.Select(v => v.Length), parameters.Gradients.Select(g => g.Length));

        using var reference = ReferenceCheckpoint.Load(c.Folder);
        var stored = reference.Weight(Name).data<float>().ToArray();
        Assert.Equal(stored, parameters.Values[index]);

        var stepped = stored.Select((x, i) => x + (i % 3 - 1) * 3e-3f).ToArray();
        stepped.CopyTo(parameters.Values[index], 0);
        parameters.Publish();
        var published = new float[stepped.Length];
        cpu.Download(model.Weights.Layers[0].Q, published);
        using var expected = torch.tensor(stepped).to(torch.ScalarType.BFloat16).to(torch.ScalarType.Float32);
        Assert.Equal(expected.data<float>().ToArray(), published);
        Assert.NotEqual(stored, published);
        Assert.Equal(stepped, parameters.Values[index]); // the master keeps what bf16 cannot hold
    }
}
