using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace E3.Optim;

/// <summary>A named, flat fp32 parameter the optimizer updates.</summary>
/// <param name="Name">Stable name (an HF tensor name, or "alpha"): state files are matched by it.</param>
/// <param name="Length">Element count.</param>
internal readonly record struct ParameterSlot(string Name, int Length);

/// <summary>
/// AdamW whose moments and step counts live in libtorch (torch.optim.AdamW), so the update is torch's exact
/// arithmetic, while the parameters and gradients are the engine's own fp32 arrays: torch's parameter and gradient
/// tensors are views of fp32 arrays (pinned, not copied). Bound to the caller's arrays (the constructor that takes
/// them) a step reads and writes them in place, so the host holds 16 bytes a parameter (value, gradient, two moments)
/// rather than 24 with a copy of each array inside torch: 64 GB less for an 8B model trained whole.
/// </summary>
internal sealed class AdamW : IDisposable
{
    const int FileMagic = 0x57414533; // "3EAW"
    const int FileVersion = 1;

    readonly ParameterSlot[] _slots;
    readonly float[][] _values, _gradientValues; // what the torch tensors below are views of
    readonly Parameter[] _parameters;
    readonly Tensor[] _gradients;
    readonly TorchSharp.Modules.AdamW _torch;
    readonly AdamWOptions _options;

    /// <summary>An optimizer over arrays of its own: each <see cref="Step"/> copies the caller's values and gradients in and the new values out.</summary>
    /// <param name="parameters">The parameters, in the order a step receives them.</param>
    /// <param name="options">Betas, epsilon and weight decay; the learning rate is given per step.</param>
    public AdamW(IReadOnlyList<ParameterSlot> parameters, AdamWOptions options)
        : this(parameters, options, OwnArrays(parameters), OwnArrays(parameters))
    {
    }

