using E3.Backends.Cpu;
using E3.Backends.Numerics;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Model;

/// <summary>
/// <see cref="InferenceSession.ForwardSample"/> for a batch: sequence b's token is the draw from its own last logits row
/// with row index b and the position of that row as the step, so two sequences with the same logits draw independently
/// and a step repeats nothing of an earlier one.
/// </summary>
public sealed class SampledDecodingTests
{
    [Fact]
    public void EachSequenceDrawsFromItsOwnRowWithItsOwnNoise()
    {
        using var dir = new TempDir();
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 48, Vocab = 96, Seed = 8 }, dir.Path);
        using var backend = new CpuBackend(2);
        using var model = DecoderModel.Load(dir.Path, backend);
        var options = new SamplingOptions { Temperature = 1.7f, Seed = 21 };
        int[] prompts = [4, 9, 13, 4, 9, 13, 70, 1, 2]; // three sequences of three; the first two identical

        using var reference = model.StartSession(LayerMask.All(2), batch: 3, capacity: 8);
        using var sampled = model.StartSession(LayerMask.All(2), batch: 3, capacity: 8);
        int[] next = prompts;
        var draws = new List<int>();
        for (int step = 0; step < 4; step++)
        {
            float[] logits = reference.Forward(next, LogitsMode.Last);
            int[] got = sampled.ForwardSample(next, options);
            var settings = options.At(sampled.Position - 1);
            for (int b = 0; b < 3; b++) Assert.Equal(TokenSampler.Sample(logits.AsSpan(b * 96, 96), settings, b), got[b]);
            draws.AddRange(got[..2]);
            next = got;
        }
        // The identical first two sequences drew with different noise (row 0 and row 1): over four steps at a high
        // temperature, from 96 tokens, they part ways.
        Assert.NotEqual(draws.Where((_, i) => i % 2 == 0), draws.Where((_, i) => i % 2 == 1));
    }
}
