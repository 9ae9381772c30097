using System.Runtime.InteropServices;
using E3.Interop.Kernels.Bench;
using System.Diagnostics;
using E3.Backends;
using E3.Model.Decoder;

namespace E3.Model.Evaluation;

/// <summary>Throughput of one phase for the full and the pruned model, measured side by side.</summary>
/// <param name="FullTps">Tokens per second of the full model, over its median time.</param>
/// <param name="PrunedTps">Tokens per second of the pruned model, over its median time.</param>
public sealed record PhaseSpeed(double FullTps, double PrunedTps)
{
    /// <summary>The ratio of the two medians' rates.</summary>
    public double Speedup => PrunedTps / FullTps;

    /// <summary>The full model's time in each repeat, in run order (seconds).</summary>
    public IReadOnlyList<double> FullSeconds { get; init; } = [];

    /// <summary>The pruned model's time in each repeat, in run order (seconds).</summary>
    public IReadOnlyList<double> PrunedSeconds { get; init; } = [];

    /// <summary>
    /// Each repeat's own ratio (full time over pruned time): the two ran back to back, so drift between repeats cancels
    /// in each, and their spread shows how far a single measurement can be trusted.
    /// </summary>
    public IReadOnlyList<double> PairedSpeedups => FullSeconds.Zip(PrunedSeconds, (f, p) => f / p).ToArray();

    /// <summary>The median of <see cref="PairedSpeedups"/> (NaN when nothing was timed).</summary>
    public double PairedMedian => PairedSpeedups.Count == 0 ? double.NaN : BenchStatistics.Median(PairedSpeedups.ToArray());

    /// <summary>
    /// A 95% confidence interval for the median paired speedup, free of any assumption about how the timings scatter
    /// (<see cref="BenchStatistics.MedianInterval"/>); null below 6 repeats, where no such interval reaches 95%. Whether
    /// a measured speedup clears a target, such as 1.30x, is judged by its lower end.
    /// </summary>
    public MedianInterval? PairedInterval => BenchStatistics.MedianInterval(PairedSpeedups.ToArray());
}

/// <param name="Roofline">The speedup each phase shows at a constant rate of the resource that limits it (<see cref="RooflineSpeedup"/>).</param>
public sealed record SpeedupResult(PhaseSpeed Prefill, PhaseSpeed Decode, int Layers, int[] Dropped, int Batch, int PrefillTokens, int DecodeTokens, int Repeats, string Device, int Threads,
    RooflineSpeedup Roofline);

/// <summary>
/// Full vs layer-skipped model on the same weights in one process. Each repeat runs the full and the pruned
/// model back to back (alternating which goes first) after a warm-up of each, and the median of the repeats
/// is reported, so drift in clock speed or load hits both sides alike. Each call ends, as greedy generation does, in
/// the next-token ids (<see cref="InferenceSession.ForwardArgMax"/>): a GPU takes the argmax where the logits are, so
/// the phase times the model rather than a copy of the vocabulary row per sequence to the host, a cost that does not
/// shrink with the layers and would pull the ratio toward 1.
/// </summary>
public static class SpeedupBenchmark
{
    static double Median(List<double> values) => BenchStatistics.Median(CollectionsMarshal.AsSpan(values));

    /// <summary>Times prefill and decode of the full model and of <paramref name="pruned"/> on random tokens.</summary>
    /// <param name="batch">Sequences decoded together.</param>
    /// <param name="prefill">Prompt tokens per sequence, at least 1.</param>
    /// <param name="decode">Single-token decode steps after the prompt, per sequence; with 0 the decode rates are reported as 0.</param>
    /// <param name="repeats">Timed repeats of each model after the warm-up, at least 1.</param>
    /// <param name="seed">Seed of the random prompt and decode tokens.</param>
    /// <param name="progress">Told when the warm-up and each repeat start, when given.</param>
    public static SpeedupResult Run(DecoderModel model, LayerMask pruned, int batch, int prefill, int decode, int repeats, int seed = 0, Action<string>? progress = null)
    {
        if (prefill < 1) throw new ArgumentOutOfRangeException(nameof(prefill), $"prefill length {prefill} must be at least 1");
        if (decode < 0) throw new ArgumentOutOfRangeException(nameof(decode), $"decode length {decode} must not be negative");
        if (repeats < 1) throw new ArgumentOutOfRangeException(nameof(repeats), $"repeats {repeats} must be at least 1");
        var full = LayerMask.All(model.Config.NumLayers);
        var rng = new Random(seed);
        var prompt = new int[batch * prefill];
        for (int i = 0; i < prompt.Length; i++) prompt[i] = rng.Next(model.Config.VocabSize);
        var step = new int[batch];
        for (int i = 0; i < batch; i++) step[i] = rng.Next(model.Config.VocabSize);

        (double Prefill, double Decode) Measure(LayerMask mask)
        {
            using var s = model.StartSession(mask, batch, prefill + decode);
            // Each phase's buffers are made before its clock starts: timing the allocator would bias both rates.
            s.Prepare(prefill, LogitsMode.Last);
            var sw = Stopwatch.StartNew();
            s.ForwardArgMax(prompt);
            double p = sw.Elapsed.TotalSeconds;
            s.Prepare(1, LogitsMode.Last);
            sw.Restart();
            for (int i = 0; i < decode; i++) s.ForwardArgMax(step);
            double d = sw.Elapsed.TotalSeconds;
            return (p, d);
        }

        progress?.Invoke("warm-up");
        Measure(full);
        Measure(pruned);
        var fp = new List<double>(); var fd = new List<double>(); var pp = new List<double>(); var pd = new List<double>();
        for (int r = 0; r < repeats; r++)
        {
            progress?.Invoke($"repeat {r + 1}/{repeats}");
            bool fullFirst = r % 2 == 0;
            var first = Measure(fullFirst ? full : pruned);
            var second = Measure(fullFirst ? pruned : full);
            var (f, p) = fullFirst ? (first, second) : (second, first);
            fp.Add(f.Prefill); fd.Add(f.Decode); pp.Add(p.Prefill); pd.Add(p.Decode);
        }
        double prefillTokens = (double)batch * prefill, decodeTokens = (double)batch * decode;
        // Median sorts its list in place: the per-repeat times are kept in run order first.
        var prefillSpeed = new PhaseSpeed(prefillTokens / Median([.. fp]), prefillTokens / Median([.. pp])) { FullSeconds = fp, PrunedSeconds = pp };
        var decodeSpeed = decode == 0 ? new PhaseSpeed(0, 0)
            : new PhaseSpeed(decodeTokens / Median([.. fd]), decodeTokens / Median([.. pd])) { FullSeconds = fd, PrunedSeconds = pd };
        int threads = model.Backend is E3.Backends.Cpu.CpuBackend cpu ? cpu.Threads : 0;
        var roofline = RooflineSpeedup.For(model.Config, pruned.KeptCount, batch, prefill, decode,
            model.Weights.Layers[0].Q.DType.SizeInBytes(), model.Backend.ActivationType.SizeInBytes());
        return new SpeedupResult(prefillSpeed, decodeSpeed, model.Config.NumLayers, pruned.Dropped.ToArray(), batch, prefill, decode, repeats, model.Backend.Name, threads,
            roofline);
    }

}
