using KvmOvercommit.HelpGen;

// KvmOvercommit.HelpGen <path/to/KvmOvercommit.dll> <output KvmOvercommit.dll-Help.xml>
// Reads the module with MetadataLoadContext and its XML doc comments beside it; writes MAML help.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: KvmOvercommit.HelpGen <KvmOvercommit.dll> <out/KvmOvercommit.dll-Help.xml>");
    return 2;
}
try
{
    using var module = ModuleInspector.Open(args[0]);
    var docs = XmlDocs.ForAssembly(args[0]);
    var maml = MamlWriter.Build(module.Cmdlets, docs);
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[1]))!);
    maml.Save(args[1]);
    Console.WriteLine($"HelpGen: {module.Cmdlets.Count} cmdlet(s) → {args[1]}");
    return 0;
}
catch (Exception e) when (e is IOException or BadImageFormatException or FileNotFoundException or System.Xml.XmlException)
{
    Console.Error.WriteLine($"HelpGen: {e.Message}");
    return 1;
}
