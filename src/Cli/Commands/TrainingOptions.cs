using System.CommandLine;
using System.Globalization;
using E3.Pruning.Distill;
using Spectre.Console;

namespace E3.Cli.Commands;

/// <summary>The options <c>e3 train</c> and <c>e3 distill</c> share, spelled and described once.</summary>
internal sealed class TrainingCliOptions
{
    public readonly Option<string> Data = new("--data") { Description = "Training data: text (tokenized with the model's tokenizer) or .bin/.npy token ids" };
    public readonly Option<long> Tokens = new("--tokens") { Description = "Tokens to train on in total", DefaultValueFactory = _ => 1_000_000 };
    public readonly Option<int> Seq = new("--seq") { Description = "Tokens per sequence (T)", DefaultValueFactory = _ => 128 };
    public readonly Option<int> Batch = new("--batch") { Description = "Sequences per micro-batch (B)", DefaultValueFactory = _ => 8 };
    public readonly Option<double> Lr = new("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 1e-3 };
    public readonly Option<int> Warmup = new("--warmup") { Description = "Optimizer steps of linear warmup", DefaultValueFactory = _ => 100 };
    public readonly Option<string> Schedule = new("--schedule") { Description = "cosine (to 0.1 x peak) or constant after warmup", DefaultValueFactory = _ => "cosine" };
    public readonly Option<int> GradAccum = new("--grad-accum") { Description = "Micro-batches per optimizer step", DefaultValueFactory = _ => 1 };
    public readonly Option<double> Clip = new("--clip") { Description = "Global gradient-norm clip (0 = off)", DefaultValueFactory = _ => 1.0 };
    public readonly Option<double> WeightDecay = new("--weight-decay") { Description = "AdamW decoupled weight decay", DefaultValueFactory = _ => 0.0 };
    public readonly Option<ulong> Seed = new("--seed") { Description = "Seed of the data windows", DefaultValueFactory = _ => 0UL };
    public readonly Option<string?> Checkpoint = CommonOptions.OutputFolder(new Option<string?>("--checkpoint") { Description = "Checkpoint folder (weights, AdamW state, step, loss history)" });
    public readonly Option<int> CheckpointEvery = new("--checkpoint-every") { Description = "Optimizer steps between checkpoints", DefaultValueFactory = _ => 100 };
    public readonly Option<bool> Resume = new("--resume") { Description = "Continue from the checkpoint folder's latest save (bit-identical on the CPU)" };
    public readonly Option<string> Out = CommonOptions.OutputFolder(new Option<string>("--out") { Description = "Output Hugging Face model folder (written atomically)", Required = true });
    public readonly Option<bool> Force = new("--force") { Description = "Replace an existing, non-empty --out folder" };
    public readonly Option<bool> ActivationCheckpointing = CommonOptions.ActivationCheckpointing();
    public readonly Option<string> Device = CommonOptions.Device();
    public readonly Option<bool> Tf32 = CommonOptions.Tf32();
    public readonly Option<int> Threads = CommonOptions.Threads();
    public readonly Option<bool> Json = CommonOptions.Json();

    public IEnumerable<Option> All => [Data, Tokens, Seq, Batch, Lr, Warmup, Schedule, GradAccum, Clip, WeightDecay, Seed, Checkpoint, CheckpointEvery, Resume, Out, Force, ActivationCheckpointing, Device, Tf32, Threads, Json];

    public TrainingSettings Settings(ParseResult p) => new()
    {
        Tokens = p.GetValue(Tokens), Sequence = p.GetValue(Seq), Batch = p.GetValue(Batch), GradAccum = p.GetValue(GradAccum),
        LearningRate = p.GetValue(Lr), Warmup = p.GetValue(Warmup), Clip = p.GetValue(Clip), WeightDecay = p.GetValue(WeightDecay),
        Seed = p.GetValue(Seed), CheckpointEvery = p.GetValue(CheckpointEvery),
        Schedule = p.GetValue(Schedule) switch
        {
            "cosine" => LrSchedule.Cosine,
            "constant" => LrSchedule.Constant,
            var other => throw new UsageException($"--schedule: '{other}' is not one of cosine, constant"),
        },
    };
}

/// <summary>Shows training progress on stderr and prints the result; shared by train and distill.</summary>
internal static class TrainingConsole
{
    /// <summary>
    /// Runs <paramref name="run"/> with progress on stderr: a Spectre.Console bar (step, tokens/s, loss, ETA) on a
    /// terminal, otherwise one plain line at most every two seconds (and for the last step).
    /// </summary>
    public static TrainingOutcome Run(string title, Func<Action<TrainingProgress>, TrainingOutcome> run)
    {
        if (!Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            TrainingOutcome? outcome = null;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                    new RemainingTimeColumn())
                .Start(context =>
                {
                    var task = context.AddTask(title, maxValue: 1);
                    outcome = run(p =>
                    {
                        task.MaxValue = p.TotalSteps;
                        task.Value = p.Step;
                        task.Description = Describe(title, p);
                    });
                });
            return outcome!;
        }
        var lastPrint = System.Diagnostics.Stopwatch.StartNew();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long first = -1;
        return run(p =>
        {
            if (first < 0) first = p.Step - 1;
            if (lastPrint.Elapsed.TotalSeconds < 2 && p.Step != p.TotalSteps) return;
            lastPrint.Restart();
            double perStep = clock.Elapsed.TotalSeconds / Math.Max(1, p.Step - first);
            var eta = TimeSpan.FromSeconds(perStep * (p.TotalSteps - p.Step));
            Console.Error.WriteLine($"{Describe(title, p)} eta {eta:hh\\:mm\\:ss}");
        });
    }

    static string Describe(string title, TrainingProgress p) => string.Create(CultureInfo.InvariantCulture,
        $"{title} step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} lr {p.LearningRate:G3} |g| {p.GradientNorm:F3} {p.TokensPerSecond:F0} tok/s");

    public static void Report(string command, TrainingOutcome o, string output, bool json)
    {
        var r = o.Result;
        if (json)
            CliRunner.WriteJson(E3.Pruning.Reports.ResultJson.Training(command, o, output));
        else
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {output}: {r.Steps} steps ({r.Steps - r.StartStep} now{(o.Resumed ? ", resumed" : "")}), final loss {r.FinalLoss:F4}, {r.Seconds:F1} s"));
    }
}