    /// <summary>An optimizer bound to the caller's arrays: a <see cref="Step"/> given these arrays updates them in place, with no copy.</summary>
    /// <param name="parameters">The parameters' names and lengths.</param>
    /// <param name="options">Betas, epsilon and weight decay; the learning rate is given per step.</param>
    /// <param name="values">The parameters' values, one array per slot, exactly its length; pinned while the optimizer lives.</param>
    /// <param name="gradients">Their gradients, which the caller fills before each step; pinned too.</param>
    public AdamW(IReadOnlyList<ParameterSlot> parameters, AdamWOptions options, IReadOnlyList<float[]> values, IReadOnlyList<float[]> gradients)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(gradients);
        options.Validate();
        if (parameters.Count == 0) throw new ArgumentException("no parameters to optimise", nameof(parameters));
        if (parameters.Select(p => p.Name).Distinct().Count() != parameters.Count) throw new ArgumentException("parameter names must be unique", nameof(parameters));
        foreach (var p in parameters)
            if (p.Length <= 0) throw new ArgumentException($"parameter '{p.Name}' has length {p.Length}", nameof(parameters));
        if (values.Count != parameters.Count || gradients.Count != parameters.Count)
            throw new ArgumentException($"{values.Count} value arrays and {gradients.Count} gradient arrays for {parameters.Count} parameters");
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            if (values[i]?.Length != p.Length || gradients[i]?.Length != p.Length)
                throw new ArgumentException($"parameter '{p.Name}': arrays of {values[i]?.Length} values and {gradients[i]?.Length} gradients; expected {p.Length}");
            if (ReferenceEquals(values[i], gradients[i])) throw new ArgumentException($"parameter '{p.Name}': its values and gradients are one array");
        }
        _slots = parameters.ToArray();
        _values = values.ToArray();
        _gradientValues = gradients.ToArray();
        _options = options;
        EnsureLibTorch();
        // Parameter takes ownership of the view it wraps; the gradient views are ours to dispose. A view keeps its
        // array pinned until libtorch frees it.
        _parameters = _values.Select(v => new Parameter(from_array(v))).ToArray();
        _gradients = _gradientValues.Select(g => from_array(g)).ToArray();
        for (int i = 0; i < _parameters.Length; i++) _parameters[i].grad = _gradients[i];
        _torch = optim.AdamW(_parameters, lr: 1e-3, beta1: options.Beta1, beta2: options.Beta2, eps: options.Epsilon, weight_decay: options.WeightDecay);
    }

    static float[][] OwnArrays(IReadOnlyList<ParameterSlot> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return parameters.Select(p => new float[Math.Max(0, p.Length)]).ToArray();
    }

    /// <summary>
    /// The lean publish for inference machines (<c>./build.sh publish</c>) leaves libtorch out; say so instead of
    /// surfacing TorchSharp's loader error.
    /// </summary>
    static void EnsureLibTorch()
    {
        const string Missing = "AdamW keeps its state in libtorch (TorchSharp-cpu), which this e3 was published without (the lean publish " +
            "for inference machines); run search, distill and train from a full build (./build.sh build, or PUBLISH_WITH_TORCH=1 ./build.sh publish)";
        bool loaded;
        try
        {
            loaded = torch.TryInitializeDeviceType(DeviceType.CPU);
        }
        catch (Exception e) when (e is DllNotFoundException or NotSupportedException or TypeInitializationException or BadImageFormatException)
        {
            throw new InvalidOperationException(Missing, e);
        }
        if (!loaded) throw new InvalidOperationException(Missing);
    }

    /// <summary>The parameters, in order.</summary>
    public IReadOnlyList<ParameterSlot> Parameters => _slots;

    /// <summary>Number of updates applied so far (restored by <see cref="Load"/>).</summary>
    public long Steps { get; private set; }

    /// <summary>
    /// One AdamW update with learning rate <paramref name="learningRate"/>: <paramref name="values"/>[i] is updated in
    /// place from <paramref name="gradients"/>[i], through the optimizer's arrays. Gradients must be finite.
    /// </summary>
    public void Step(IReadOnlyList<Memory<float>> values, IReadOnlyList<ReadOnlyMemory<float>> gradients, double learningRate)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(gradients);
        if (values.Count != _slots.Length || gradients.Count != _slots.Length)
            throw new ArgumentException($"{values.Count} values and {gradients.Count} gradients given for {_slots.Length} parameters");
        for (int i = 0; i < _slots.Length; i++)
        {
            var s = _slots[i];
            if (values[i].Length != s.Length || gradients[i].Length != s.Length)
                throw new ArgumentException($"parameter '{s.Name}': {values[i].Length} values and {gradients[i].Length} gradients; expected {s.Length}");
        }
        if (!(learningRate >= 0) || !double.IsFinite(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "learning rate must be finite and ≥ 0");
        for (int i = 0; i < _slots.Length; i++)
        {
            var g = gradients[i].Span;
            for (int j = 0; j < g.Length; j++)
                if (!float.IsFinite(g[j])) throw new ArgumentException($"gradient of '{_slots[i].Name}'[{j}] = {g[j]} is not finite");
        }
        // Arrays the optimizer is bound to are torch's own storage already; others are copied in and out.
        for (int i = 0; i < _slots.Length; i++)
        {
            if (!IsArray(values[i], _values[i])) values[i].Span.CopyTo(_values[i]);
            if (!IsArray(gradients[i], _gradientValues[i])) gradients[i].Span.CopyTo(_gradientValues[i]);
        }
        foreach (var group in _torch.ParamGroups) group.LearningRate = learningRate;
        _torch.step();
        for (int i = 0; i < _slots.Length; i++)
            if (!IsArray(values[i], _values[i])) _values[i].CopyTo(values[i].Span);
        Steps++;
    }

    static bool IsArray<T>(ReadOnlyMemory<T> memory, T[] array) =>
        MemoryMarshal.TryGetArray(memory, out var segment) && ReferenceEquals(segment.Array, array) && segment.Offset == 0 && segment.Count == array.Length;

    /// <summary>
    /// Writes the step count and torch's moment state to <paramref name="stream"/>, which stays open. Making the file
    /// appear whole is the caller's part: the engine's checkpoints write it through their atomic temp-then-rename file.
    /// </summary>
    public void Save(Stream stream)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(stream);
        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        writer.Write(FileMagic);
        writer.Write(FileVersion);
        writer.Write(Steps);
        writer.Write(_slots.Length);
        foreach (var s in _slots) { writer.Write(s.Name); writer.Write(s.Length); }
        _torch.save_state_dict(writer);
        writer.Flush();
    }

    /// <summary>Restores state written by <see cref="Save"/> for the same parameters (names and lengths are checked).</summary>
    public void Load(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!File.Exists(path)) throw new OptimizerStateException(path, "file", "not found");
        try
        {
            using var stream = File.OpenRead(path);
            using var reader = new BinaryReader(stream);
            int magic = reader.ReadInt32();
            if (magic != FileMagic) throw new OptimizerStateException(path, "magic", $"0x{magic:x8} is not an E3 AdamW state file");
            int version = reader.ReadInt32();
            if (version != FileVersion) throw new OptimizerStateException(path, "version", $"{version} is not supported (expected {FileVersion})");
            long steps = reader.ReadInt64();
            if (steps < 0) throw new OptimizerStateException(path, "steps", $"{steps} is negative");
            int count = reader.ReadInt32();
            if (count != _slots.Length) throw new OptimizerStateException(path, "parameters", $"holds {count} parameters; the optimizer has {_slots.Length}");
            for (int i = 0; i < count; i++)
            {
                string name = reader.ReadString();
                int length = reader.ReadInt32();
                if (name != _slots[i].Name || length != _slots[i].Length)
                    throw new OptimizerStateException(path, $"parameters[{i}]", $"'{name}' of length {length}; expected '{_slots[i].Name}' of length {_slots[i].Length}");
            }
            _torch.load_state_dict(reader);
            if (stream.Position != stream.Length)
                throw new OptimizerStateException(path, "length", $"{stream.Length - stream.Position} trailing bytes after the state");
            RequireFiniteMoments(path);
            Steps = steps;
        }
        catch (EndOfStreamException)
        {
            throw new OptimizerStateException(path, "length", "the file is truncated");
        }
    }

    // Moments a step wrote are finite, and the second ones are not negative; a file with others would turn the next
    // step's update into NaN, far from the file that caused it.
    void RequireFiniteMoments(string path)
    {
        using var scope = NewDisposeScope();
        var states = _torch.state_dict().State;
        for (int i = 0; i < states.Count && i < _slots.Length; i++)
        {
            if (states[i] is not TorchSharp.Modules.AdamW.State s) continue;
            bool finite = (s.exp_avg is null || isfinite(s.exp_avg).all().item<bool>())
                && (s.exp_avg_sq is null || (isfinite(s.exp_avg_sq).all().item<bool>() && (s.exp_avg_sq >= 0).all().item<bool>()));
            if (!finite) throw new OptimizerStateException(path, $"moments of '{_slots[i].Name}'", "hold a NaN, an infinity or a negative second moment");
        }
    }

    bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _torch.Dispose();
        foreach (var p in _parameters) p.Dispose();
        foreach (var g in _gradients) g.Dispose();
    }
}
