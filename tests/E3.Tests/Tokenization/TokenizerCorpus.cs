using Xunit;
namespace E3.Tests.Tokenization;

/// <summary>
/// Texts that exercise each part of a byte-level BPE tokenizer (Qwen3, Llama-3): pre-tokenizer regex, byte-level
/// BPE, added tokens, normalisation.
/// </summary>
public static class TokenizerCorpus
{
    /// <summary>A named text, and whether its NFC form differs from it (then an NFC-normalising tokenizer decodes to the NFC form).</summary>
    public sealed record Case(string Name, string Text, bool ChangedByNfc = false);

    public static IReadOnlyList<Case> Cases { get; } = WithConcatenation(
    [
        new("empty", ""),
        new("english", "The quick brown fox jumps over the lazy dog. It's what they'd've wanted, isn't it?"),
        new("english-caps-contractions", "HE'S GONE; She'LL see. We'RE here, THEY'VE left."),
        new("chinese", "今天天气很好，我们去公园散步吧。人工智能正在改变世界。"),
        new("japanese", "東京は日本の首都です。ひらがなとカタカナ、そして漢字を混ぜて書きます。"),
        new("arabic", "مرحبا بالعالم! هذه جملة عربية مع أرقام ١٢٣ و 456."),
        new("emoji", "I ❤️ pizza 🍕🍕 and 👩‍👩‍👧‍👦 families; flags 🇫🇷🇯🇵; skin 👍🏽."),
        new("combining-nfc-stable", "Zalgo: q̇ ǫ̈ ŵ̥ x\u0323\u0302 and Hebrew שָׁלוֹם"),
        new("combining-decomposed", "cafe\u0301 nai\u0308ve A\u030A", ChangedByNfc: true),
        new("python", "def fib(n):\n\tif n < 2:\n\t\treturn n\n\treturn fib(n - 1) + fib(n - 2)\n\n\nprint([fib(i) for i in range(10)])  # 0..34\n"),
        new("csharp", "namespace Demo;\n\npublic static class Program\n{\n    public static int Main(string[] args)\n    {\n        var xs = new List<int> { 1, 2, 3 };\n        return xs.Sum() >= 6 ? 0 : 1;\n    }\n}\n"),
        new("whitespace-runs", "a  b   c    d\t\te\t \t f\n\n\ng\r\nh\r\n\r\n  i   "),
        new("trailing-spaces", "line with trailing spaces   \nnext line\t\t\n   "),
        new("only-whitespace", " \t\r\n \n\n  "),
        new("digits", "Pi is 3.14159265358979, year 2026, phone +1-555-0100, 1,000,000 and ４２."),
        new("chat-special-tokens", "<|im_start|>user\nhi<|im_end|>"),
        new("chat-full", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|endoftext|>"),
        new("llama-chat", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"),
        new("special-token-lookalike", "<|im_start |> <|not_a_token|> <| im_end|>"),
        new("mixed-scripts", "Español: ¿Qué tal? Русский: привет. Ελληνικά: γειά. हिन्दी: नमस्ते. 한국어: 안녕하세요."),
        new("punctuation-newlines", "Wait...\n\n!!! ???\n---\n***\r\n"),
        new("control-and-nul", "tab\tbell\u0007nul\u0000del\u007f end"),
        new("long-word", new string('a', 300) + " " + string.Concat(Enumerable.Repeat("ab", 150))),
    ]);

    // All NFC-stable cases in one text, so that boundaries between scripts, code and special tokens are covered too.
    static Case[] WithConcatenation(Case[] cases)
        => [.. cases, new("all-concatenated", string.Join("\n", cases.Where(c => !c.ChangedByNfc).Select(c => c.Text)))];

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var c in Cases) data.Add(c.Name);
        return data;
    }
}
