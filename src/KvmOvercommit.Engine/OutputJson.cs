using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Fleet;
using KvmOvercommit.Engine.HostInfo;
using KvmOvercommit.Engine.Io;
using KvmOvercommit.Engine.Ksm;
using KvmOvercommit.Engine.Ksm.AutoTune;
using KvmOvercommit.Engine.Memory;
using KvmOvercommit.Engine.Qcow;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Engine;

/// <summary>
/// The JSON of every output type, generated at compile time (System.Text.Json source generation), so that kvmoc can be
/// compiled ahead of time (Native AOT, no reflection-based serializer) and the module, kvmoc and the experiment report
/// write the same JSON: property names exactly the .NET (PowerShell) names, enums as their names, NaN/Infinity as
/// the literals, and text as UTF-8 (a path like "win7-ü.qcow2" stays readable, as in ConvertTo-Json; quotes, backslashes
/// and control characters are still escaped). A type kvmoc prints must be listed here: JsonRoundTripTests round-trips every output type through
/// these options, so a missing one fails there ("JsonTypeInfo metadata … was not provided").
/// </summary>
[JsonSourceGenerationOptions(
    WriteIndented = true,
    UseStringEnumConverter = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(object))]
[JsonSerializable(typeof(List<object>))]
[JsonSerializable(typeof(string[]))]
[JsonSerializable(typeof(ExperimentGuestResult))]
[JsonSerializable(typeof(HostJournal))]
[JsonSerializable(typeof(HostJournalGuest))]
[JsonSerializable(typeof(HostJournalNetwork))]
[JsonSerializable(typeof(ExperimentPhase))]
[JsonSerializable(typeof(List<HostJournal>))]
[JsonSerializable(typeof(ExperimentIoLoadGuest))]
[JsonSerializable(typeof(ExperimentIoLoadResult))]
[JsonSerializable(typeof(ExperimentOptions))]
[JsonSerializable(typeof(ExperimentPlan))]
[JsonSerializable(typeof(ExperimentProfileResult))]
[JsonSerializable(typeof(ExperimentResult))]
[JsonSerializable(typeof(ExperimentSample))]
[JsonSerializable(typeof(ExperimentValidation))]
[JsonSerializable(typeof(AnsibleInventoryWriter.Host))]
[JsonSerializable(typeof(DnsmasqLease))]
[JsonSerializable(typeof(FleetGuestReach))]
[JsonSerializable(typeof(FleetMember))]
[JsonSerializable(typeof(FleetReachResult))]
[JsonSerializable(typeof(List<DnsmasqLease>))]
[JsonSerializable(typeof(InventoryEntry))]
[JsonSerializable(typeof(DiskImageFacts))]
[JsonSerializable(typeof(DiskRatio))]
[JsonSerializable(typeof(GuestFacts))]
[JsonSerializable(typeof(HostCpu))]
[JsonSerializable(typeof(HostMemory))]
[JsonSerializable(typeof(MdRaidArray))]
[JsonSerializable(typeof(MdRaidMember))]
[JsonSerializable(typeof(OvercommitInputs))]
[JsonSerializable(typeof(OvercommitReport))]
[JsonSerializable(typeof(CgroupIoStat))]
[JsonSerializable(typeof(DeviceIops))]
[JsonSerializable(typeof(DeviceIopsCapacity))]
[JsonSerializable(typeof(DeviceIopsCapacityOptions))]
[JsonSerializable(typeof(DiskStatRecord))]
[JsonSerializable(typeof(ProcessIoCounters))]
[JsonSerializable(typeof(ProcessIops))]
[JsonSerializable(typeof(ProcessTarget))]
[JsonSerializable(typeof(KsmAutoTuneDecision))]
[JsonSerializable(typeof(KsmAutoTuneObservation))]
[JsonSerializable(typeof(KsmAutoTunePolicy))]
[JsonSerializable(typeof(KsmAutoTuneResult))]
[JsonSerializable(typeof(KsmProcessStat))]
[JsonSerializable(typeof(KsmSample))]
[JsonSerializable(typeof(KsmStat))]
[JsonSerializable(typeof(KsmTuning))]
[JsonSerializable(typeof(KsmTuningPlan))]
[JsonSerializable(typeof(KsmWrite))]
[JsonSerializable(typeof(BalloonGuestState))]
[JsonSerializable(typeof(KvmMemoryBalancerDecision))]
[JsonSerializable(typeof(KvmMemoryBalancerGuest))]
[JsonSerializable(typeof(KvmMemoryBalancerResult))]
[JsonSerializable(typeof(MemoryBalancerPolicy))]
[JsonSerializable(typeof(MemoryBalancerRound))]
[JsonSerializable(typeof(MemoryPressureReading))]
[JsonSerializable(typeof(QcowImage))]
[JsonSerializable(typeof(QcowOverlayPlan))]
[JsonSerializable(typeof(BalloonPlan))]
[JsonSerializable(typeof(BlockStatsCounters))]
[JsonSerializable(typeof(GuestLaunchPlan))]
[JsonSerializable(typeof(KvmGuest))]
[JsonSerializable(typeof(KvmGuestIops))]
[JsonSerializable(typeof(KvmGuestIoLimit))]
[JsonSerializable(typeof(IoLimitChange))]
[JsonSerializable(typeof(IoLimitPlan))]
[JsonSerializable(typeof(KvmGuestMemory))]
[JsonSerializable(typeof(QemuArgument))]
[JsonSerializable(typeof(TinyGuestImage))]
public sealed partial class OutputJson : JsonSerializerContext
{
    /// <summary>Indented options over the generated metadata (what kvmoc --json and the experiment report use).</summary>
    public static JsonSerializerOptions Indented => s_indented ??= new JsonSerializerOptions(Default.Options) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The same on one line (kvmoc's streamed --json rows).</summary>
    public static JsonSerializerOptions Compact => s_compact ??= new JsonSerializerOptions(Indented) { WriteIndented = false };

    // Not static initializers: the generated Default lives in another part of this class, whose initializers may run later.
    // ("Unsafe" only for JSON pasted into HTML or script, which this never is.)
    static JsonSerializerOptions? s_indented, s_compact;
}
