namespace E3.Model.Tokenization;

/// <summary>Picks the tokenizer of a model folder.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// Largest model vocabulary the byte tokenizer is accepted for: room to pad its 258 ids to an embedding table
    /// of 512 rows. A larger vocabulary means the model was trained with a real tokenizer, and reading its ids as
    /// bytes would produce garbage without any error.
    /// </summary>
    public const int MaxByteTokenizerModelVocab = 512;

    /// <summary>
    /// The folder's tokenizer.json when present; otherwise the <see cref="ByteTokenizer"/> when
    /// <paramref name="modelVocabSize"/> (config.json's vocab_size) fits it. Throws
    /// <see cref="ModelFormatException"/> naming the folder when neither applies, or when the tokenizer produces ids
    /// the model has no embedding for.
    /// </summary>
    public static ITokenizer Load(string modelDir, int modelVocabSize)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(modelVocabSize);
        if (!Directory.Exists(modelDir)) throw new ModelFormatException(modelDir, "model folder", "directory not found");

        string jsonPath = Path.Combine(modelDir, HuggingFaceTokenizer.FileName);
        if (File.Exists(jsonPath))
        {
            var tokenizer = HuggingFaceTokenizer.Load(jsonPath);
            if (tokenizer.VocabSize <= modelVocabSize) return tokenizer;
            tokenizer.Dispose();
            throw new ModelFormatException(jsonPath, "vocab",
                $"the tokenizer has {tokenizer.VocabSize} ids but the model's vocab_size is {modelVocabSize}");
        }

        if (modelVocabSize is >= ByteTokenizer.Size and <= MaxByteTokenizerModelVocab) return new ByteTokenizer();
        throw new ModelFormatException(modelDir, HuggingFaceTokenizer.FileName,
            $"file not found, and vocab_size={modelVocabSize} does not fit the byte tokenizer " +
            $"(it needs {ByteTokenizer.Size}..{MaxByteTokenizerModelVocab})");
    }
}
