namespace E3.Pruning.Export;

/// <summary>
/// Maps a source checkpoint's tensor names to the pruned one's: <c>model.layers.{old}.*</c> becomes
/// <c>model.layers.{new}.*</c>, where new is the old layer's rank among the kept layers; tensors of dropped layers
/// have no new name; every other tensor keeps its name.
/// </summary>
internal sealed class LayerRenumbering
{
    const string LayerPrefix = "model.layers.";
    readonly int[] _newIndex;

    /// <param name="layers">The source model's layer count.</param>
    /// <param name="kept">Kept layer indices, ascending and unique (as <see cref="Masks.MaskFile.Kept"/> holds them).</param>
    public LayerRenumbering(int layers, IReadOnlyList<int> kept)
    {
        _newIndex = Enumerable.Repeat(-1, layers).ToArray();
        for (int i = 0; i < kept.Count; i++)
        {
            if (kept[i] < 0 || kept[i] >= layers || (i > 0 && kept[i] <= kept[i - 1]))
                throw new ArgumentException($"kept[{i}] = {kept[i]}: kept layers must be ascending, unique and in 0..{layers - 1}", nameof(kept));
            _newIndex[kept[i]] = i;
        }
    }

    /// <summary>
    /// The tensor's name in the pruned checkpoint, or null when it belongs to a dropped layer. A layer index outside
    /// the model is an error naming <paramref name="source"/> and the tensor.
    /// </summary>
    public string? Rename(string name, string source)
    {
        if (!name.StartsWith(LayerPrefix, StringComparison.Ordinal)) return name;
        int dot = name.IndexOf('.', LayerPrefix.Length);
        ReadOnlySpan<char> digits = name.AsSpan(LayerPrefix.Length, (dot < 0 ? name.Length : dot) - LayerPrefix.Length);
        if (dot < 0 || !int.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int old))
            return name; // not a per-layer tensor (no numeric index), so nothing to renumber
        if (old >= _newIndex.Length)
            throw new ExportException(source, $"tensor '{name}': layer index {old} is outside 0..{_newIndex.Length - 1} (num_hidden_layers = {_newIndex.Length})");
        int renumbered = _newIndex[old];
        return renumbered < 0 ? null : string.Concat(LayerPrefix, renumbered.ToString(System.Globalization.CultureInfo.InvariantCulture), name.AsSpan(dot));
    }
}
