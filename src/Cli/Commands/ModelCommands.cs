using System.CommandLine;
using E3.Model;

namespace E3.Cli.Commands;

/// <summary><c>e3 model init</c>: a seeded random model in the exact Hugging Face layout, for tests and benchmarks.</summary>
internal static class ModelCommands
{
    public static Command Create()
    {
        var arch = new Option<string>("--arch") { Description = "qwen3, llama or qwen2", DefaultValueFactory = _ => "qwen3" };
        var layers = CommonOptions.AtLeast(new Option<int>("--layers") { Description = "Decoder layers", DefaultValueFactory = _ => 4 }, 1);
        var hidden = CommonOptions.AtLeast(new Option<int>("--hidden") { Description = "Hidden size", DefaultValueFactory = _ => 64 }, 1);
        var heads = CommonOptions.AtLeast(new Option<int>("--heads") { Description = "Attention heads", DefaultValueFactory = _ => 4 }, 1);
        var kvHeads = CommonOptions.AtLeast(new Option<int>("--kv-heads") { Description = "Key/value heads (GQA)", DefaultValueFactory = _ => 2 }, 1);
        var headDim = CommonOptions.AtLeast(new Option<int>("--head-dim") { Description = "Head dimension (0 = hidden / heads)", DefaultValueFactory = _ => 0 }, 0);
        var inter = CommonOptions.AtLeast(new Option<int>("--intermediate") { Description = "MLP intermediate size", DefaultValueFactory = _ => 128 }, 1);
        var vocab = CommonOptions.AtLeast(new Option<int>("--vocab") { Description = "Vocabulary size", DefaultValueFactory = _ => 256 }, 1);
        var tie = new Option<bool>("--tie-embeddings") { Description = "Tie lm_head to the embedding" };
        var dtype = new Option<string>("--dtype") { Description = "float32 or bfloat16", DefaultValueFactory = _ => "float32" };
        dtype.AcceptOnlyFromAmong("float32", "bfloat16");
        var seed = new Option<int>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 0 };
        var std = CommonOptions.Above(new Option<float>("--init-std") { Description = "Standard deviation of projection weights", DefaultValueFactory = _ => 0.02f }, 0);
        var output = CommonOptions.OutputFolder(new Option<string>("--out") { Description = "Output folder (must not exist or be empty)", Required = true });
        var init = new Command("init", "Write a random model (config.json + model.safetensors)")
            { arch, layers, hidden, heads, kvHeads, headDim, inter, vocab, tie, dtype, seed, std, output };
        init.SetAction(p => CliRunner.Guard(() =>
        {
            var a = CommonOptions.ParseArchitecture(p.GetValue(arch)!);
            int h = p.GetValue(hidden), nh = p.GetValue(heads);
            int hd = p.GetValue(headDim) is > 0 and var d ? d : (h % nh == 0 ? h / nh : throw new UsageException($"--hidden {h} is not divisible by --heads {nh}; give --head-dim"));
            var spec = new RandomModelSpec
            {
                Architecture = a, Layers = p.GetValue(layers), Hidden = h, Heads = nh, KvHeads = p.GetValue(kvHeads), HeadDim = hd,
                Intermediate = p.GetValue(inter), Vocab = p.GetValue(vocab), TieEmbeddings = p.GetValue(tie), Seed = p.GetValue(seed),
                Dtype = p.GetValue(dtype)!, InitStd = p.GetValue(std),
            };
            var config = RandomModel.Write(spec, p.GetValue(output)!);
            Console.Error.WriteLine($"wrote {config.ModelType} with {config.NumLayers} layers, hidden {config.HiddenSize}, vocab {config.VocabSize} to {p.GetValue(output)}");
            return ExitCodes.Ok;
        }));
        return new Command("model", "Model utilities") { init };
    }
}
