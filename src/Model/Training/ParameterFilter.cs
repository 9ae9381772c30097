using System.Text.RegularExpressions;

namespace E3.Model.Training;

/// <summary>Decides which tensors are trainable from glob patterns over their HF names.</summary>
public sealed class ParameterFilter
{
    readonly Regex[] _frozen;

    /// <param name="freezePatterns">Globs: '*' matches any run of characters (dots included), '?' one character.</param>
    public ParameterFilter(IEnumerable<string> freezePatterns)
    {
        _frozen = freezePatterns.Select(p =>
        {
            if (string.IsNullOrWhiteSpace(p)) throw new ArgumentException("freeze pattern is empty", nameof(freezePatterns));
            string regex = "^" + Regex.Escape(p).Replace("\\*", ".*").Replace("\\?", ".") + "$";
            return new Regex(regex, RegexOptions.CultureInvariant);
        }).ToArray();
    }

    /// <summary>True unless some pattern matches the whole name.</summary>
    public bool IsTrainable(string name) => !_frozen.Any(r => r.IsMatch(name));
}
