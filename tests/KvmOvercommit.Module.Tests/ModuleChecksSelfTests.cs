using KvmOvercommit.HelpGen;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>
/// Shows that the convention checks are real: a compiled module that follows every convention passes all of them, and
/// one that breaks them fails with the expected messages. (The real module on main may have few cmdlets; these do not
/// depend on it.)
/// </summary>
public class ModuleChecksSelfTests
{
    const string GoodSource = """
        using System.Management.Automation;
        [assembly: System.Reflection.AssemblyVersion("0.1.0.0")]
        namespace KvmOvercommit.Commands
        {
            /// <summary>A statistic.</summary>
            public class ZzTestStat
            {
                /// <summary>Name.</summary>
                public string Name { get; set; }
                /// <summary>Bytes saved.</summary>
                public long SavedBytes { get; set; }
            }

            /// <summary>Gets the test statistic.</summary>
            /// <remarks>Reads it.</remarks>
            /// <example><code>Get-ZzTestStat -Name a*</code><para>Gets the statistics whose name starts with a.</para></example>
            [Cmdlet(VerbsCommon.Get, "ZzTestStat")]
            [OutputType(typeof(ZzTestStat))]
            public sealed class GetZzTestStatCommand : PSCmdlet
            {
                /// <summary>Names, wildcards allowed.</summary>
                [Parameter(Position = 0)]
                [SupportsWildcards]
                public string[] Name { get; set; }
            }

            /// <summary>Sets the test tuning.</summary>
            /// <example><code>Get-ZzTestStat | Set-ZzTestTuning -PassThru</code><para>Sets it for every statistic.</para></example>
            [Cmdlet(VerbsCommon.Set, "ZzTestTuning", SupportsShouldProcess = true)]
            [OutputType(typeof(ZzTestStat))]
            public sealed class SetZzTestTuningCommand : PSCmdlet
            {
                /// <summary>The statistic's name.</summary>
                [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
                [Alias("StatName")]
                public string Name { get; set; }

                /// <summary>Returns the settings it replaced.</summary>
                [Parameter]
                public SwitchParameter PassThru { get; set; }
            }
        }
        """;

    const string GoodManifest = """
        # a comment, 'quotes' and all
        @{
            RootModule           = 'KvmOvercommit.dll'
            ModuleVersion        = '0.1.0'
            GUID                 = '5b0c7f0e-6a7d-4d55-9a1e-3f2b8c9d4e71'
            Description          = 'Fixture.'
            PowerShellVersion    = '7.4'
            CompatiblePSEditions = @('Core')
            FormatsToProcess     = @('KvmOvercommit.format.ps1xml')
            TypesToProcess       = 'KvmOvercommit.types.ps1xml'
            <# block
               comment #>
            CmdletsToExport      = @(
                'Get-ZzTestStat'
                'Set-ZzTestTuning'
            )
            FunctionsToExport    = @()
            VariablesToExport    = @()
            AliasesToExport      = @()
            PrivateData          = @{ PSData = @{ Tags = 'Linux', 'KVM', "PSEdition_Core" } }
        }
        """;

    static string Format(string typeNames, string columns, int headers = 2) => $"""
        <?xml version="1.0" encoding="utf-8"?>
        <Configuration><ViewDefinitions>
          <View>
            <Name>ZzTestStat</Name>
            <ViewSelectedBy>{typeNames}</ViewSelectedBy>
            <TableControl>
              <TableHeaders>{string.Concat(Enumerable.Repeat("<TableColumnHeader/>", headers))}</TableHeaders>
              <TableRowEntries><TableRowEntry><TableColumnItems>{columns}</TableColumnItems></TableRowEntry></TableRowEntries>
            </TableControl>
          </View>
        </ViewDefinitions></Configuration>
        """;

    static readonly string GoodFormat = Format(
        "<TypeName>KvmOvercommit.Commands.ZzTestStat</TypeName><TypeName>Deserialized.KvmOvercommit.Commands.ZzTestStat</TypeName>",
        "<TableColumnItem><PropertyName>Name</PropertyName></TableColumnItem><TableColumnItem><ScriptBlock>$_.SavedBytes / 1MB</ScriptBlock></TableColumnItem>");

