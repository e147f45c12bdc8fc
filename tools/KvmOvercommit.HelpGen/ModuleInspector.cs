using System.Collections.ObjectModel;
using System.Reflection;
using System.Runtime.InteropServices;

namespace KvmOvercommit.HelpGen;

/// <summary>
/// Reads the binary module's cmdlets without a PowerShell runtime: the module, the engine, the PowerShellStandard
/// reference assembly and the running runtime's assemblies go into a MetadataLoadContext, and every attribute is read
/// as CustomAttributeData (never instantiated).
/// </summary>
public sealed class ModuleInspector : IDisposable
{
    public const string Sma = "System.Management.Automation";
    public const string AllParameterSets = "__AllParameterSets";

    readonly MetadataLoadContext _mlc;

    /// <summary>The module assembly (KvmOvercommit.dll).</summary>
    public Assembly Module { get; }
    /// <summary>The engine assembly (KvmOvercommit.Engine.dll) beside the module, if it is there.</summary>
    public Assembly? Engine { get; }
    /// <summary>Path of the module assembly.</summary>
    public string ModulePath { get; }
    /// <summary>Every cmdlet class of the module, sorted by cmdlet name.</summary>
    public IReadOnlyList<CmdletModel> Cmdlets { get; }
    /// <summary>Types that carry [Cmdlet] but do not derive from Cmdlet, or concrete Cmdlet classes without [Cmdlet].</summary>
    public IReadOnlyList<string> Misfits { get; }

    ModuleInspector(string modulePath, string smaPath)
    {
        ModulePath = Path.GetFullPath(modulePath);
        var dir = Path.GetDirectoryName(ModulePath)!;
        var paths = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var f in Directory.GetFiles(RuntimeEnvironment.GetRuntimeDirectory(), "*.dll")) paths[Path.GetFileName(f)] = f;
        // The module folder wins over the runtime for its own assemblies; the PowerShell reference assembly wins over a copy in bin.
        foreach (var f in Directory.GetFiles(dir, "*.dll")) paths[Path.GetFileName(f)] = f;
        paths[Path.GetFileName(smaPath)] = smaPath;
        _mlc = new MetadataLoadContext(new PathAssemblyResolver(paths.Values));
        Module = _mlc.LoadFromAssemblyPath(ModulePath);
        var enginePath = Path.Combine(dir, "KvmOvercommit.Engine.dll");
        Engine = File.Exists(enginePath) ? _mlc.LoadFromAssemblyPath(enginePath) : null;

