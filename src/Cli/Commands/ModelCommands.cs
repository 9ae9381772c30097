using System.CommandLine;
using E3.Model;

namespace E3.Cli.Commands;

/// <summary><c>e3 model init</c>: a seeded random model in the exact Hugging Face layout, for tests and benchmarks.</summary>
internal static class ModelCommands
{
    public static Command Create()
    {
        var arch = new Option<string>("--arch") { Description = "qwen3, llama or qwen2", DefaultValueFactory = _ => "qwen3" };
        var shape = new ModelShapeOptions(d => d, layers: 4, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 256, headDim: true);
        var tie = new Option<bool>("--tie-embeddings") { Description = "Tie lm_head to the embedding" };
        var dtype = new Option<string>("--dtype") { Description = "float32 or bfloat16", DefaultValueFactory = _ => "float32" };
        dtype.AcceptOnlyFromAmong("float32", "bfloat16");
        var seed = new Option<int>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 0 };
        var std = CommonOptions.Above(new Option<float>("--init-std") { Description = "Standard deviation of projection weights", DefaultValueFactory = _ => 0.02f }, 0);
        var output = CommonOptions.OutputFolder(new Option<string>("--out") { Description = "Output folder (must not exist or be empty)", Required = true });
        var init = new Command("init", "Write a random model (config.json + model.safetensors)") { arch };
        foreach (var option in shape.All) init.Options.Add(option);
        foreach (var option in new Option[] { tie, dtype, seed, std, output }) init.Options.Add(option);
        init.SetAction(p => CliRunner.Guard(() =>
        {
            var spec = shape.Spec(p, CommonOptions.ParseArchitecture(p.GetValue(arch)!)) with
            {
                TieEmbeddings = p.GetValue(tie), Seed = p.GetValue(seed), Dtype = p.GetValue(dtype)!, InitStd = p.GetValue(std),
            };
            var config = RandomModel.Write(spec, p.GetValue(output)!);
            Console.Error.WriteLine($"wrote {config.ModelType} with {config.NumLayers} layers, hidden {config.HiddenSize}, vocab {config.VocabSize} to {p.GetValue(output)}");
            return ExitCodes.Ok;
        }));
        return new Command("model", "Model utilities") { init };
    }
}
