using System.CommandLine;

namespace E3.Cli.Commands;

/// <summary>Options several commands share, so they are spelled and described the same everywhere.</summary>
internal static class CommonOptions
{
    public static Option<string> Model(bool required = true) => new("--model") { Description = "Hugging Face model folder (config.json + *.safetensors)", Required = required };
    public static Option<string?> Drop() => new("--drop") { Description = "Comma-separated layer indices to skip, e.g. 3,7" };
    public static Option<double?> PruneLast() => new("--prune") { Description = "Drop the last round(R·L) layers when --drop is not given" };

    /// <summary>The mask of the benchmarks: --drop's layers, else --prune's last round(R·L); one of them is required.</summary>
    public static E3.Model.LayerMask DropOrPrune(string? drop, double? prune, int layers) =>
        drop is { } d ? E3.Model.LayerMask.ParseDropList(layers, d)
        : prune is { } r ? E3.Model.LayerMask.DropLast(layers, r)
        : throw new UsageException("give --drop LIST or --prune RATIO");

    public static Option<string> Device() => new("--device") { Description = "cpu (C# SIMD), cuda or emu", DefaultValueFactory = _ => "cpu" };
    public static Option<int> Threads() => AtLeast(new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 }, 0);

    /// <summary>The parser refuses a value of <paramref name="option"/> below <paramref name="least"/> (a usage error).</summary>
    public static Option<int> AtLeast(Option<int> option, int least)
    {
        option.Validators.Add(result =>
        {
            int value = result.GetValueOrDefault<int>();
            if (value < least) result.AddError($"{option.Name}: {value} must be at least {least}");
        });
        return option;
    }

    /// <summary>The parser refuses a value of <paramref name="option"/> that is not finite or not above (or, with <paramref name="orEqual"/>, at) <paramref name="bound"/>.</summary>
    public static Option<T> Above<T>(Option<T> option, double bound, bool orEqual = false) where T : struct, IConvertible
    {
        option.Validators.Add(result =>
        {
            double value = result.GetValueOrDefault<T>().ToDouble(System.Globalization.CultureInfo.InvariantCulture);
            if (!double.IsFinite(value) || value < bound || (!orEqual && value == bound))
                result.AddError($"{option.Name}: {value.ToString(System.Globalization.CultureInfo.InvariantCulture)} must be finite and {(orEqual ? ">=" : ">")} {bound.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
        });
        return option;
    }
    public static Option<bool> Json() => new("--json") { Description = "Print machine-readable JSON instead of text" };
    public static Option<string> Data() => new("--data") { Description = "Text file, or token ids as uint32 .bin or .npy", Required = true };
    public static Option<int> Window() => new("--window") { Description = "Tokens per evaluation window", DefaultValueFactory = _ => 256 };
    public static Option<long> MaxTokens() => new("--max-tokens") { Description = "Stop after the whole window that brings the tokens scored to at least this many (0 = all)", DefaultValueFactory = _ => 0 };

    /// <summary>--max-tokens as a limit: 0 (or less) means no limit.</summary>
    public static long TokenLimit(long maxTokens) => maxTokens > 0 ? maxTokens : long.MaxValue;

    public static Option<string> Precision() => new("--precision") { Description = "Projection weights: stored (as in the file), f32 or bf16", DefaultValueFactory = _ => "stored" };

    /// <summary>--activation-checkpointing: recompute each layer in the backward. <paramref name="who"/> names the stages that do, when not the command itself.</summary>
    public static Option<bool> ActivationCheckpointing(string? who = null) => new("--activation-checkpointing")
    {
        Description = (who == null ? "Keep" : who + " keep") + " only each layer's input and recompute the layer in the backward: " +
            "one layer's activations instead of every layer's (see e3 plan), the same results",
    };

    /// <summary>--tf32: the training GEMMs on the tensor cores with TF32 operands.</summary>
    public static Option<bool> Tf32() => new("--tf32")
    {
        Description = "Run the fp32 training GEMMs on the tensor cores with TF32 operands (10 of fp32's 23 mantissa bits; " +
            "several times plain fp32's rate on Ampere and newer); cuda and emu only",
    };

    /// <summary>--teacher-dtype: how a dense distillation teacher computes.</summary>
    public static Option<string?> TeacherDType() => new("--teacher-dtype")
    {
        Description = "How the teacher's forward computes: bf16 (default on cuda and emu: a bf16 copy of its weights only, bf16 GEMMs, " +
            "as e3 teacher-cache computes) or f32 (fp32 activations, as the student; the only choice on cpu)",
    };

    /// <summary>
    /// Makes <paramref name="option"/> a file the command writes (atomically, by a temp file beside it and a rename): the
    /// parser refuses an empty path, an existing folder, or a folder that does not exist to put it in, before any work
    /// is done rather than when the result is written.
    /// </summary>
    public static T OutputFile<T>(T option) where T : Option => OutputPath(option, "file", path =>
        Directory.Exists(path) ? $"{Path.GetFullPath(path)} is a folder, not a file"
        : Path.GetDirectoryName(Path.GetFullPath(path)) is { } folder && !Directory.Exists(folder) ? $"the folder {folder} does not exist"
        : null);

    /// <summary>Makes <paramref name="option"/> a folder the command writes: the parser refuses an empty path or an existing file.</summary>
    public static T OutputFolder<T>(T option) where T : Option => OutputPath(option, "folder", path =>
        File.Exists(path) ? $"{Path.GetFullPath(path)} is a file, not a folder" : null);

    // The value given (the last, if repeated) must name a path, and pass the kind's own check (null: it does).
    static T OutputPath<T>(T option, string kind, Func<string, string?> problem) where T : Option
    {
        option.Validators.Add(result =>
        {
            string? path = result.Tokens.Count > 0 ? result.Tokens[^1].Value : null;
            if (path == null) return;
            if (string.IsNullOrWhiteSpace(path)) result.AddError($"{option.Name}: an empty path names no {kind}");
            else if (problem(path) is { } error) result.AddError($"{option.Name}: {error}");
        });
        return option;
    }

    /// <summary>--arch for the commands that make random models.</summary>
    public static E3.Model.Architecture ParseArchitecture(string a) => a switch
    {
        "qwen3" => E3.Model.Architecture.Qwen3,
        "llama" => E3.Model.Architecture.Llama,
        "qwen2" => E3.Model.Architecture.Qwen2,
        _ => throw new UsageException($"--arch: '{a}' is not one of qwen3, llama, qwen2"),
    };

    public static E3.Model.Decoder.WeightPrecision ParsePrecision(string s) => s switch
    {
        "stored" => E3.Model.Decoder.WeightPrecision.AsStored,
        "f32" => E3.Model.Decoder.WeightPrecision.F32,
        "bf16" => E3.Model.Decoder.WeightPrecision.BF16,
        _ => throw new UsageException($"--precision: '{s}' is not one of stored, f32, bf16"),
    };
}
