using System.Collections;
using System.Reflection;
using System.Text.Json;
using KvmOvercommit.Cli;
using KvmOvercommit.Engine.Fleet;

namespace KvmOvercommit.Engine.Tests.Fleet;

/// <summary>
/// Issue 6: "every output type round-trips through JSON with nothing lost". Which types are output types:
/// <list type="bullet">
/// <item>every engine type marked [OutputObject] (what the module writes and kvmoc prints) — these must also be plain
/// data (no streams, processes, tasks, handles, DateTime, object);</item>
/// <item>every data-looking type the engine's public API returns (method return types and their element types, and
/// the property types of those, found by reflection), marked or not — so a new result type is covered the day it
/// is added, before anyone remembers the marker. "Data-looking": a public non-abstract class, struct or record in a
/// KvmOvercommit.Engine.&lt;Area&gt; namespace, not an exception or attribute, all of whose public properties are
/// plain data, with a settable property or a constructor whose parameters are its properties.</item>
/// </list>
/// Each type is filled by reflection with non-default values (nested objects, lists, dictionaries, nullables, UTC
/// times, time spans, enums), serialized with kvmoc's own JsonOptions, deserialized and compared property by property.
/// Get-only collections are filled too: if System.Text.Json cannot put their items back, the test says so.
/// </summary>
public class JsonRoundTripTests
{
    static readonly Assembly Engine = typeof(KvmOcException).Assembly;

    public static IEnumerable<Type> MarkedTypes() => Engine.GetTypes().Where(t => t.IsDefined(typeof(OutputObjectAttribute), false)).OrderBy(t => t.FullName, StringComparer.Ordinal);

