using System.CommandLine;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Qcow;

namespace KvmOvercommit.Cli;

/// <summary>`kvmoc qcow info` (Get-QcowImage) and `kvmoc qcow overlay` (New-QcowOverlay).</summary>
public sealed class QcowCli : ICliCommandProvider
{
    static readonly string[] Columns = { "Path", "Format", "VirtualSize", "FileSize", "BackingFile", "InUse" };

    public IEnumerable<Command> Commands(CliContext ctx)
    {
        var qcow = new Command("qcow", "qcow2 images: inspect (info) and create thin overlays on a base image (overlay).");

        var info = new Command("info", "Read image headers and backing chains (Get-QcowImage).");
        var infoPaths = new Argument<string[]>("path") { Description = "Image files (wildcards allowed). Also as --path.", Arity = ArgumentArity.ZeroOrMore };
        var infoPathOpt = new Option<string[]>("--path") { Description = "An image file, as the positional PATH (Get-QcowImage -Path); repeatable." };
        info.Arguments.Add(infoPaths);
        info.Options.Add(infoPathOpt);
        ctx.SetAction(info, (parse, run, ct) =>
        {
            var results = new List<QcowImage>();
            var patterns = Paths(parse, infoPaths, infoPathOpt);
            foreach (var pattern in patterns)
            {
                foreach (var path in ExpandWildcard(pattern, run))
                {
                    ct.ThrowIfCancellationRequested();
                    try { results.Add(QcowReader.Read(path, run)); }
                    catch (KvmOcException e) { run.Error(e); }
                }
            }
            if (results.Count > 0) run.WriteResults(results, Columns);
            return Task.CompletedTask;
        });
        qcow.Subcommands.Add(info);

        var overlay = new Command("overlay", "Create qcow2 v3 overlays backed by one image, as `qemu-img create -f qcow2 -b B -F fmt` does (New-QcowOverlay).");
        var paths = new Argument<string[]>("path") { Description = "Overlay files to create. Also as --path.", Arity = ArgumentArity.ZeroOrMore };
        var pathOpt = new Option<string[]>("--path") { Description = "An overlay file to create, as the positional PATH (New-QcowOverlay -Path); repeatable." };
        var backing = new Option<string>("--backing-path", "-b", "--parent-path") { Description = "The backing (base) image.", Required = true };
        var format = new Option<string?>("--backing-format", "-F") { Description = "Backing format (qcow2, raw); probed from the file when omitted." };
        var size = new Option<long?>("--size-bytes") { Description = "Virtual size in bytes (default: the backing image's)." };
        var relative = new Option<bool>("--relative-backing-path") { Description = "Store the backing path relative to the overlay's folder." };
        var cluster = new Option<int?>("--cluster-size") { Description = "Cluster size in bytes (4096 … 2097152, default 65536)." };
        var force = new Option<bool>("--force") { Description = "Replace existing files (never an image in use by QEMU)." };
        var whatIf = new Option<bool>("--what-if") { Description = "Show what would be created; write nothing." };
        overlay.Arguments.Add(paths);
        foreach (var o in new Option[] { pathOpt, backing, format, size, relative, cluster, force, whatIf }) overlay.Options.Add(o);
        ctx.SetAction(overlay, (parse, run, ct) =>
        {
            var options = new QcowOverlayOptions
            {
                BackingFormat = parse.GetValue(format),
                SizeBytes = parse.GetValue(size),
                RelativeBackingPath = parse.GetValue(relative),
                ClusterSize = parse.GetValue(cluster),
                Force = parse.GetValue(force),
            };
            var targets = Paths(parse, paths, pathOpt);
            if (parse.GetValue(whatIf))
            {
                var b = QcowOverlayWriter.OpenBacking(parse.GetValue(backing)!, options.BackingFormat, run);
                foreach (var t in targets)
                {
                    try { var plan = QcowOverlayWriter.Plan(t, b, options, run); run.Out.WriteLine($"What if: {plan.Action}: {plan.Path}"); }
                    catch (KvmOcException e) { run.Error(e); }
                }
                return Task.CompletedTask;
            }
            var results = QcowOverlayWriter.CreateMany(targets, parse.GetValue(backing)!, options, run, run.Error);
            if (results.Any()) run.WriteResults(results, Columns);
            return Task.CompletedTask;
        });
        qcow.Subcommands.Add(overlay);
        yield return qcow;
    }

    /// <summary>The positional paths and the --path ones; none is a usage error (exit 2).</summary>
    static string[] Paths(ParseResult parse, Argument<string[]> positional, Option<string[]> option)
    {
        var all = (parse.GetValue(positional) ?? Array.Empty<string>()).Concat(parse.GetValue(option) ?? Array.Empty<string>()).ToArray();
        if (all.Length == 0)
            throw new KvmOcException(ErrorKind.InvalidArgument, "PathRequired", "Give at least one image path (positional, or --path).", null);
        return all;
    }

    /// <summary>The shell expands wildcards; this handles quoted patterns in the file-name part.</summary>
    static IEnumerable<string> ExpandWildcard(string pattern, CliRun run)
    {
        if (!Wildcard.ContainsWildcard(System.IO.Path.GetFileName(pattern)))
            return new[] { pattern };
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(pattern)) ?? "/";
        var w = new Wildcard(System.IO.Path.GetFileName(pattern));
        var found = Directory.Exists(dir) ? Directory.EnumerateFiles(dir).Where(f => w.IsMatch(System.IO.Path.GetFileName(f))).OrderBy(f => f, StringComparer.Ordinal).ToList() : new List<string>();
        if (found.Count == 0)
            run.Error(new KvmOcException(ErrorKind.NotFound, "PathNotFound", $"No file matches '{pattern}'.", pattern, "Check the path and the wildcard pattern."));
        return found;
    }
}
