namespace E3.Pruning.Masking;

/// <summary>A mask-sampler input is invalid; <see cref="Field"/> names it and <see cref="Value"/> holds what was given.</summary>
internal sealed class MaskSamplerException(string field, object? value, string requirement)
    : ArgumentException($"Gumbel-TopK mask sampler: {field} = {Format(value)} is invalid: {requirement}")
{
    /// <summary>The offending field, e.g. <c>keep</c> or <c>logits[3]</c>.</summary>
    public string Field { get; } = field;

    /// <summary>The value that was given.</summary>
    public object? Value { get; } = value;

    private static string Format(object? value) => value switch
    {
        float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        null => "null",
        _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "?",
    };
}
