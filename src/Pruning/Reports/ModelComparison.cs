using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Pruning.Masks;

namespace E3.Pruning.Reports;

/// <summary>
/// The teacher, each mask applied to the teacher's weights, and each student checkpoint, evaluated against the teacher
/// on the same held-out windows (<c>e3 compare</c>, and <c>e3 prune</c>'s two comparisons).
/// </summary>
internal static class ModelComparison
{
    /// <summary>Reads every mask and checks it against <paramref name="config"/>, so a mismatched one fails before any model runs.</summary>
    public static List<(string Path, MaskFile Mask)> LoadMasks(IEnumerable<string> paths, ModelConfig config) => paths.Select(path =>
    {
        var mask = MaskFile.Load(path);
        mask.EnsureMatches(config, path);
        return (path, mask);
    }).ToList();

    /// <summary>
    /// One row for the teacher, then one per mask (named by its file), then one per student (named by its folder, loaded
    /// on the teacher's backend and released before returning).
    /// </summary>
    /// <param name="progress">Called after each window with (windows done, windows in all).</param>
    public static List<ComparisonRow> Run(DecoderModel teacher, IReadOnlyList<(string Path, MaskFile Mask)> masks, IReadOnlyList<string> studentFolders,
        int[] tokens, int window, long maxTokens, Action<int, int>? progress)
    {
        var students = new List<DecoderModel>();
        try
        {
            foreach (string dir in studentFolders) students.Add(DecoderModel.Load(dir, teacher.Backend));
            var entries = new List<(string Name, string Method, int Layers, IReadOnlyList<int>? Dropped, StudentUnderTest Model)>
            {
                ("teacher", "full", teacher.Config.NumLayers, [], new StudentUnderTest(teacher, null)),
            };
            foreach (var (path, mask) in masks)
                entries.Add((Path.GetFileName(path), mask.Method, mask.Keep, mask.Dropped, new StudentUnderTest(teacher, mask.ToLayerMask())));
            foreach (var s in students)
                entries.Add((Path.GetFileName(Path.GetDirectoryName(s.Config.SourcePath))!, "student", s.Config.NumLayers, null, new StudentUnderTest(s, null)));
            var results = TeacherAgreement.EvaluateMany(teacher, null, entries.Select(e => e.Model).ToList(), tokens, window, maxTokens, progress);
            return entries.Select((e, i) => new ComparisonRow(e.Name, e.Method, e.Layers, e.Dropped, results[i])).ToList();
        }
        finally
        {
            foreach (var s in students) s.Dispose();
        }
    }
}