        var cmdletBase = _mlc.LoadFromAssemblyName(Sma).GetType("System.Management.Automation.Cmdlet", throwOnError: true)!;
        var cmdlets = new List<CmdletModel>();
        var misfits = new List<string>();
        foreach (var t in LoadableTypes(Module))
        {
            var attr = Find(t.GetCustomAttributesData(), "CmdletAttribute", inherit: false);
            var isCmdlet = cmdletBase.IsAssignableFrom(t);
            if (attr is null)
            {
                if (isCmdlet && !t.IsAbstract && t.IsPublic) misfits.Add($"{t.FullName} derives from Cmdlet but has no [Cmdlet] attribute");
                continue;
            }
            if (!isCmdlet) { misfits.Add($"{t.FullName} has [Cmdlet] but does not derive from Cmdlet"); continue; }
            if (t.IsAbstract || !t.IsPublic) { misfits.Add($"{t.FullName} has [Cmdlet] but is abstract or not public"); continue; }
            cmdlets.Add(ReadCmdlet(t, attr));
        }
        Cmdlets = cmdlets.OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase).ToList();
        Misfits = misfits;
    }

    /// <summary>Opens the module at <paramref name="modulePath"/>; the PowerShell reference assembly comes from the NuGet cache.</summary>
    public static ModuleInspector Open(string modulePath, string? smaPath = null) => new(modulePath, smaPath ?? FindSma());

    /// <summary>System.Management.Automation.dll of PowerShellStandard.Library in the NuGet package cache: the version the module compiles against (5.1.1), else any restored one.</summary>
    public static string FindSma()
    {
        var root = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(root)) root = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        static string Dll(string versionDir) => Path.Combine(versionDir, "lib", "netstandard2.0", "System.Management.Automation.dll");
        var package = Path.Combine(root, "powershellstandard.library");
        var p = Dll(Path.Combine(package, "5.1.1"));
        if (File.Exists(p)) return p;
        var any = Directory.Exists(package) ? Directory.GetDirectories(package).Select(Dll).Where(File.Exists).OrderDescending(StringComparer.Ordinal).FirstOrDefault() : null;
        return any ?? throw new FileNotFoundException($"PowerShellStandard.Library reference assembly not found at {p} (restore the module project first)", p);
    }

    /// <summary>Finds a type by full name in the module or the engine.</summary>
    public Type? FindType(string fullName) => Module.GetType(fullName) ?? Engine?.GetType(fullName);

    /// <summary>Every public type of the engine.</summary>
    public IEnumerable<Type> EngineTypes => Engine is null ? [] : LoadableTypes(Engine);

    /// <summary>A type of the .NET runtime (e.g. System.IO.FileInfo in System.Private.CoreLib), or null.</summary>
    public Type? RuntimeType(string assemblyName, string fullName)
    {
        try { return _mlc.LoadFromAssemblyName(assemblyName).GetType(fullName); }
        catch (FileNotFoundException) { return null; }
    }

    /// <summary>A type from the PowerShell reference assembly.</summary>
    public Type SmaType(string fullName) => _mlc.LoadFromAssemblyName(Sma).GetType(fullName, throwOnError: true)!;

    static IEnumerable<Type> LoadableTypes(Assembly a)
    {
        try { return a.GetTypes(); }
        catch (ReflectionTypeLoadException e) { return e.Types.Where(t => t is not null)!; }
    }

    static CustomAttributeData? Find(IEnumerable<CustomAttributeData> attrs, string name, bool inherit = true) =>
        attrs.FirstOrDefault(a => a.AttributeType.Name == name && a.AttributeType.Namespace == Sma);

    static IEnumerable<CustomAttributeData> FindAll(IEnumerable<CustomAttributeData> attrs, string name) =>
        attrs.Where(a => a.AttributeType.Name == name && a.AttributeType.Namespace == Sma);

    static object? Named(CustomAttributeData a, string name) =>
        a.NamedArguments.Where(n => n.MemberName == name).Select(n => n.TypedValue.Value).FirstOrDefault();

    /// <summary>The strings of a `params string[]` constructor argument (or a single string).</summary>
    static List<string> Strings(object? value) => value switch
    {
        null => [],
        string s => [s],
        ReadOnlyCollection<CustomAttributeTypedArgument> items => items.Select(i => i.Value as string).Where(s => s is not null).Select(s => s!).ToList(),
        _ => [],
    };

    CmdletModel ReadCmdlet(Type t, CustomAttributeData attr)
    {
        var verb = (string)attr.ConstructorArguments[0].Value!;
        var noun = (string)attr.ConstructorArguments[1].Value!;
        var impactValue = Named(attr, "ConfirmImpact");
        var impact = impactValue is null ? "Medium" : ((int)impactValue switch { 0 => "None", 1 => "Low", 2 => "Medium", 3 => "High", var n => n.ToString() });
        var outputs = new List<OutputTypeModel>();
        for (var type = t; type is not null && type.Assembly == Module; type = type.BaseType)
        {
            foreach (var o in FindAll(type.GetCustomAttributesData(), "OutputTypeAttribute"))
            {
                var sets = Strings(Named(o, "ParameterSetName"));
                foreach (var arg in o.ConstructorArguments)
                {
                    if (arg.Value is ReadOnlyCollection<CustomAttributeTypedArgument> items)
                    {
                        foreach (var i in items)
                        {
                            if (i.Value is Type ot) outputs.Add(new OutputTypeModel(ot, ot.FullName!, sets));
                            else if (i.Value is string s) outputs.Add(new OutputTypeModel(FindType(s), s, sets));
                        }
                    }
                    else if (arg.Value is Type ot) outputs.Add(new OutputTypeModel(ot, ot.FullName!, sets));
                    else if (arg.Value is string s) outputs.Add(new OutputTypeModel(FindType(s), s, sets));
                }
            }
        }

        var parameters = new List<ParameterModel>();
        foreach (var p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var attrs = p.GetCustomAttributesData();
            var pas = FindAll(attrs, "ParameterAttribute").ToList();
            if (pas.Count == 0) continue;
            var sets = pas.Select(pa =>
            {
                var pos = Named(pa, "Position");
                return new ParameterSetModel(
                    Named(pa, "ParameterSetName") as string ?? AllParameterSets,
                    Named(pa, "Mandatory") is true,
                    pos is int i && i != int.MinValue ? i : null,
                    Named(pa, "ValueFromPipeline") is true,
                    Named(pa, "ValueFromPipelineByPropertyName") is true,
                    Named(pa, "ValueFromRemainingArguments") is true,
                    Named(pa, "HelpMessage") as string);
            }).ToList();
            var aliases = FindAll(attrs, "AliasAttribute").SelectMany(a => a.ConstructorArguments.SelectMany(c => Strings(c.Value))).ToList();
            var validateSet = FindAll(attrs, "ValidateSetAttribute").SelectMany(a => a.ConstructorArguments.SelectMany(c => Strings(c.Value))).ToList();
            if (validateSet.Count == 0)
            {
                var underlying = Nullable.GetUnderlyingType(p.PropertyType) ?? (p.PropertyType.IsArray ? p.PropertyType.GetElementType()! : p.PropertyType);
                if (underlying.IsEnum) validateSet = underlying.GetEnumNames().ToList();
            }
            parameters.Add(new ParameterModel(p.Name, p.PropertyType, p, aliases, sets,
                Find(attrs, "SupportsWildcardsAttribute") is not null, validateSet));
        }
        return new CmdletModel(verb, noun, t, Named(attr, "SupportsShouldProcess") is true, impact,
            Named(attr, "DefaultParameterSetName") as string, outputs, parameters);
    }

    /// <inheritdoc />
    public void Dispose() => _mlc.Dispose();
}

