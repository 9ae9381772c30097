namespace E3.Model.IO;

/// <summary>
/// Parses the Python dict literal of a .npy header, e.g. <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (2, 3), }</c>.
/// Values are strings, booleans, integers (long) and tuples of integers (long[]); anything else is an error.
/// </summary>
internal sealed class NpyDictionaryParser
{
    readonly string _file;
    readonly string _text;
    int _pos;

    NpyDictionaryParser(string file, string text)
    {
        _file = file;
        _text = text;
    }

    public static IReadOnlyDictionary<string, object> Parse(string file, string text)
    {
        var parser = new NpyDictionaryParser(file, text);
        var result = parser.Dictionary();
        parser.SkipSpace();
        if (parser._pos != text.Length) throw parser.Fail("unexpected text after the closing '}'");
        return result;
    }

    Dictionary<string, object> Dictionary()
    {
        Expect('{');
        var fields = new Dictionary<string, object>(StringComparer.Ordinal);
        while (true)
        {
            SkipSpace();
            if (TryTake('}')) return fields;
            string key = String();
            Expect(':');
            if (!fields.TryAdd(key, Value())) throw Fail($"key '{key}' appears twice");
            SkipSpace();
            if (TryTake('}')) return fields;
            Expect(',');
        }
    }

    object Value()
    {
        SkipSpace();
        if (_pos >= _text.Length) throw Fail("value expected, found the end of the header");
        char c = _text[_pos];
        if (c is '\'' or '"') return String();
        if (c == '(') return Tuple();
        if (Word("True")) return true;
        if (Word("False")) return false;
        return Integer();
    }

    long[] Tuple()
    {
        Expect('(');
        var items = new List<long>();
        while (true)
        {
            SkipSpace();
            if (TryTake(')')) return items.ToArray();
            items.Add(Integer());
            SkipSpace();
            if (TryTake(')')) return items.ToArray();
            Expect(',');
        }
    }

    long Integer()
    {
        SkipSpace();
        int start = _pos;
        if (_pos < _text.Length && _text[_pos] == '-') _pos++;
        while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos])) _pos++;
        // Python 2 era writers appended L to long integers.
        string digits = _text[start.._pos];
        if (_pos < _text.Length && _text[_pos] == 'L') _pos++;
        if (!long.TryParse(digits, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long value))
            throw Fail($"'{Snippet(start)}' is not an integer");
        return value;
    }

    string String()
    {
        SkipSpace();
        if (_pos >= _text.Length || _text[_pos] is not ('\'' or '"')) throw Fail($"string expected at '{Snippet(_pos)}'");
        char quote = _text[_pos++];
        int end = _text.IndexOf(quote, _pos);
        if (end < 0) throw Fail("unterminated string");
        string value = _text[_pos..end];
        _pos = end + 1;
        return value;
    }

    bool Word(string word)
    {
        if (string.CompareOrdinal(_text, _pos, word, 0, word.Length) != 0) return false;
        _pos += word.Length;
        return true;
    }

    void Expect(char c)
    {
        SkipSpace();
        if (!TryTake(c)) throw Fail($"'{c}' expected at '{Snippet(_pos)}'");
    }

    bool TryTake(char c)
    {
        if (_pos < _text.Length && _text[_pos] == c)
        {
            _pos++;
            return true;
        }
        return false;
    }

    void SkipSpace()
    {
        while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos])) _pos++;
    }

    string Snippet(int at) => at >= _text.Length ? "<end>" : _text.Substring(at, Math.Min(20, _text.Length - at));

    NpyFormatException Fail(string problem)
    {
        string shown = _text.TrimEnd();
        if (shown.Length > 200) shown = shown[..200] + "...";
        return new(_file, $"header dictionary {shown}: {problem}");
    }
}
