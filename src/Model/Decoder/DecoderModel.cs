using E3.Backends;
using E3.Model.IO;

namespace E3.Model.Decoder;

/// <summary>
/// A Qwen3 / Qwen2 / Llama decoder on one backend, computed as transformers computes it, with a gate per layer.
/// The forward pass is written once against <see cref="IBackend"/>.
/// </summary>
public sealed class DecoderModel : IDisposable
{
    readonly long[] _layerExecutions;

    internal DecoderModel(ModelConfig config, DecoderWeights weights, IBackend backend)
    {
        Config = config;
        Weights = weights;
        Backend = backend;
        _layerExecutions = new long[config.NumLayers];
    }

    /// <summary>The model's config.json, parsed.</summary>
    public ModelConfig Config { get; }
    internal DecoderWeights Weights { get; }
    internal IBackend Backend { get; }

    /// <summary>How many times each layer has run (one count per forward call that computed it).</summary>
    public ReadOnlySpan<long> LayerExecutions => _layerExecutions;

    internal void CountExecution(int layer) => Interlocked.Increment(ref _layerExecutions[layer]);

    /// <summary>
    /// Loads config.json and the safetensors checkpoint (one file or an index of shards) in <paramref name="directory"/>
    /// onto <paramref name="device"/>, converting the weights as <paramref name="precision"/> asks. Dispose the model
    /// before the device.
    /// </summary>
    /// <exception cref="ModelFormatException">config.json is missing a field or holds a value the engine cannot run.</exception>
    /// <exception cref="E3.Model.IO.SafeTensorsFormatException">A checkpoint file is truncated, lies in its header, or lacks a weight.</exception>
    public static DecoderModel Load(string directory, ComputeDevice device, WeightPrecision precision = WeightPrecision.AsStored)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Load(directory, device.Backend, precision);
    }

    /// <summary>Loads config.json and the safetensors checkpoint in <paramref name="directory"/>.</summary>
    internal static DecoderModel Load(string directory, IBackend backend, WeightPrecision precision = WeightPrecision.AsStored)
    {
        var config = ModelConfig.Load(directory);
        using var ckpt = SafeTensorsCheckpoint.Open(directory);
        var weights = DecoderWeights.Load(ckpt, config, backend, precision, directory);
        return new DecoderModel(config, weights, backend);
    }

    /// <summary>A KV-cached session for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> positions.</summary>
    public InferenceSession StartSession(LayerMask mask, int batch = 1, int capacity = 0)
        => new(this, mask, batch, capacity > 0 ? capacity : Math.Min(Config.MaxPositionEmbeddings, 4096));

    /// <summary>Logits [T, V] of one sequence under a mask (all layers when null).</summary>
    public float[] Forward(ReadOnlySpan<int> tokens, LayerMask? mask = null)
    {
        using var session = StartSession(mask ?? LayerMask.All(Config.NumLayers), 1, tokens.Length);
        return session.Forward(tokens, LogitsMode.All);
    }

    /// <summary>Checks every id against the vocabulary before any work is done.</summary>
    public void ValidateTokens(ReadOnlySpan<int> tokens, string source = "tokens")
    {
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"{source}[{i}] = {tokens[i]} is outside the vocabulary (vocab_size = {Config.VocabSize})");
    }

    /// <summary>Frees the weights (not the device they are on).</summary>
    public void Dispose() => Weights.Dispose();
}

/// <summary>Which logits a forward call returns.</summary>
public enum LogitsMode
{
    /// <summary>[B·T, V]: every position.</summary>
    All,
    /// <summary>[B, V]: the last position of each sequence (generation).</summary>
    Last,
    /// <summary>None: only fills the KV cache.</summary>
    None,
}