    const string GoodTypes = """
        <?xml version="1.0" encoding="utf-8"?>
        <Types><Type><Name>KvmOvercommit.Commands.ZzTestStat</Name><Members>
          <AliasProperty><Name>Saved</Name><ReferencedMemberName>SavedBytes</ReferencedMemberName></AliasProperty>
        </Members></Type></Types>
        """;

    const string GoodReadme = """
        # Fixture
        ```powershell
        Get-ZzTestStat a* | Where-Object SavedBytes -gt 0 | Sort-Object Name |
            Set-ZzTestTuning -WhatIf
        $saved = Get-ZzTestStat; $saved | Set-ZzTestTuning   # a variable: its type is unknown, not checked
        Get-ZzTestStat | ForEach-Object { $_.Name } | Format-Table
        ```
        ```bash
        kvmoc zz stat | Set-ZzTestTuning   # not PowerShell
        ```
        """;

    static FixtureModule Good() => new(GoodSource, GoodManifest, GoodFormat, GoodTypes, GoodReadme);

    static List<string> All(ModuleUnderTest m) =>
        ModuleChecks.Discovery(m, null).Concat(ModuleChecks.Naming(m)).Concat(ModuleChecks.Contracts(m))
            .Concat(ModuleChecks.Manifest(m)).Concat(ModuleChecks.Formats(m)).Concat(ModuleChecks.Types(m))
            .Concat(ModuleChecks.Pipelines(m)).Concat(ModuleChecks.Help(m, MamlWriter.Build(m.Cmdlets, m.Docs))).ToList();

    [Fact]
    public void AModuleThatFollowsTheConventionsPassesEveryCheck()
    {
        using var f = Good();
        Assert.Equal(["Get-ZzTestStat", "Set-ZzTestTuning"], f.Module.Cmdlets.Select(c => c.Name));
        Assert.Empty(All(f.Module));
        Assert.Single(ModuleChecks.ReadmePipelines(f.Module.Readme), p => p.Segments.Count == 4);
        var get = f.Module.Cmdlets[0];
        var set = f.Module.Cmdlets[1];
        Assert.Equal("ZzTestStat.Name by property name to -Name", ModuleChecks.Binding(get, set));
        Assert.True(set.SupportsShouldProcess);
        Assert.Equal(["StatName"], set.Parameters.Single(p => p.Name == "Name").Aliases);
    }

    [Fact]
    public void GeneratedMamlCarriesTheCmdletMetadata()
    {
        using var f = Good();
        var maml = MamlWriter.Build(f.Module.Cmdlets, f.Module.Docs);
        System.Xml.Linq.XNamespace cmd = MamlWriter.Command, ml = MamlWriter.Maml, dev = MamlWriter.Dev;
        Assert.Equal("helpItems", maml.Root!.Name.LocalName);
        Assert.Equal("maml", maml.Root.Attribute("schema")?.Value);
        var commands = maml.Root.Elements(cmd + "command").ToDictionary(c => c.Element(cmd + "details")!.Element(cmd + "name")!.Value);
        Assert.Equal(["Get-ZzTestStat", "Set-ZzTestTuning"], commands.Keys);

        var get = commands["Get-ZzTestStat"];
        Assert.Equal("Gets the test statistic.", get.Element(cmd + "details")!.Element(ml + "description")!.Value);
        Assert.Equal("Reads it.", get.Element(ml + "description")!.Value);
        var name = get.Element(cmd + "parameters")!.Elements(cmd + "parameter").Single();
        Assert.Equal(("0", "true", "false", "False", "Names, wildcards allowed."),
            (name.Attribute("position")!.Value, name.Attribute("globbing")!.Value, name.Attribute("required")!.Value, name.Attribute("pipelineInput")!.Value, name.Element(ml + "description")!.Value));
        Assert.Equal("String[]", name.Element(cmd + "parameterValue")!.Value);
        var example = get.Element(cmd + "examples")!.Element(cmd + "example")!;
        Assert.Equal("Get-ZzTestStat -Name a*", example.Element(dev + "code")!.Value);
        Assert.Equal("Gets the statistics whose name starts with a.", example.Element(dev + "remarks")!.Value);
        Assert.Equal("KvmOvercommit.Commands.ZzTestStat", get.Element(cmd + "returnValues")!.Descendants(ml + "name").Single().Value);

        var set = commands["Set-ZzTestTuning"];
        var parameters = set.Element(cmd + "parameters")!.Elements(cmd + "parameter").ToDictionary(p => p.Element(ml + "name")!.Value);
        Assert.Equal(["Name", "PassThru", "WhatIf", "Confirm"], parameters.Keys);
        Assert.Equal(("true", "True (ByPropertyName)", "StatName"),
            (parameters["Name"].Attribute("required")!.Value, parameters["Name"].Attribute("pipelineInput")!.Value, parameters["Name"].Attribute("aliases")!.Value));
        Assert.Null(parameters["PassThru"].Element(cmd + "parameterValue")); // a switch takes no value
        Assert.Equal("Set-ZzTestTuning", set.Element(cmd + "syntax")!.Element(cmd + "syntaxItem")!.Element(ml + "name")!.Value);
        Assert.Contains("System.String (as property Name)", set.Element(cmd + "inputTypes")!.Value);
    }

