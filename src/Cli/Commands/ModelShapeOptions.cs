using System.CommandLine;
using E3.Model;

namespace E3.Cli.Commands;

/// <summary>
/// The shape of a random model, as <c>e3 model init</c> and <c>e3 bench speedup --arch</c> take it: the same options
/// and checks, with each command's defaults. Every size is at least 1 (a parser error otherwise).
/// </summary>
internal sealed class ModelShapeOptions
{
    /// <param name="describe">Turns an option's description into the command's wording (a prefix, say).</param>
    /// <param name="headDim">Whether the command takes --head-dim; without it the head dimension is hidden / heads.</param>
    public ModelShapeOptions(Func<string, string> describe, int layers, int hidden, int heads, int kvHeads, int intermediate, int vocab, bool headDim)
    {
        Option<int> Size(string name, string description, int value, int least = 1) =>
            CommonOptions.AtLeast(new Option<int>(name) { Description = describe(description), DefaultValueFactory = _ => value }, least);
        Layers = Size("--layers", "Decoder layers", layers);
        Hidden = Size("--hidden", "Hidden size", hidden);
        Heads = Size("--heads", "Attention heads", heads);
        KvHeads = Size("--kv-heads", "Key/value heads (GQA)", kvHeads);
        HeadDim = headDim ? Size("--head-dim", "Head dimension (0 = hidden / heads)", 0, least: 0) : null;
        Intermediate = Size("--intermediate", "MLP intermediate size", intermediate);
        Vocab = Size("--vocab", "Vocabulary size", vocab);
    }

    public Option<int> Layers { get; }
    public Option<int> Hidden { get; }
    public Option<int> Heads { get; }
    public Option<int> KvHeads { get; }
    public Option<int>? HeadDim { get; }
    public Option<int> Intermediate { get; }
    public Option<int> Vocab { get; }

    /// <summary>The options, in the order --help lists them.</summary>
    public IEnumerable<Option> All => new Option?[] { Layers, Hidden, Heads, KvHeads, HeadDim, Intermediate, Vocab }.OfType<Option>();

    /// <summary>The spec these options give; the rest (dtype, seed, …) is the caller's to set.</summary>
    public RandomModelSpec Spec(ParseResult p, Architecture architecture)
    {
        int hidden = p.GetValue(Hidden), heads = p.GetValue(Heads);
        int headDim = HeadDim != null && p.GetValue(HeadDim) is > 0 and var given ? given
            : hidden % heads == 0 ? hidden / heads
            : throw new UsageException($"--hidden {hidden} is not divisible by --heads {heads}{(HeadDim != null ? "; give --head-dim" : "")}");
        return new RandomModelSpec
        {
            Architecture = architecture, Layers = p.GetValue(Layers), Hidden = hidden, Heads = heads, KvHeads = p.GetValue(KvHeads), HeadDim = headDim,
            Intermediate = p.GetValue(Intermediate), Vocab = p.GetValue(Vocab),
        };
    }
}
