using E3.Model;
using E3.Pruning.Masks;

namespace E3.Cli.Commands;

/// <summary>The layers a command runs: from a mask.json (checked against the model) or a --drop list.</summary>
internal static class MaskSelection
{
    /// <summary>The gates and a label for where they came from: the mask's method, "drop" or "full".</summary>
    public static (LayerMask Mask, string Method) Resolve(ModelConfig config, string? maskPath, string? dropList)
    {
        if (maskPath != null)
        {
            var mask = MaskFile.Load(maskPath);
            mask.EnsureMatches(config, maskPath);
            return (mask.ToLayerMask(), mask.Method);
        }
        var gates = LayerMask.ParseDropList(config.NumLayers, dropList);
        return (gates, gates.KeptCount == config.NumLayers ? "full" : "drop");
    }
}
