using E3.Optim;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Optim;

public class AdamWTests
{
    static float[] Grad(int step, int n) => Enumerable.Range(0, n).Select(j => MathF.Sin(0.7f * step + 1.3f * j) * (j + 1)).ToArray();

    /// <summary>
    /// The update against AdamW's formula evaluated in double: m, v with bias correction, decoupled decay. torch runs it in
    /// fp32, so after 20 steps each value may differ by a few fp32 roundings of quantities of order lr (≤ 1e-6 absolute here).
    /// </summary>
    [Fact]
    public void MatchesTheFormulaInDouble()
    {
        var opts = new AdamWOptions(0.9, 0.99, 1e-8, 0.1);
        const int n = 7;
        using var adam = new AdamW([new ParameterSlot("w", n)], opts);
        var w = Enumerable.Range(0, n).Select(j => 0.5f - 0.1f * j).ToArray();
        var rw = w.Select(x => (double)x).ToArray();
        var m = new double[n];
        var v = new double[n];
        for (int t = 1; t <= 20; t++)
        {
            double lr = 0.01 * (1 + 0.1 * t);
            var g = Grad(t, n);
            adam.Step([w.AsMemory()], [g.AsMemory()], lr);
            for (int j = 0; j < n; j++)
            {
                rw[j] -= lr * opts.WeightDecay * rw[j];
                m[j] = opts.Beta1 * m[j] + (1 - opts.Beta1) * g[j];
                v[j] = opts.Beta2 * v[j] + (1 - opts.Beta2) * g[j] * g[j];
                double mh = m[j] / (1 - Math.Pow(opts.Beta1, t)), vh = v[j] / (1 - Math.Pow(opts.Beta2, t));
                rw[j] -= lr * mh / (Math.Sqrt(vh) + opts.Epsilon);
            }
        }
        Assert.Equal(20, adam.Steps);
        for (int j = 0; j < n; j++) Assert.InRange(Math.Abs(w[j] - rw[j]), 0, 1e-6);
    }

    [Fact]
    public void SaveAndLoadContinueBitIdentically()
    {
        using var dir = new TempDir();
        string state = Path.Combine(dir.Path, "adam.bin");
        ParameterSlot[] slots = [new("a", 5), new("b", 3)];
        float[] a1 = [1, 2, 3, 4, 5], b1 = [-1, 0, 1];
        using (var first = new AdamW(slots, new AdamWOptions(WeightDecay: 0.01)))
        {
            for (int t = 0; t < 4; t++) first.Step([a1.AsMemory(), b1.AsMemory()], [Grad(t, 5).AsMemory(), Grad(t + 9, 3).AsMemory()], 0.05);
            using (var file = File.Create(state)) first.Save(file);
            for (int t = 4; t < 8; t++) first.Step([a1.AsMemory(), b1.AsMemory()], [Grad(t, 5).AsMemory(), Grad(t + 9, 3).AsMemory()], 0.05);
        }
        // A fresh optimizer resumed from the saved state, on the values as they were when it was saved.
        float[] a2 = [1, 2, 3, 4, 5], b2 = [-1, 0, 1];
        using (var replay = new AdamW(slots, new AdamWOptions(WeightDecay: 0.01)))
            for (int t = 0; t < 4; t++) replay.Step([a2.AsMemory(), b2.AsMemory()], [Grad(t, 5).AsMemory(), Grad(t + 9, 3).AsMemory()], 0.05);
        using var resumed = new AdamW(slots, new AdamWOptions(WeightDecay: 0.01));
        resumed.Load(state);
        Assert.Equal(4, resumed.Steps);
        for (int t = 4; t < 8; t++) resumed.Step([a2.AsMemory(), b2.AsMemory()], [Grad(t, 5).AsMemory(), Grad(t + 9, 3).AsMemory()], 0.05);
        Assert.Equal(a1, a2);
        Assert.Equal(b1, b2);
    }

    /// <summary>
    /// Bound to the caller's arrays, torch's parameters and gradients are views of them: a step updates them in place.
    /// The arithmetic is the same torch update as with copies, so the bits are too, through a save and a resume.
    /// </summary>
    [Fact]
    public void BoundArraysStepInPlaceWithTheBitsOfTheCopyingOptimizer()
    {
        using var dir = new TempDir();
        string state = Path.Combine(dir.Path, "adam.bin");
        ParameterSlot[] slots = [new("a", 5), new("b", 3)];
        var options = new AdamWOptions(WeightDecay: 0.01);
        float[] a1 = [1, 2, 3, 4, 5], b1 = [-1, 0, 1];
        using (var copying = new AdamW(slots, options))
            for (int t = 0; t < 8; t++) copying.Step([a1.AsMemory(), b1.AsMemory()], [Grad(t, 5).AsMemory(), Grad(t + 9, 3).AsMemory()], 0.05);

        float[][] values = [[1, 2, 3, 4, 5], [-1, 0, 1]];
        float[][] gradients = [new float[5], new float[3]];
        void StepBound(AdamW adam, int t)
        {
            Grad(t, 5).CopyTo(gradients[0], 0);
            Grad(t + 9, 3).CopyTo(gradients[1], 0);
            adam.Step([values[0].AsMemory(), values[1].AsMemory()], [gradients[0].AsMemory(), gradients[1].AsMemory()], 0.05);
        }
        using (var bound = new AdamW(slots, options, values, gradients))
        {
            for (int t = 0; t < 4; t++) StepBound(bound, t);
            using (var file = File.Create(state)) bound.Save(file);
        }
        using (var resumed = new AdamW(slots, options, values, gradients))
        {
            resumed.Load(state);
            for (int t = 4; t < 8; t++) StepBound(resumed, t);
            // A NaN gradient is refused before torch touches the arrays.
            gradients[1][2] = float.NaN;
            var before = values.Select(v => v.ToArray()).ToArray();
            Assert.Throws<ArgumentException>(() => resumed.Step([values[0].AsMemory(), values[1].AsMemory()], [gradients[0].AsMemory(), gradients[1].AsMemory()], 0.05));
            Assert.Equal(before[0], values[0]);
            Assert.Equal(before[1], values[1]);
        }
        Assert.Equal(a1, values[0]);
        Assert.Equal(b1, values[1]);
    }