    [Fact]
    public void BrokenCmdletsAreReported()
    {
        const string source = """
            using System.Management.Automation;
            namespace KvmOvercommit.Commands
            {
                /// <summary>Fetches.</summary>
                [Cmdlet("Fetch", "ZzThings")]
                public sealed class FetchZzThingsCommand : PSCmdlet { }

                /// <summary>Sets without -WhatIf.</summary>
                [Cmdlet(VerbsCommon.Set, "ZzWidget")]
                [OutputType(typeof(object))]
                public sealed class SetZzWidgetCommand : PSCmdlet
                {
                    /// <summary>One.</summary>
                    [Parameter(Position = 0)] public string A { get; set; }
                    /// <summary>Two.</summary>
                    [Parameter(Position = 0)] [Alias("A")] public string B { get; set; }
                }

                /// <summary>Clashes.</summary>
                [Cmdlet(VerbsCommon.Get, "Process")]
                [OutputType("KvmOvercommit.Engine.NoSuchType")]
                public sealed class GetProcessCommand : PSCmdlet { }

                /// <summary>Not a cmdlet.</summary>
                [Cmdlet(VerbsCommon.Get, "ZzOrphan")]
                public sealed class GetZzOrphanCommand { }
            }
            """;
        using var f = new FixtureModule(source, GoodManifest, GoodFormat, GoodTypes, GoodReadme);
        var naming = ModuleChecks.Naming(f.Module).ToList();
        var contracts = ModuleChecks.Contracts(f.Module).ToList();
        Assert.Contains("Fetch-ZzThings: 'Fetch' is not an approved verb", naming);
        Assert.Contains("Fetch-ZzThings: the noun 'ZzThings' looks plural; nouns are singular", naming);
        Assert.Contains("Get-Process: clashes with PowerShell's own Get-Process", naming);
        Assert.Contains(naming, p => p.StartsWith("Get-Process: the noun 'Process' needs a product/area prefix"));
        Assert.Contains("Fetch-ZzThings: no [OutputType]", contracts);
        Assert.Contains("Set-ZzWidget: [OutputType(Object)] says nothing; name the real type", contracts);
        Assert.Contains(contracts, p => p.StartsWith("Get-Process: [OutputType] names 'KvmOvercommit.Engine.NoSuchType'"));
        Assert.Contains("Set-ZzWidget: 'Set' changes state, so the cmdlet needs SupportsShouldProcess = true", contracts);
        Assert.Contains("Set-ZzWidget: Set cmdlets need a -PassThru switch", contracts);
        Assert.Contains("Set-ZzWidget: -A and -B both answer to 'A'", contracts);
        Assert.Contains("Set-ZzWidget: -A and -B share position 0", contracts);
        Assert.Contains("KvmOvercommit.Commands.GetZzOrphanCommand has [Cmdlet] but does not derive from Cmdlet", ModuleChecks.Discovery(f.Module, null));
        var help = ModuleChecks.Help(f.Module, MamlWriter.Build(f.Module.Cmdlets, f.Module.Docs)).ToList();
        Assert.Contains("Set-ZzWidget: no example (<example><code>…</code><para>…</para></example>)", help);
        var manifest = ModuleChecks.Manifest(f.Module).ToList();
        Assert.Contains("CmdletsToExport lacks Fetch-ZzThings", manifest);
        Assert.Contains("CmdletsToExport names Get-ZzTestStat, which is not a cmdlet of the module", manifest);
    }

