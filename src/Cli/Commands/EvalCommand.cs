using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Model.IO;
using E3.Model.Tokenization;
using E3.Pruning.Reports;

namespace E3.Cli.Commands;

/// <summary><c>e3 eval</c>: perplexity over a text file (tokenised with the model's tokenizer) or a token file.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var data = CommonOptions.Data();
        var drop = CommonOptions.Drop();
        var mask = new Option<string?>("--mask") { Description = "mask.json whose dropped layers to skip (instead of --drop); must match the model" };
        var teacher = new Option<string?>("--teacher") { Description = "Teacher model folder: also report KL(teacher‖model) and top-1 agreement (same vocabulary)" };
        var window = CommonOptions.Window();
        var maxTokens = CommonOptions.MaxTokens();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("eval", "Perplexity of the model, optionally with layers skipped, and its agreement with a teacher")
        {
            model, data, drop, mask, teacher, window, maxTokens, device, threads, json,
        };
        cmd.Validators.Add(r =>
        {
            if (r.GetResult(drop) != null && r.GetResult(mask) != null) r.AddError("--mask and --drop cannot be used together");
        });
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            string dir = p.GetValue(model)!, file = p.GetValue(data)!;
            using var backend = CliRunner.CreateBackend(p.GetValue(device)!, p.GetValue(threads));
            using var m = DecoderModel.Load(dir, backend);
            var (layers, method) = MaskSelection.Resolve(m.Config, p.GetValue(mask), p.GetValue(drop));
            int[] tokens = DataTokens.Read(file, dir, m.Config.VocabSize);
            long limit = CommonOptions.TokenLimit(p.GetValue(maxTokens));
            int windowSize = p.GetValue(window);
            string? teacherDir = p.GetValue(teacher);
            AgreementResult? agreement = null;
            PerplexityResult r;
            if (teacherDir != null)
            {
                using var t = DecoderModel.Load(teacherDir, backend);
                agreement = ConsoleProgress.Run("eval windows", "tokens", report => TeacherAgreement.EvaluateMany(t, null, [new StudentUnderTest(m, layers)], tokens,
                    windowSize, limit, (done, total) => report(done, total, (double)done * windowSize))[0]);
                r = agreement.Perplexity;
            }
            else r = Perplexity.Evaluate(m, tokens, layers, windowSize, limit);
            if (p.GetValue(json))
            {
                var o = new JsonObject
                {
                    ["perplexity"] = r.Perplexity, ["mean_nll"] = r.MeanNll, ["tokens"] = r.TokensScored, ["windows"] = r.Windows,
                    ["dropped"] = ResultJson.Array(layers.Dropped), ["layers"] = m.Config.NumLayers, ["method"] = method,
                };
                if (agreement != null)
                {
                    o["teacher"] = teacherDir;
                    o["kl"] = agreement.MeanKl;
                    o["top1_agreement"] = agreement.Top1Agreement;
                }
                CliRunner.WriteJson(o);
            }
            else
            {
                Console.Out.WriteLine($"perplexity {r.Perplexity:F4} (mean NLL {r.MeanNll:F4}) over {r.TokensScored} tokens in {r.Windows} windows; {layers}");
                if (agreement != null)
                    Console.Out.WriteLine($"KL(teacher‖model) {agreement.MeanKl:G6} nats/token, top-1 agreement {agreement.Top1Agreement:P2} (teacher {teacherDir})");
            }
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
