using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using E3.Interop.Kernels.Bench;

namespace E3.Bench;

/// <summary>
/// <see cref="TrainingBenchmarks"/> measured in interleaved rounds: each round times one step of every method, in an
/// order that reverses from round to round, so drift in the host's speed (this CI machine is a shared VM whose rate
/// wanders by 10–30% over a minute) falls on both sides of each ratio alike. BenchmarkDotNet instead runs one method's
/// iterations after another's, and on such a host its ratios move run to run by more than the effect measured.
/// Reports per method the median step time and tokens/s, and per mode the median over rounds of the per-round ratio
/// libtorch time / E3 time (above 1: E3 is faster).
/// Run: <c>dotnet run -c Release --project bench/E3.Bench -- paired-training [--tokens 128,512] [--rounds 21] [--warmup 6]</c>.
/// </summary>
public static class PairedTrainingRun
{
    public const string Verb = "paired-training";

    public static int Run(string[] args)
    {
        int[] tokens = [128, 512];
        int rounds = 21, warmup = 6;
        for (int i = 1; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--tokens": tokens = value.Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--rounds": rounds = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--warmup": warmup = int.Parse(value, CultureInfo.InvariantCulture); break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
            i++;
        }
        if (rounds < 1 || warmup < 0 || tokens.Any(t => t < 1)) throw new ArgumentException("--rounds ≥ 1, --warmup ≥ 0 and --tokens ≥ 1 required");

        Console.WriteLine($"threads {Environment.ProcessorCount}, {warmup} warm-up rounds, {rounds} measured rounds, order reversed each round");
        Console.WriteLine();
        Console.WriteLine("| tokens | mode | libtorch median ms | E3 median ms | E3 tokens/s | ratio (median of rounds) | ratio range (quartiles) |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        foreach (int t in tokens)
        {
            var bench = new TrainingBenchmarks { Tokens = t };
            bench.Setup();
            try
            {
                (string Name, Action Step)[] methods =
                [
                    ("torch frozen", bench.TorchFrozen), ("e3 frozen", () => bench.E3Frozen()),
                    ("torch train", bench.TorchTrain), ("e3 train", () => bench.E3Train()),
                ];
                var times = methods.ToDictionary(m => m.Name, _ => new List<double>());
                for (int round = 0; round < warmup + rounds; round++)
                {
                    var order = round % 2 == 0 ? methods : methods.Reverse().ToArray();
                    foreach (var (name, step) in order)
                    {
                        long start = Stopwatch.GetTimestamp();
                        step();
                        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                        if (round >= warmup) times[name].Add(ms);
                    }
                }
                foreach (string mode in new[] { "frozen", "train" })
                {
                    var torchTimes = times[$"torch {mode}"];
                    var e3Times = times[$"e3 {mode}"];
                    var ratios = torchTimes.Zip(e3Times, (a, b) => a / b).ToList();
                    double e3 = Median(e3Times);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {t} | {mode} | {Median(torchTimes):F1} | {e3:F1} | {t / (e3 / 1000):F0} | {Median(ratios):F2}x | {Quantile(ratios, 0.25):F2}–{Quantile(ratios, 0.75):F2} |"));
                }
            }
            finally { bench.Cleanup(); }
        }
        return 0;
    }

    static double Median(List<double> values) => BenchStatistics.Median(CollectionsMarshal.AsSpan(values.ToList()));

    /// <summary>Linear interpolation between order statistics, for the quartiles.</summary>
    static double Quantile(List<double> values, double q)
    {
        var sorted = values.Order().ToArray();
        double at = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(at), hi = (int)Math.Ceiling(at);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
    }
}