    public static IEnumerable<Type> ApiDataTypes()
    {
        var found = new HashSet<Type>();
        var queue = new Queue<Type>();
        void Offer(Type? t)
        {
            foreach (var c in Unwrap(t))
                if (IsAreaDataType(c) && found.Add(c)) queue.Enqueue(c);
        }
        foreach (var t in Engine.GetExportedTypes())
        {
            foreach (var m in t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
                if (!m.IsSpecialName) Offer(m.ReturnType);
            foreach (var p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
                Offer(p.PropertyType);
        }
        while (queue.Count > 0)
            foreach (var p in DataProperties(queue.Dequeue())) Offer(p.PropertyType);
        return found.OrderBy(t => t.FullName, StringComparer.Ordinal);
    }

    public static IEnumerable<object[]> OutputTypeNames() => MarkedTypes().Union(ApiDataTypes()).Select(t => new object[] { t.FullName! });
    public static IEnumerable<object[]> MarkedTypeNames() => MarkedTypes().Select(t => new object[] { t.FullName! });

    /// <summary>
    /// Every type a cmdlet declares in [OutputType] (read from the module's source, which this project does not
    /// reference) is one of the types round-tripped here, so a new cmdlet's output cannot slip past the discovery.
    /// </summary>
    [Fact]
    public void EveryCmdletOutputTypeIsRoundTripped()
    {
        var declared = Directory.EnumerateFiles(Path.Combine(Infrastructure.Fixture.RepoRoot(), "src", "KvmOvercommit", "Commands"), "*.cs")
            .SelectMany(f => System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(f), @"OutputType\(typeof\((\w+)\)").Select(m => m.Groups[1].Value))
            .Where(n => n != "string").ToHashSet(StringComparer.Ordinal);
        Assert.True(declared.Count >= 15, $"found only {declared.Count} [OutputType] declarations");
        var covered = OutputTypeNames().Select(o => ((string)o[0]).Split('.').Last()).ToHashSet(StringComparer.Ordinal);
        Assert.Empty(declared.Where(n => !covered.Contains(n)));
    }

    [Fact]
    public void DiscoveryFindsTheFleetOutputs()
    {
        Assert.Contains(typeof(DnsmasqLease), MarkedTypes());
        Assert.Contains(typeof(AnsibleInventoryWriter.Host), ApiDataTypes()); // returned by BuildHosts, unmarked
        Assert.DoesNotContain(typeof(DnsmasqLeaseReader), ApiDataTypes());
        Assert.DoesNotContain(typeof(KvmOcException), ApiDataTypes());
    }

    [Theory]
    [MemberData(nameof(OutputTypeNames))]
    public void RoundTripsThroughCliJsonWithNothingLost(string typeName)
    {
        var type = Engine.GetType(typeName, throwOnError: true)!;
        var original = Filler.Construct(type, depth: 0);
        var json = CliOutput.ToJson(original);
        var back = JsonSerializer.Deserialize(json, type, CliOutput.JsonOptions);
        var differences = new List<string>();
        DeepCompare(original, back, type.Name, differences);
        Assert.True(differences.Count == 0, $"{type.Name} lost data through JSON:\n  {string.Join("\n  ", differences)}\nJSON:\n{json}");
    }

    [Theory]
    [MemberData(nameof(MarkedTypeNames))]
    public void OutputTypesArePlainData(string typeName)
    {
        var type = Engine.GetType(typeName, throwOnError: true)!;
        Assert.True(type.IsVisible && !type.IsAbstract, $"{type.Name} must be public and concrete");
        var problems = new List<string>();
        foreach (var p in DataProperties(type)) CheckPlain(p.PropertyType, $"{type.Name}.{p.Name}", problems, new HashSet<Type> { type });
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void TheCheckerCatchesWhatItShould()
    {
        var problems = new List<string>();
        foreach (var p in DataProperties(typeof(BadOutput))) CheckPlain(p.PropertyType, p.Name, problems, new HashSet<Type>());
        Assert.Equal(new[] { "When", "Data", "Stream", "Work", "Handle" }, problems.Select(x => x.Split(':')[0]));

        // LossyOutput is this test's own type, not in kvmoc's generated metadata: the same options plus reflection for it.
        var options = new JsonSerializerOptions(CliOutput.JsonOptions) { TypeInfoResolver = System.Text.Json.Serialization.Metadata.JsonTypeInfoResolver.Combine(CliOutput.JsonOptions.TypeInfoResolver, new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver()) };
        var lossy = Filler.Construct(typeof(LossyOutput), 0);
        var back = JsonSerializer.Deserialize(JsonSerializer.Serialize(lossy, options), typeof(LossyOutput), options);
        var differences = new List<string>();
        DeepCompare(lossy, back, "LossyOutput", differences);
        Assert.Equal(new[] { "LossyOutput.Hidden", "LossyOutput.Items" }, differences.Select(d => d.Split(':')[0]).OrderBy(d => d));
    }

    public sealed class BadOutput
    {
        public DateTime When { get; set; }
        public object? Data { get; set; }
        public Stream? Stream { get; set; }
        public Task? Work { get; set; }
        public IntPtr Handle { get; set; }
        public string Fine { get; set; } = "";
    }

    public sealed class LossyOutput
    {
        [System.Text.Json.Serialization.JsonIgnore] public string Hidden { get; set; } = "";
        public IReadOnlyList<string> Items { get; } = new List<string>();
        public string Kept { get; set; } = "";
    }

    // ---- what counts as data ----

    static IEnumerable<PropertyInfo> DataProperties(Type t) => t.GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.GetIndexParameters().Length == 0 && p.GetMethod is { IsPublic: true });

    static bool IsAreaDataType(Type t)
    {
        if (t.Assembly != Engine || !t.IsVisible || t.IsAbstract || t.IsInterface || t.IsEnum || t.IsGenericTypeDefinition || t.ContainsGenericParameters) return false;
        if (t.Namespace is null || !t.Namespace.StartsWith("KvmOvercommit.Engine.", StringComparison.Ordinal)) return false;
        if (typeof(Exception).IsAssignableFrom(t) || typeof(Attribute).IsAssignableFrom(t) || typeof(Delegate).IsAssignableFrom(t)) return false;
        var props = DataProperties(t).ToList();
        if (props.Count == 0) return false;
        var problems = new List<string>();
        foreach (var p in props) CheckPlain(p.PropertyType, p.Name, problems, new HashSet<Type> { t });
        if (problems.Count > 0) return false;
        if (props.Any(p => p.SetMethod is { IsPublic: true })) return true;
        var names = props.Select(p => p.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        return t.GetConstructors().Any(c => c.GetParameters().Length > 0 && c.GetParameters().All(p => names.Contains(p.Name!)));
    }

    static IEnumerable<Type> Unwrap(Type? t)
    {
        if (t is null || t == typeof(void)) yield break;
        if (t.IsByRef || t.IsPointer) t = t.GetElementType()!;
        if (t.IsArray) { foreach (var x in Unwrap(t.GetElementType())) yield return x; yield break; }
        if (t.IsGenericType && t.Assembly != Engine)
        {
            foreach (var a in t.GetGenericArguments()) foreach (var x in Unwrap(a)) yield return x;
            yield break;
        }
        yield return t;
    }

    static readonly HashSet<Type> Scalars = new()
    {
        typeof(bool), typeof(byte), typeof(sbyte), typeof(short), typeof(ushort), typeof(int), typeof(uint), typeof(long), typeof(ulong),
        typeof(float), typeof(double), typeof(decimal), typeof(char), typeof(string), typeof(DateTimeOffset), typeof(TimeSpan), typeof(Guid),
    };

    static readonly Type[] ListShapes = { typeof(List<>), typeof(IList<>), typeof(IReadOnlyList<>), typeof(ICollection<>), typeof(IReadOnlyCollection<>), typeof(IEnumerable<>) };
    static readonly Type[] DictShapes = { typeof(Dictionary<,>), typeof(IDictionary<,>), typeof(IReadOnlyDictionary<,>) };

    static void CheckPlain(Type t, string path, List<string> problems, HashSet<Type> visiting)
    {
        var u = Nullable.GetUnderlyingType(t) ?? t;
        if (Scalars.Contains(u) || u.IsEnum) return;
        if (u == typeof(DateTime)) { problems.Add($"{path}: DateTime — use DateTimeOffset (UTC) so the offset survives remoting and JSON"); return; }
        if (u.IsArray) { CheckPlain(u.GetElementType()!, path + "[]", problems, visiting); return; }
        if (u.IsGenericType && ListShapes.Contains(u.GetGenericTypeDefinition())) { CheckPlain(u.GetGenericArguments()[0], path + "[]", problems, visiting); return; }
        if (u.IsGenericType && DictShapes.Contains(u.GetGenericTypeDefinition()))
        {
            var ka = u.GetGenericArguments();
            if (ka[0] != typeof(string) && !ka[0].IsEnum) problems.Add($"{path}: dictionary keys must be strings (or enums)");
            CheckPlain(ka[1], path + "{}", problems, visiting);
            return;
        }
        if (u.Assembly == Engine && u.IsVisible && !u.IsAbstract && !u.IsInterface && !typeof(Exception).IsAssignableFrom(u) && !typeof(Delegate).IsAssignableFrom(u))
        {
            if (!visiting.Add(u)) return;
            foreach (var p in DataProperties(u)) CheckPlain(p.PropertyType, $"{path}.{p.Name}", problems, visiting);
            visiting.Remove(u);
            return;
        }
        problems.Add($"{path}: {u.Name} is not plain data (allowed: strings, numbers, enums, DateTimeOffset, TimeSpan, Guid, arrays/lists/string-keyed dictionaries of those, engine data types)");
    }

    // ---- deep comparison ----

    static void DeepCompare(object? expected, object? actual, string path, List<string> differences)
    {
        if (expected is null || actual is null)
        {
            if (!(expected is null && actual is null)) differences.Add($"{path}: expected {Show(expected)}, got {Show(actual)}");
            return;
        }
        var t = expected.GetType();
        if (Scalars.Contains(t) || t.IsEnum || t == typeof(DateTime))
        {
            bool same = expected is DateTimeOffset d ? actual is DateTimeOffset a && d.EqualsExact(a) : expected.Equals(actual);
            if (!same) differences.Add($"{path}: expected {Show(expected)}, got {Show(actual)}");
            return;
        }
        if (expected is IDictionary ed && actual is IDictionary ad)
        {
            if (ed.Count != ad.Count) differences.Add($"{path}: expected {ed.Count} entries, got {ad.Count}");
            foreach (DictionaryEntry e in ed)
            {
                if (!ad.Contains(e.Key)) { differences.Add($"{path}[{e.Key}]: missing"); continue; }
                DeepCompare(e.Value, ad[e.Key], $"{path}[{e.Key}]", differences);
            }
            return;
        }
        if (expected is IEnumerable ee && actual is IEnumerable ae && expected is not string)
        {
            var el = ee.Cast<object?>().ToList();
            var al = ae.Cast<object?>().ToList();
            if (el.Count != al.Count) { differences.Add($"{path}: expected {el.Count} items, got {al.Count}"); return; }
            for (int i = 0; i < el.Count; i++) DeepCompare(el[i], al[i], $"{path}[{i}]", differences);
            return;
        }
        foreach (var p in DataProperties(t))
            DeepCompare(p.GetValue(expected), p.GetValue(actual), $"{path}.{p.Name}", differences);
    }

    static string Show(object? v) => v switch { null => "null", string s => $"\"{s}\"", IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture), _ => v.ToString() ?? "" };

    // ---- filling objects with non-default values ----

    static class Filler
    {
        static readonly DateTimeOffset BaseTime = new(2026, 11, 22, 8, 5, 38, TimeSpan.Zero);

        static int Seed(string name) { unchecked { int h = 17; foreach (var c in name) h = h * 31 + c; return (h & 0x3FF) + 1; } }

        public static object Construct(Type t, int depth)
        {
            object instance;
            var parameterless = t.GetConstructor(Type.EmptyTypes);
            if (parameterless is not null || t.IsValueType) instance = Activator.CreateInstance(t)!;
            else
            {
                var ctor = t.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault()
                           ?? throw new InvalidOperationException($"{t.Name} has no public constructor: JSON cannot create it");
                instance = ctor.Invoke(ctor.GetParameters().Select(p => Make(p.ParameterType, p.Name!, depth)).ToArray());
            }
            foreach (var p in DataProperties(t))
            {
                if (p.SetMethod is { IsPublic: true })
                    p.SetValue(instance, Make(p.PropertyType, p.Name, depth));
                else if (p.GetValue(instance) is { } existing)
                    FillInPlace(existing, p.PropertyType, p.Name, depth);
            }
            return instance;
        }

        static void FillInPlace(object collection, Type declared, string seed, int depth)
        {
            if (collection is IDictionary d && !d.IsReadOnly && !d.IsFixedSize)
            {
                var args = collection.GetType().GetGenericArguments();
                if (args.Length == 2)
                    for (int i = 0; i < 2; i++) d[Make(args[0], $"{seed}{i}", depth)!] = Make(args[1], $"{seed}v{i}", depth);
            }
            else if (collection is IList l && !l.IsReadOnly && !l.IsFixedSize)
            {
                var element = collection.GetType().GetGenericArguments().FirstOrDefault() ?? typeof(object);
                for (int i = 0; i < 2; i++) l.Add(Make(element, $"{seed}{i}", depth));
            }
        }

        public static object? Make(Type t, string seed, int depth)
        {
            int n = Seed(seed);
            var u = Nullable.GetUnderlyingType(t) ?? t;
            if (u == typeof(string)) return $"{seed}-{n} ü \"quoted\" \\ /";
            if (u == typeof(bool)) return true;
            if (u == typeof(char)) return (char)('a' + n % 26);
            if (u == typeof(byte)) return (byte)(n % 200 + 1);
            if (u == typeof(sbyte)) return (sbyte)(n % 100 + 1);
            if (u == typeof(short)) return (short)(n + 1);
            if (u == typeof(ushort)) return (ushort)(n + 1);
            if (u == typeof(int)) return 100_000 + n;
            if (u == typeof(uint)) return (uint)(3_000_000_000u + (uint)n);
            if (u == typeof(long)) return (1L << 40) + n;
            if (u == typeof(ulong)) return (1UL << 63) + (ulong)n;
            if (u == typeof(float)) return n + 0.25f;
            if (u == typeof(double)) return n + 0.1 + 1e-9;
            if (u == typeof(decimal)) return n + 0.123m;
            if (u == typeof(DateTimeOffset)) return BaseTime.AddTicks(n * 1_234_567L);
            if (u == typeof(DateTime)) return BaseTime.UtcDateTime.AddTicks(n);
            if (u == typeof(TimeSpan)) return TimeSpan.FromTicks(n * 98_765_432L + 1);
            if (u == typeof(Guid)) return new Guid(n, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
            if (u.IsEnum)
            {
                var values = Enum.GetValues(u);
                return values.Length == 0 ? Activator.CreateInstance(u) : values.GetValue(values.Length - 1);
            }
            if (u.IsArray)
            {
                var a = Array.CreateInstance(u.GetElementType()!, 2);
                for (int i = 0; i < 2; i++) a.SetValue(Make(u.GetElementType()!, $"{seed}{i}", depth), i);
                return a;
            }
            if (u.IsGenericType && ListShapes.Contains(u.GetGenericTypeDefinition()))
            {
                var list = (IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(u.GetGenericArguments()))!;
                for (int i = 0; i < 2; i++) list.Add(Make(u.GetGenericArguments()[0], $"{seed}{i}", depth));
                return list;
            }
            if (u.IsGenericType && DictShapes.Contains(u.GetGenericTypeDefinition()))
            {
                var args = u.GetGenericArguments();
                var dict = (IDictionary)Activator.CreateInstance(typeof(Dictionary<,>).MakeGenericType(args))!;
                for (int i = 0; i < 2; i++) dict[Make(args[0], $"{seed}k{i}", depth)!] = Make(args[1], $"{seed}v{i}", depth);
                return dict;
            }
            if (u.Assembly == Engine || u == typeof(BadOutput) || u == typeof(LossyOutput))
                return depth >= 3 ? (u.IsValueType ? Activator.CreateInstance(u) : null) : Construct(u, depth + 1);
            if (u == typeof(object)) return seed;
            if (!u.IsValueType) return null;
            return Activator.CreateInstance(u);
        }
    }
}
