namespace E3.Pruning.Baselines;

/// <summary>The layer-pruning baselines <c>e3 baseline</c> offers, to compare the learned mask against.</summary>
public enum BaselineMethod
{
    /// <summary>ShortGPT (Men et al. 2024): drop the layers with the lowest block influence.</summary>
    BlockInfluence,
    /// <summary>Gromov et al. 2024: drop the contiguous block whose input and output are closest in angle.</summary>
    Angular,
    /// <summary>Drop the last n layers.</summary>
    Last,
    /// <summary>Drop n layers chosen by a seeded shuffle.</summary>
    Random,
    /// <summary>Greedy: repeatedly drop the layer whose removal costs the least KL to the full model.</summary>
    DropOneKl,
}

/// <summary>The command-line and mask.json names of <see cref="BaselineMethod"/>.</summary>
internal static class BaselineMethods
{
    /// <summary>Every name, in the order of the enum.</summary>
    public static readonly IReadOnlyList<string> Names = ["bi", "angular", "last", "random", "drop-one-kl"];

    /// <summary>The name written to mask.json's <c>method</c>.</summary>
    public static string Name(this BaselineMethod method) => Names[(int)method];

    /// <summary>Parses a name from <see cref="Names"/>; anything else is an error listing them.</summary>
    public static BaselineMethod Parse(string name)
    {
        int index = Names.ToList().IndexOf(name);
        return index >= 0 ? (BaselineMethod)index
            : throw new ArgumentException($"--method: '{name}' is not one of {string.Join(", ", Names)}");
    }

    /// <summary>Whether the method reads the calibration data (last and random do not).</summary>
    public static bool NeedsData(this BaselineMethod method) => method is not (BaselineMethod.Last or BaselineMethod.Random);
}
