using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Masks;
using E3.Pruning.Search;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Search;

/// <summary>The search on models whose answer is known by construction, and its importance prior against a double-precision reference.</summary>
public sealed class MaskSearchTests
{
    [Fact]
    public void SearchFromAUniformStartDropsTheNearIdentityLayersAndBeatsDroppingTheLast()
    {
        using var dir = new TempDir();
        int[] weak = [1, 3];
        string folder = SearchModels.Write(dir, "model", layers: 6, weakLayers: weak);
        var (_, ids) = SearchModels.Tokens(dir, "data.bin", 4000);
        var (_, heldOut) = SearchModels.Tokens(dir, "heldout.bin", 256, seed: 77);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(folder, backend);
        var options = new SearchOptions { Keep = 4, Steps = 24, Samples = 4, LearningRate = 0.1, Init = AlphaInit.Uniform, Seed = 5 };
        using var search = new MaskSearch(model, new LiveTeacherBatches(ids, 32, 2, options.Seed, "data.bin"), options);
        var state = search.Initialize();
        Assert.All(state.Alpha, a => Assert.Equal(0f, a)); // nothing known at the start: the search must find the weak layers
        search.Run(state, null, 1);
        MaskFile mask = search.Result(state);

        Assert.Equal(weak, mask.Dropped);
        Assert.Equal(24, state.LossHistory.Count);
        // Keep probabilities are shares of hard k-of-L draws: each lies in [0, 1], each row sums exactly to that step's
        // keep count (a whole number between the target 4 and the warm-up 5), and by the end the weak layers are the
        // least likely to be kept.
        Assert.Equal(24, state.KeepProbability.Count);
        foreach (var row in state.KeepProbability)
        {
            Assert.All(row, p => Assert.InRange(p, 0f, 1f));
            double sum = row.Sum(p => (double)p);
            Assert.InRange(sum, 4 - 1e-9, 5 + 1e-9);
            Assert.Equal(Math.Round(sum), sum, 9);
        }
        var final = state.KeepProbability[^1];
        Assert.True(weak.Max(l => final[l]) < Enumerable.Range(0, 6).Except(weak).Min(l => final[l]), $"final keep probabilities [{string.Join(", ", final)}]");
        double learned = SearchModels.MeanKl(model, heldOut, 32, mask.ToLayerMask());
        double last = SearchModels.MeanKl(model, heldOut, 32, LayerMask.Dropping(6, [4, 5]));
        Assert.True(learned <= last, $"learned mask KL {learned} exceeds the drop-last KL {last}");
    }

    [Fact]
    public void DropOneKlMatchesTheInferenceForwardInDoubleAndRanksTheWeakLayerLast()
    {
        using var dir = new TempDir();
        string folder = SearchModels.Write(dir, "model", layers: 4, weakLayers: [2]);
        var (_, ids) = SearchModels.Tokens(dir, "data.bin", 64);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(folder, backend);
        // Two calibration batches of two 16-token sequences, i.e. the four consecutive sequences MeanKl walks.
        var batches = new List<int[]> { ids[..32], ids[32..64] };
        // Through a trainer set up as the search's (dropped layers computed, layers recomputed in the backward), whose
        // buffers the importance reuses: its forward is the plain one.
        using var trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Frozen, ComputeDroppedLayers = true, Checkpointing = true });
        var ours = LayerImportance.DropOneKl(model, trainer, batches, 2);
        for (int l = 0; l < 4; l++)
        {
            double reference = SearchModels.MeanKl(model, ids, 16, LayerMask.Dropping(4, [l]));
            // Both paths compute fp32 logits (training vs inference kernels, different summation orders): logits agree
            // to ~1e-6 relative, so each token's KL agrees to ~1e-6 absolute; 1e-3 relative covers the larger KLs.
            Assert.True(Math.Abs(ours[l] - reference) <= 1e-5 + 1e-3 * reference, $"layer {l}: ours {ours[l]}, reference {reference}");
        }
        Assert.Equal(2, Array.IndexOf(ours, ours.Min()));
        Assert.True(ours[2] < 1e-3 * ours.Where((_, l) => l != 2).Min(), $"weak layer KL {ours[2]} is not far below the others [{string.Join(", ", ours)}]");
    }

    [Fact]
    public void LogitsFromImportanceKeepLogRatiosWithinTheRangeAndFloorTheRest()
    {
        double[] importance = [1.0, 10.0, 0.1, 1e-9, 0.0];
        var alpha = LayerImportance.ToLogits(importance);
        float range = (float)LayerImportance.LogitRange;
        // The most important layer sits at the top of the range; layers more than e^(2R) below it share the bottom.
        Assert.Equal(range, alpha[1], 1e-6f);
        Assert.Equal(-range, alpha[3], 1e-6f);
        Assert.Equal(-range, alpha[4], 1e-6f);
        // Within the range the differences are exactly the log ratios (fp32 rounding of values <= 4: 5e-7).
        Assert.Equal(Math.Log(10.0), alpha[1] - alpha[0], 1e-6);
        Assert.Equal(Math.Log(0.1), alpha[2] - alpha[0], 1e-6);
        Assert.All(LayerImportance.ToLogits([0.5, 0.5, 0.5]), a => Assert.Equal(0f, a));
        Assert.All(LayerImportance.ToLogits([0.0, 0.0]), a => Assert.Equal(0f, a));
        Assert.Throws<ArgumentException>(() => LayerImportance.ToLogits([1.0, double.NaN]));
    }
}
