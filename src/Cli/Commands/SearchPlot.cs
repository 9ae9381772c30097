using E3.Interop.IO;
using E3.Model.IO;
using E3.Pruning.Search;
using ScottPlot;

namespace E3.Cli.Commands;

/// <summary>
/// The search's picture: top panel, every layer's keep probability per step (the share of Gumbel-TopK draws under
/// that step's α that keep it, <see cref="SearchState.KeepProbability"/>); bottom panel, the distillation loss.
/// </summary>
internal static class SearchPlot
{
    /// <summary>Renders both panels to a PNG at <paramref name="path"/>, atomically (temp file, then rename).</summary>
    public static void Write(SearchState state, IReadOnlyCollection<int> kept, string path)
    {
        var multiplot = new Multiplot();
        multiplot.AddPlots(2);
        var keep = multiplot.GetPlot(0);
        var loss = multiplot.GetPlot(1);
        int layers = state.Alpha.Length;
        double[] steps = state.LossHistory.Select(p => (double)p.Step).ToArray();
        var palette = new ScottPlot.Palettes.Category20();
        for (int l = 0; l < layers; l++)
        {
            double[] probability = state.KeepProbability.Select(row => (double)row[l]).ToArray();
            var line = keep.Add.ScatterLine(steps, probability, palette.GetColor(l));
            line.LegendText = kept.Contains(l) ? $"L{l}" : $"L{l} (dropped)";
            line.LinePattern = kept.Contains(l) ? LinePattern.Solid : LinePattern.Dashed;
        }
        keep.Title("Keep probability per layer (Gumbel-TopK draws under the current mask logits)");
        keep.YLabel("P(keep)");
        keep.Axes.SetLimitsY(-0.05, 1.05);
        keep.ShowLegend(Edge.Right);
        var curve = loss.Add.ScatterLine(steps, state.LossHistory.Select(p => p.Loss).ToArray());
        curve.LegendText = "KD loss";
        loss.Title("Entropy-weighted KD loss (mean over samples)");
        loss.XLabel("step");
        loss.YLabel("loss");
        byte[] png = multiplot.Render(1200, 900).GetImageBytes(ImageFormat.Png);
        using var file = AtomicFile.Create(path);
        file.Stream.Write(png);
        file.Commit();
    }
}