/// <summary>One cmdlet as its attributes describe it.</summary>
public sealed record CmdletModel(string Verb, string Noun, Type Type, bool SupportsShouldProcess, string ConfirmImpact,
    string? DefaultParameterSetName, IReadOnlyList<OutputTypeModel> OutputTypes, IReadOnlyList<ParameterModel> Parameters)
{
    /// <summary>Verb-Noun.</summary>
    public string Name => $"{Verb}-{Noun}";

    /// <summary>The named parameter sets (without __AllParameterSets); empty when the cmdlet has only the default one.</summary>
    public IReadOnlyList<string> ParameterSets
    {
        get
        {
            var named = Parameters.SelectMany(p => p.Sets).Select(s => s.SetName).Where(s => s != ModuleInspector.AllParameterSets).Distinct().ToList();
            if (DefaultParameterSetName is not null && named.Remove(DefaultParameterSetName)) named.Insert(0, DefaultParameterSetName);
            return named;
        }
    }

    /// <summary>Parameters usable in a parameter set, with the attribute that applies there.</summary>
    public IEnumerable<(ParameterModel Parameter, ParameterSetModel Set)> InSet(string? setName) =>
        Parameters.Select(p => (p, p.Sets.FirstOrDefault(s => s.SetName == setName) ?? p.Sets.FirstOrDefault(s => s.SetName == ModuleInspector.AllParameterSets)))
            .Where(x => x.Item2 is not null)
            .Select(x => (x.p, x.Item2!));

    /// <override/>
    public override string ToString() => Name;
}

/// <summary>A type named by [OutputType]; Type is null when a string names a type that cannot be found.</summary>
public sealed record OutputTypeModel(Type? Type, string Name, IReadOnlyList<string> ParameterSets);

/// <summary>One cmdlet parameter.</summary>
public sealed record ParameterModel(string Name, Type Type, PropertyInfo Property, IReadOnlyList<string> Aliases,
    IReadOnlyList<ParameterSetModel> Sets, bool SupportsWildcards, IReadOnlyList<string> ValidateSet)
{
    /// <summary>True if the parameter is a switch.</summary>
    public bool IsSwitch => Type.FullName == "System.Management.Automation.SwitchParameter";
    /// <summary>True if some set takes it from the pipeline by value.</summary>
    public bool ByValue => Sets.Any(s => s.ValueFromPipeline);
    /// <summary>True if some set takes it from the pipeline by property name.</summary>
    public bool ByPropertyName => Sets.Any(s => s.ValueFromPipelineByPropertyName);
    /// <summary>The name and every alias.</summary>
    public IEnumerable<string> Names => Aliases.Prepend(Name);
}

/// <summary>What one [Parameter] attribute says.</summary>
public sealed record ParameterSetModel(string SetName, bool Mandatory, int? Position, bool ValueFromPipeline,
    bool ValueFromPipelineByPropertyName, bool ValueFromRemainingArguments, string? HelpMessage);
