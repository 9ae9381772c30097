using E3.Backends;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Optim;

namespace E3.Pruning.Distill;

/// <summary>
/// The trainable tensors of a model as flat fp32 host arrays, which AdamW updates in place. For bf16 weights these
/// arrays are the fp32 masters (a small step added to bf16 directly would round away); <see cref="Publish"/> rounds
/// them to nearest-even into the weights the forward reads.
/// Their gradients sit beside them, and the optimizer works on both in place (<see cref="CreateOptimizer"/>).
/// </summary>
internal sealed class TrainableParameters
{
    readonly IBackend _backend;
    readonly Tensor[] _weights;

    /// <param name="model">The model being trained.</param>
    /// <param name="freezePatterns">Globs of tensors that are not trained.</param>
    public TrainableParameters(DecoderModel model, IEnumerable<string> freezePatterns)
    {
        ArgumentNullException.ThrowIfNull(model);
        _backend = model.Backend;
        var filter = new ParameterFilter(freezePatterns);
        var all = model.Weights.ByName().ToArray();
        filter.RequireEveryPatternMatches(all.Select(p => p.Name).ToArray());
        var chosen = all.Where(p => filter.IsTrainable(p.Name)).ToArray();
        if (chosen.Length == 0) throw new ArgumentException("every tensor is frozen: nothing to train");
        Names = chosen.Select(p => p.Name).ToArray();
        _weights = chosen.Select(p => p.Weight).ToArray();
        Values = _weights.Select(w =>
        {
            var v = new float[w.ElementCount];
            _backend.Download(w, v);
            return v;
        }).ToArray();
        Gradients = Values.Select(v => new float[v.Length]).ToArray();
    }

    /// <summary>The backend the weights (and the trainer's gradients) live on.</summary>
    public IBackend Backend => _backend;

    /// <summary>HF tensor names, in optimizer order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>fp32 values, parallel to <see cref="Names"/>.</summary>
    public IReadOnlyList<float[]> Values { get; }

    /// <summary>fp32 gradients the training loop gathers for each step, parallel to <see cref="Values"/>.</summary>
    public IReadOnlyList<float[]> Gradients { get; }

    /// <summary>AdamW bound to <see cref="Values"/> and <see cref="Gradients"/>: its steps update them in place, with no copy inside libtorch.</summary>
    public AdamW CreateOptimizer(AdamWOptions options) => new(Slots, options, Values, Gradients);

    /// <summary>The optimizer's view of the parameters.</summary>
    public IReadOnlyList<ParameterSlot> Slots => Names.Select((n, i) => new ParameterSlot(n, Values[i].Length)).ToArray();

    /// <summary>Copies <see cref="Values"/> into the model's weights (rounding to the weight's dtype).</summary>
    public void Publish()
    {
        for (int i = 0; i < _weights.Length; i++) _backend.Upload(Values[i], _weights[i]);
    }
}