    [Fact]
    public void UndocumentedParametersAndExamplesWithoutTheCmdletAreReported()
    {
        var source = GoodSource
            .Replace("/// <summary>Returns the settings it replaced.</summary>", "/// <summary></summary>")
            .Replace("<code>Get-ZzTestStat -Name a*</code>", "<code>Get-Date</code>")
            .Replace("<para>Sets it for every statistic.</para>", "");
        using var f = new FixtureModule(source, GoodManifest, GoodFormat, GoodTypes, GoodReadme);
        var help = ModuleChecks.Help(f.Module, MamlWriter.Build(f.Module.Cmdlets, f.Module.Docs)).ToList();
        Assert.Contains("Set-ZzTestTuning: -PassThru has no description (the property's <summary>)", help);
        Assert.Contains("Get-ZzTestStat: example 1 does not use Get-ZzTestStat", help);
        Assert.Contains("Set-ZzTestTuning: example 1 has no explanation (<para>)", help);
        Assert.Equal(3, help.Count);
    }

    [Fact]
    public void BrokenManifestIsReported()
    {
        var psd1 = GoodManifest
            .Replace("'7.4'", "'5.1'")
            .Replace("@('Core')", "@('Desktop', 'Core')")
            .Replace("'Set-ZzTestTuning'", "'Set-ZzTestTuning'\n'Remove-ZzGhost'\n'Get-ZzTestStat'")
            .Replace("FunctionsToExport    = @()", "FunctionsToExport    = '*'")
            .Replace("\"PSEdition_Core\"", "'PSEdition_Desktop'")
            .Replace("TypesToProcess       = 'KvmOvercommit.types.ps1xml'", "TypesToProcess       = @('KvmOvercommit.types.ps1xml', 'missing.ps1xml')");
        using var f = new FixtureModule(GoodSource, psd1, GoodFormat, GoodTypes, GoodReadme);
        var problems = ModuleChecks.Manifest(f.Module).ToList();
        Assert.Contains("PowerShellVersion is '5.1', not '7.4'", problems);
        Assert.Contains("CompatiblePSEditions is @(Desktop, Core), not @('Core')", problems);
        Assert.Contains("CmdletsToExport names Remove-ZzGhost, which is not a cmdlet of the module", problems);
        Assert.Contains("CmdletsToExport names Get-ZzTestStat 2 times", problems);
        Assert.Contains(problems, p => p.StartsWith("CmdletsToExport is not alphabetical"));
        Assert.Contains("FunctionsToExport must be @() in a binary module, not *", problems);
        Assert.Contains("PrivateData.PSData.Tags lacks 'PSEdition_Core'", problems);
        Assert.Contains("TypesToProcess names missing.ps1xml, which does not exist", problems);
        Assert.Equal(8, problems.Count);
    }

    [Fact]
    public void BrokenFormatViewsAreReported()
    {
        var format = Format(
            "<TypeName>KvmOvercommit.Commands.ZzTestStat</TypeName><TypeName>KvmOvercommit.Engine.Missing</TypeName><TypeName>Deserialized.KvmOvercommit.Engine.Missing</TypeName>",
            "<TableColumnItem><PropertyName>Name</PropertyName></TableColumnItem><TableColumnItem><PropertyName>SavedMiB</PropertyName></TableColumnItem><TableColumnItem><PropertyName>Saved</PropertyName></TableColumnItem>");
        using var f = new FixtureModule(GoodSource, GoodManifest, format, GoodTypes, GoodReadme);
        var problems = ModuleChecks.Formats(f.Module).ToList();
        Assert.Contains(problems, p => p.EndsWith("view ZzTestStat lists KvmOvercommit.Commands.ZzTestStat but not Deserialized.KvmOvercommit.Commands.ZzTestStat"));
        Assert.Contains(problems, p => p.EndsWith("view ZzTestStat names type KvmOvercommit.Engine.Missing, which is not a module or engine type"));
        Assert.Contains(problems, p => p.EndsWith("view ZzTestStat shows SavedMiB, which KvmOvercommit.Commands.ZzTestStat does not have"));
        Assert.Contains(problems, p => p.EndsWith("view ZzTestStat has 2 headers but 3 columns"));
        Assert.Contains(problems, p => p.StartsWith("KvmOvercommit.format.ps1xml:"));
        Assert.Equal(4, problems.Count); // "Saved" is the types file's alias: no problem

        using var noView = new FixtureModule(GoodSource, GoodManifest, Format("", ""), GoodTypes, GoodReadme);
        Assert.Contains("Get-ZzTestStat: output type KvmOvercommit.Commands.ZzTestStat has no format view", ModuleChecks.Formats(noView.Module));
    }

