using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Typed launches of kernels/embedding.cu (one block per token). Ids must already be checked against the table's rows.</summary>
internal sealed class EmbeddingKernels : KernelFamily
{
    private readonly GpuFunction forwardF32, forwardBf16, forwardBf16ToF32, backwardF32, groupedBackwardF32;

    /// <summary>Loads embedding.cu on <paramref name="device"/>.</summary>
    public EmbeddingKernels(IGpuDevice device) : base(device, "embedding")
    {
        forwardF32 = Function("e3_embedding_f32");
        forwardBf16 = Function("e3_embedding_bf16");
        forwardBf16ToF32 = Function("e3_embedding_bf16_f32");
        backwardF32 = Function("e3_embedding_backward_f32");
        groupedBackwardF32 = Function("e3_embedding_backward_grouped_f32");
    }

    /// <summary>
    /// The host side of <see cref="BackwardGrouped"/>: the ints [unique ids, offsets (unique + 1), token indices grouped by
    /// id in token order] and the number of unique ids.
    /// </summary>
    public static (int[] Plan, int Unique) GroupTokens(ReadOnlySpan<int> ids)
    {
        var byId = new SortedDictionary<int, List<int>>();
        for (int t = 0; t < ids.Length; t++)
        {
            if (!byId.TryGetValue(ids[t], out var tokens)) byId[ids[t]] = tokens = [];
            tokens.Add(t);
        }
        int unique = byId.Count;
        var plan = new int[2 * unique + 1 + ids.Length];
        int u = 0, at = 0;
        foreach (var (id, tokens) in byId)
        {
            plan[u] = id;
            plan[unique + u] = at;
            foreach (int t in tokens) plan[2 * unique + 1 + at++] = t;
            u++;
        }
        plan[2 * unique] = at;
        return (plan, unique);
    }

    /// <summary>
    /// dtable[id,:] += Σ dy[t,:] over the tokens with that id, in token order, one block per unique id: no atomics, so
    /// deterministic. <paramref name="plan"/> comes from <see cref="GroupTokens"/>.
    /// </summary>
    public void BackwardGrouped(DevicePointer<float> dy, DevicePointer<int> plan, DevicePointer<float> dtable, int unique, int dim, GpuStream stream)
    {
        AtLeast(unique, 0, nameof(unique));
        AtLeast(dim, 1, nameof(dim));
        var args = new KernelArgs();
        args.Add(dy);
        args.Add(plan);
        args.Add(dtable);
        args.Add(unique);
        args.Add(dim);
        Launch(groupedBackwardF32, LaunchShapes.RowPerBlock(unique), stream, args);
    }

    /// <summary>y[t,:] = table[ids[t],:].</summary>
    public void Forward(DevicePointer<float> table, DevicePointer<int> ids, DevicePointer<float> y, int tokens, int dim, GpuStream stream) =>
        LaunchRows(forwardF32, table.Raw, ids, y.Raw, tokens, dim, stream);

    /// <summary>bf16 table and output.</summary>
    public void Forward(DevicePointer<Bf16> table, DevicePointer<int> ids, DevicePointer<Bf16> y, int tokens, int dim, GpuStream stream) =>
        LaunchRows(forwardBf16, table.Raw, ids, y.Raw, tokens, dim, stream);

    /// <summary>A bf16 table's rows widened (exactly) into fp32 output: the fp32 trainer's lookup, which reads only the rows it needs.</summary>
    public void Forward(DevicePointer<Bf16> table, DevicePointer<int> ids, DevicePointer<float> y, int tokens, int dim, GpuStream stream) =>
        LaunchRows(forwardBf16ToF32, table.Raw, ids, y.Raw, tokens, dim, stream);

    /// <summary>dtable[ids[t],:] += dy[t,:] (atomic; repeated ids accumulate).</summary>
    public void Backward(DevicePointer<float> dy, DevicePointer<int> ids, DevicePointer<float> dtable, int tokens, int dim, GpuStream stream)
    {
        AtLeast(tokens, 0, nameof(tokens));
        AtLeast(dim, 1, nameof(dim));
        var args = new KernelArgs();
        args.Add(dy);
        args.Add(ids);
        args.Add(dtable);
        args.Add(tokens);
        args.Add(dim);
        Launch(backwardF32, LaunchShapes.RowPerBlock(tokens), stream, args);
    }

    private void LaunchRows(GpuFunction function, DevicePtr table, DevicePointer<int> ids, DevicePtr y, int tokens, int dim, GpuStream stream)
    {
        AtLeast(tokens, 0, nameof(tokens));
        AtLeast(dim, 1, nameof(dim));
        var args = new KernelArgs();
        args.Add(table);
        args.Add(ids);
        args.Add(y);
        args.Add(tokens);
        args.Add(dim);
        Launch(function, LaunchShapes.RowPerBlock(tokens), stream, args);
    }
}
