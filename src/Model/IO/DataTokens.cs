using E3.Model.Tokenization;

namespace E3.Model.IO;

/// <summary>The token stream a command or a library caller names by a data file: token ids, or text for the model's tokenizer.</summary>
internal static class DataTokens
{
    /// <summary>
    /// Reads <paramref name="file"/>: a .bin or .npy token file as ids (each checked against <paramref name="vocab"/>),
    /// anything else as text encoded by <paramref name="modelDir"/>'s tokenizer. At least two tokens are needed (one
    /// input and its next-token target).
    /// </summary>
    public static int[] Read(string file, string modelDir, int vocab)
    {
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: data file not found", file);
        string ext = Path.GetExtension(file).ToLowerInvariant();
        int[] tokens;
        if (ext is ".bin" or ".npy")
        {
            var tf = TokenFile.Read(file);
            tf.Validate(vocab);
            tokens = tf.Ids;
        }
        else
        {
            using var tok = TokenizerLoader.Load(modelDir, vocab);
            tokens = tok.Encode(File.ReadAllText(file));
        }
        if (tokens.Length < 2) throw new InvalidDataException($"{file}: holds {tokens.Length} tokens; at least 2 are needed");
        return tokens;
    }
}
