namespace E3.Model.Decoder;

/// <summary>Greedy decoding with the KV cache: one prefill, then one position per new token.</summary>
public static class GreedyGenerator
{
    /// <summary>Returns the generated ids (not the prompt), stopping after <paramref name="maxNew"/> or at <paramref name="eos"/>.</summary>
    public static int[] Generate(DecoderModel model, ReadOnlySpan<int> prompt, int maxNew, LayerMask? mask = null, int? eos = null)
    {
        if (prompt.Length == 0) throw new ArgumentException("the prompt is empty", nameof(prompt));
        if (maxNew < 0) throw new ArgumentOutOfRangeException(nameof(maxNew), $"max new tokens {maxNew} must not be negative");
        var output = new List<int>(maxNew);
        if (maxNew == 0) return [];
        using var session = model.StartSession(mask ?? LayerMask.All(model.Config.NumLayers), 1, prompt.Length + maxNew);
        // ForwardArgMax reduces on the device where the backend can, so a GPU step downloads one int, not a vocabulary row.
        int next = session.ForwardArgMax(prompt)[0];
        while (true)
        {
            output.Add(next);
            if (output.Count == maxNew || next == eos) break;
            next = session.ForwardArgMax([next])[0];
        }
        return output.ToArray();
    }

    /// <summary>Index of the largest value; the lowest index wins ties, as torch.argmax does.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }
}