    [Fact]
    public void BindingRefusesArraysThatDoNotFitTheSlots()
    {
        ParameterSlot[] slots = [new("a", 5)];
        var options = new AdamWOptions();
        var e = Assert.Throws<ArgumentException>(() => new AdamW(slots, options, [new float[4]], [new float[5]]));
        Assert.Contains("'a': arrays of 4 values and 5 gradients; expected 5", e.Message);
        var shared = new float[5];
        e = Assert.Throws<ArgumentException>(() => new AdamW(slots, options, [shared], [shared]));
        Assert.Contains("values and gradients are one array", e.Message);
        e = Assert.Throws<ArgumentException>(() => new AdamW(slots, options, [new float[5]], []));
        Assert.Contains("1 value arrays and 0 gradient arrays for 1 parameters", e.Message);
    }

    [Fact]
    public void RejectsStateWhoseMomentsAreNotFinite()
    {
        // Two states that differ only in their moments (lr 0 leaves the weights alone): the first byte where they differ
        // lies in a moment, and 8 bytes of 0xFF there make at least one whole float NaN whatever its alignment.
        using var dir = new TempDir();
        byte[] Saved(float gradientScale)
        {
            float[] w = Enumerable.Range(0, 64).Select(i => (float)i).ToArray();
            float[] g = Enumerable.Range(0, 64).Select(i => gradientScale * (1 + 0.01f * i)).ToArray();
            using var opt = new AdamW([new ParameterSlot("a", 64)], new AdamWOptions());
            opt.Step([w.AsMemory()], [g.AsMemory()], 0);
            using var stream = new MemoryStream();
            opt.Save(stream);
            return stream.ToArray();
        }
        byte[] a = Saved(0.5f), b = Saved(0.7f);
        Assert.Equal(a.Length, b.Length);
        int first = Enumerable.Range(0, a.Length).First(i => a[i] != b[i]);
        string path = Path.Combine(dir.Path, "adam.bin");
        File.WriteAllBytes(path, a);
        using (var intact = new AdamW([new ParameterSlot("a", 64)], new AdamWOptions())) intact.Load(path); // the original loads
        Array.Fill(a, (byte)0xFF, first, 8);
        File.WriteAllBytes(path, a);
        using var opt = new AdamW([new ParameterSlot("a", 64)], new AdamWOptions());
        var e = Assert.Throws<OptimizerStateException>(() => opt.Load(path));
        Assert.Contains($"{path}: moments of 'a': hold a NaN", e.Message);
    }

    [Fact]
    public void RejectsStateOfOtherParametersAndTruncatedFiles()
    {
        using var dir = new TempDir();
        string state = Path.Combine(dir.Path, "adam.bin");
        float[] a = [1, 2];
        using (var opt = new AdamW([new ParameterSlot("a", 2)], new AdamWOptions()))
        {
            opt.Step([a.AsMemory()], [new float[] { 0.5f, -0.5f }.AsMemory()], 0.1);
            using (var file = File.Create(state)) opt.Save(file);
        }
        using (var other = new AdamW([new ParameterSlot("b", 2)], new AdamWOptions()))
        {
            var e = Assert.Throws<OptimizerStateException>(() => other.Load(state));
            Assert.Contains("'a'", e.Message);
        }
        var bytes = File.ReadAllBytes(state);
        File.WriteAllBytes(state, bytes[..(bytes.Length / 2)]);
        using var same = new AdamW([new ParameterSlot("a", 2)], new AdamWOptions());
        Assert.Throws<OptimizerStateException>(() => same.Load(state));
    }

    [Fact]
    public void RejectsNonFiniteGradients()
    {
        using var opt = new AdamW([new ParameterSlot("a", 2)], new AdamWOptions());
        float[] a = [1, 2];
        var e = Assert.Throws<ArgumentException>(() => opt.Step([a.AsMemory()], [new float[] { 0f, float.NaN }.AsMemory()], 0.1));
        Assert.Contains("'a'[1]", e.Message);
        Assert.Equal([1f, 2f], a);
    }
}
