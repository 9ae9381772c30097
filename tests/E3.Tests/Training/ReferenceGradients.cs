using E3.Tests.Reference;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace E3.Tests.Training;

/// <summary>
/// The oracle: TorchSharp autograd through the independent reference forward on the same folder and inputs, with the
/// same loss as <see cref="TrainingCase.Loss"/> written in torch ops.
/// </summary>
internal sealed class ReferenceGradients
{
    ReferenceGradients(Dictionary<string, float[]> weights, float[] inputEmbeddings, double[] gates)
    {
        Weights = weights;
        InputEmbeddings = inputEmbeddings;
        Gates = gates;
    }

    /// <summary>dL/dW for every stored tensor, by HF name.</summary>
    public IReadOnlyDictionary<string, float[]> Weights { get; }
    /// <summary>dL/d(embedding output) [B·T, hidden].</summary>
    public float[] InputEmbeddings { get; }
    public double[] Gates { get; }

    public static ReferenceGradients Compute(TrainingCase c, ScalarType dtype = ScalarType.Float32)
    {
        using var checkpoint = ReferenceCheckpoint.Load(c.Folder, dtype);
        using var scope = torch.NewDisposeScope();
        foreach (var name in checkpoint.TensorNames) checkpoint.Weight(name).requires_grad_(true);
        var ids = torch.tensor(c.Tokens.Select(t => (long)t).ToArray(), dtype: ScalarType.Int64);
        var embedded = checkpoint.Weight("model.embed_tokens.weight").index_select(0, ids).reshape(c.Batch, c.Positions, c.Config.HiddenSize);
        embedded.retain_grad();
        var gates = torch.tensor(c.Gates.Select(g => (double)g).ToArray(), dtype: dtype).requires_grad_(true);
        var logits = TorchReferenceDecoder.ForwardFromEmbeddings(checkpoint, embedded, gates).reshape(-1, c.Config.VocabSize);
        var weights = torch.tensor(c.Weights, dtype: ScalarType.Float32).reshape(-1, c.Config.VocabSize).to(dtype);
        var labels = torch.tensor(c.Labels.Select(l => (long)l).ToArray(), dtype: ScalarType.Int64);
        var loss = (logits * weights).sum() + F.cross_entropy(logits, labels);
        loss.backward();
        var grads = checkpoint.TensorNames.ToDictionary(n => n, n => Floats(checkpoint.Weight(n).grad!));
        return new ReferenceGradients(grads, Floats(embedded.grad!), gates.grad!.to(ScalarType.Float64).data<double>().ToArray());
    }

    static float[] Floats(Tensor t) => t.to(ScalarType.Float32).contiguous().data<float>().ToArray();
}
