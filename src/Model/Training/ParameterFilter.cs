using System.Text.RegularExpressions;
using E3.Model.Decoder;

namespace E3.Model.Training;

/// <summary>
/// Decides which tensors are trainable: not matched by a freeze glob, and, for a decoder layer's tensors, in a layer the
/// pruned model retains. The trainer allocates gradients by this rule, the training job's host values follow it and the
/// memory plan counts by it, so the three always agree.
/// </summary>
internal sealed class ParameterFilter
{
    readonly Regex[] _frozen;
    readonly string[] _patterns;
    readonly LayerMask? _retained;

    /// <param name="freezePatterns">Globs: '*' matches any run of characters (dots included), '?' one character.</param>
    /// <param name="retainedLayers">The pruned model's mask: tensors of a layer whose gate is 0 are not trainable. Null retains every layer.</param>
    public ParameterFilter(IEnumerable<string> freezePatterns, LayerMask? retainedLayers = null)
    {
        _patterns = freezePatterns.ToArray();
        _frozen = _patterns.Select(p =>
        {
            if (string.IsNullOrWhiteSpace(p)) throw new ArgumentException("freeze pattern is empty", nameof(freezePatterns));
            string regex = "^" + Regex.Escape(p).Replace("\\*", ".*").Replace("\\?", ".") + "$";
            return new Regex(regex, RegexOptions.CultureInvariant);
        }).ToArray();
        _retained = retainedLayers;
    }

    /// <summary>True unless some pattern matches the whole name or the name belongs to a layer the mask drops.</summary>
    public bool IsTrainable(string name)
    {
        if (_retained != null && WeightNames.LayerOf(name) is { } layer && (layer >= _retained.Count || _retained.IsSkipped(layer))) return false;
        return !_frozen.Any(r => r.IsMatch(name));
    }

    /// <summary>
    /// Throws for a freeze pattern that matches none of <paramref name="names"/>: a typo (or a glob with a regex
    /// bracket) would otherwise freeze nothing and train every tensor.
    /// </summary>
    public void RequireEveryPatternMatches(IReadOnlyCollection<string> names)
    {
        for (int i = 0; i < _frozen.Length; i++)
            if (!names.Any(_frozen[i].IsMatch))
                throw new ArgumentException($"--freeze '{_patterns[i]}' matches no tensor of the model (names look like '{names.FirstOrDefault(n => n.StartsWith("model.layers.", StringComparison.Ordinal)) ?? names.FirstOrDefault()}'; '*' and '?' are the only wildcards)");
    }

    /// <summary>Throws unless the retained-layer mask (when given) has one gate per layer of <paramref name="config"/>.</summary>
    public void RequireLayers(ModelConfig config)
    {
        if (_retained != null && _retained.Count != config.NumLayers)
            throw new ArgumentException($"TrainingOptions.RetainedLayers has {_retained.Count} gates; the model has {config.NumLayers} layers");
    }
}