    [Fact]
    public void BrokenTypesFileIsReported()
    {
        var types = GoodTypes.Replace("<ReferencedMemberName>SavedBytes", "<ReferencedMemberName>SavedByte")
            .Replace("</Type></Types>", "</Type><Type><Name>KvmOvercommit.Engine.Nope</Name></Type></Types>");
        using var f = new FixtureModule(GoodSource, GoodManifest, GoodFormat, types, GoodReadme);
        var problems = ModuleChecks.Types(f.Module).ToList();
        Assert.Contains(problems, p => p.EndsWith("alias Saved refers to SavedByte, which ZzTestStat does not have"));
        Assert.Contains(problems, p => p.EndsWith("type KvmOvercommit.Engine.Nope is not a module or engine type"));
    }

    [Fact]
    public void ReadmePipelinesThatCannotBindAreReported()
    {
        const string readme = """
            ```powershell
            PS> Get-ZzTestStat | Select-Object -First 1 | Get-ZzTestStat
            Get-ZzTestStat | Select-Object SavedBytes | Set-ZzTestTuning
            Get-ZzNothing | Set-ZzTestTuning
            Get-ChildItem /srv/*.qcow2 | Set-ZzTestTuning
            Get-Process qemu* | Set-ZzTestTuning
            ```
            """;
        using var f = new FixtureModule(GoodSource, GoodManifest, GoodFormat, GoodTypes, readme);
        var problems = ModuleChecks.Pipelines(f.Module).ToList();
        Assert.Contains(problems, p => p.StartsWith("README.md:2: Get-ZzTestStat | Get-ZzTestStat — no output property of ZzTestStat binds"));
        Assert.Contains("README.md:4: Get-ZzNothing is not a cmdlet of the module (nor a PowerShell command the checks know)", problems);
        Assert.Contains(problems, p => p.StartsWith("README.md:6: Get-Process | Set-ZzTestTuning — no output property of Process binds"));
        Assert.Equal(3, problems.Count); // FileInfo.Name binds to -Name; Process has ProcessName, not Name // Select-Object with properties makes new objects: that pipeline is not judged
    }

    [Fact]
    public void HelpExamplePipelinesAreCheckedToo()
    {
        var source = GoodSource.Replace("<code>Get-ZzTestStat | Set-ZzTestTuning -PassThru</code>",
            "<code>$x = 1\n/// Get-ZzTestStat |\n///     Get-ZzTestStat -Name b | Set-ZzTestTuning</code>");
        using var f = new FixtureModule(source, GoodManifest, GoodFormat, GoodTypes, GoodReadme);
        var problems = ModuleChecks.Pipelines(f.Module).ToList();
        Assert.Single(problems);
        Assert.StartsWith("help of Set-ZzTestTuning, example 1, line 2: Get-ZzTestStat | Get-ZzTestStat — no output property", problems[0]);
    }

    [Fact]
    public void PipelineSplittingKeepsScriptBlocksAndStringsWhole()
    {
        Assert.Equal(["Get-A", "Where-Object { $_.X -eq 'a|b' }", "Set-B"], ModuleChecks.SplitPipeline("Get-A | Where-Object { $_.X -eq 'a|b' } | Set-B"));
        Assert.Equal(["Get-C", "Set-D"], ModuleChecks.SplitPipeline("Get-A | Set-B; Get-C | Set-D"));
    }
}
