using E3.Backends;
using E3.Model.Decoder;

namespace E3.Model.Training;

/// <summary>
/// fp32 master copies of a model's trainable BF16 tensors, for training bf16 models: an optimizer updates the masters
/// (small steps would vanish if added to bf16 directly) and <see cref="Publish"/> rounds them back into the bf16
/// weights the forward reads. fp32 tensors need no master and get none.
/// </summary>
public sealed class MasterWeights : IDisposable
{
    readonly IBackend _b;
    readonly Dictionary<string, (Tensor Master, Tensor Weight)> _pairs = new();

    /// <param name="model">The model whose bf16 tensors are mirrored.</param>
    /// <param name="freezePatterns">Globs of tensors that are not trained and so need no master.</param>
    /// <param name="retainedLayers">The pruned model's mask: layers it drops are not trained and get no master. Null retains all.</param>
    public MasterWeights(DecoderModel model, IEnumerable<string> freezePatterns, LayerMask? retainedLayers = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _b = model.Backend;
        var filter = new ParameterFilter(freezePatterns, retainedLayers);
        filter.RequireLayers(model.Config);
        try
        {
            foreach (var (name, weight) in ByName(model))
            {
                if (weight.DType != DType.BF16 || !filter.IsTrainable(name)) continue;
                var values = new float[weight.ElementCount];
                _b.Download(weight, values);
                var master = _b.Allocate(DType.F32, weight.Shape);
                _b.Upload(values, master);
                _pairs[name] = (master, weight);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>fp32 masters by HF tensor name.</summary>
    public IReadOnlyDictionary<string, Tensor> Masters => _pairs.ToDictionary(p => p.Key, p => p.Value.Master);

    /// <summary>Rounds every master to bf16 (round to nearest even) into the model's weight.</summary>
    public void Publish()
    {
        foreach (var (master, weight) in _pairs.Values)
        {
            var values = new float[master.ElementCount];
            _b.Download(master, values);
            _b.Upload(values, weight);
        }
    }

    /// <summary>Every weight tensor of the model by HF name (a tied head appears once, as the embedding).</summary>
    public static IEnumerable<(string Name, Tensor Weight)> ByName(DecoderModel model)
    {
        var w = model.Weights;
        yield return (WeightNames.Embedding, w.Embedding);
        for (int i = 0; i < w.Layers.Count; i++)
        {
            var l = w.Layers[i];
            string L(string s) => WeightNames.Layer(i, s);
            var tensors = new (string, Tensor?)[]
            {
                (L(WeightNames.InputNorm), l.InputNorm), (L(WeightNames.PostAttentionNorm), l.PostAttentionNorm),
                (L(WeightNames.QProj + ".weight"), l.Q), (L(WeightNames.KProj + ".weight"), l.K), (L(WeightNames.VProj + ".weight"), l.V),
                (L(WeightNames.OProj + ".weight"), l.O), (L(WeightNames.GateProj + ".weight"), l.Gate), (L(WeightNames.UpProj + ".weight"), l.Up),
                (L(WeightNames.DownProj + ".weight"), l.Down), (L(WeightNames.QProj + ".bias"), l.QBias), (L(WeightNames.KProj + ".bias"), l.KBias),
                (L(WeightNames.VProj + ".bias"), l.VBias), (L(WeightNames.OProj + ".bias"), l.OBias), (L(WeightNames.QNorm), l.QNorm),
                (L(WeightNames.KNorm), l.KNorm),
            };
            foreach (var (name, t) in tensors)
                if (t != null) yield return (name, t);
        }
        yield return (WeightNames.FinalNorm, w.FinalNorm);
        if (!w.Tied) yield return (WeightNames.LmHead, w.LmHead);
    }

    public void Dispose()
    {
        foreach (var (master, _) in _pairs.Values) master.Dispose();
        _pairs.Clear();
    }
}
