using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Pruning.Distill;
using E3.Model.IO;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;

namespace E3.Cli.Commands;

/// <summary><c>e3 train</c>: next-token cross-entropy training of every weight (it exists to make small models).</summary>
public static class TrainCommand
{
    /// <summary>The command, for the root of the <c>e3</c> command tree.</summary>
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var o = new TrainingCliOptions();
        o.Data.Required = true;
        var cmd = new Command("train", "Train every weight with next-token cross-entropy (checkpoints, --resume)") { model };
        foreach (var option in o.All) cmd.Options.Add(option);
        cmd.SetAction(p => CliRunner.Guard(() => Interruption.Run(cancel =>
        {
            string dir = p.GetValue(model)!, data = p.GetValue(o.Data)!, output = p.GetValue(o.Out)!;
            var settings = o.Settings(p);
            settings.Validate();
            using var backend = CliRunner.CreateTrainingBackend(p.GetValue(o.Device)!, p.GetValue(o.Threads), p.GetValue(o.Tf32));
            bool recompute = p.GetValue(o.ActivationCheckpointing);
            var config = ModelConfig.Load(dir);
            MemoryFit.Check("train", TrainingMemoryPlan.Create(config, settings.Sequence, settings.Batch,
                new TrainingOptions { Mode = TrainingMode.Train, Checkpointing = recompute }, MemoryFit.StoredWeights(dir, config), fusedHead: false,
                TrainingMemoryPlan.TargetOf(backend)), backend, CliRunner.Warning(Console.Error), recompute, canFreeze: false);
            using var student = DecoderModel.Load(dir, backend);
            int[] tokens = DataTokens.Read(data, dir, student.Config.VocabSize);
            var job = new TrainingJob
            {
                Student = student, StudentFolder = dir, Objective = new CrossEntropyObjective(LayerMask.All(student.Config.NumLayers).Gates.ToArray()),
                Tokens = tokens, DataSource = data, Settings = settings, CheckpointFolder = p.GetValue(o.Checkpoint), Resume = p.GetValue(o.Resume),
                ActivationCheckpointing = recompute,
                Output = output, ReplaceOutput = p.GetValue(o.Force), Inputs = [data], Identity = new JsonObject { ["command"] = "train" },
            };
            var outcome = TrainingConsole.Run("train", progress => TrainingRunner.Run(job, progress, cancel));
            TrainingConsole.Report("train", outcome, output, p.GetValue(o.Json));
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
