using System.Collections;
using System.Management.Automation;
using KvmOvercommit.Engine;
using KvmOvercommit.Engine.Memory;

namespace KvmOvercommit.Commands;

/// <summary>Balances the guests' balloons against host memory pressure: takes memory from guests that do not use it while the host runs short, gives it back when the pressure is gone.</summary>
/// <remarks>
/// The automatic balloon policy of oVirt MOM and Proxmox auto-ballooning, in the foreground. Every -IntervalSeconds
/// (default 2) it reads the pressure — host memory used (MemTotal − MemAvailable) against -HostTargetPercent (default
/// 80, as Proxmox), memory PSI (/proc/pressure/memory "some avg10" above -PsiThresholdPercent, default 10), or with
/// -Cgroup a memory cgroup's usage (minus its inactive file cache) against its limit — and each guest's balloon and
/// balloon statistics over QMP (the statistics are turned on where they are off). Under pressure it inflates the
/// balloons of the guests with the most memory available, at most -MaxStepPercent (default 10) of a guest's -m per
/// round, never below the guest's minimum (-MinimumMB for every guest, -GuestMinimumMB per name pattern, else
/// -MinimumPercent of its -m, default 50) nor into the memory the guest keeps available to itself (10% of its own
/// MemTotal, at least 8 MiB), until the shortfall is covered. Once use is -HysteresisPercent (default 5) below the
/// target it deflates toward each guest's -m, the spare memory split by -Shares (default 1000 each), at most a step per
/// guest. A guest short of memory itself gets a step back at any time. Guests that start later join; guests without a
/// balloon or QMP are left out.
/// Runs for -Duration, or until Ctrl+C. On every exit it sets every balloon it balanced back to the guest's -m and waits
/// up to 10 s for them (-LeaveBalloons leaves them as they are). -WithKsmAutoTune runs Invoke-KsmAutoTune's adaptive
/// KSM tuner in the same process for as long (one daemon in place of ksmtuned plus MOM). -WhatIf reads and decides every
/// round but sets nothing (the decisions say Applied False). -Verbose shows every decision with its reason; progress
/// shows the pressure and what the balloons hold. Returns one result: rounds, inflations, deflations, each guest's
/// lowest and final size, the decision log and the balancer's own CPU use. Needs access to the guests' QMP sockets.
/// </remarks>
/// <example>
/// <code>Invoke-KvmMemoryBalancer -Duration 600 -Verbose</code>
/// <para>Balances every guest for ten minutes against 80% host memory used, showing each decision and its reason.</para>
/// </example>
/// <example>
/// <code>Invoke-KvmMemoryBalancer -Name 'web*' -HostTargetPercent 70 -MinimumMB 512 -Shares @{ 'web1' = 3000 } -WithKsmAutoTune</code>
/// <para>Until Ctrl+C: the web guests keep at least 512 MiB, web1 gets three times the spare memory of the others, and KSM is tuned alongside.</para>
/// </example>
/// <example>
/// <code>Invoke-KvmMemoryBalancer -Cgroup /sys/fs/cgroup/memory/fleet -Duration 60 -WhatIf -Verbose</code>
/// <para>What the balancer would do against the fleet cgroup's limit for a minute, setting nothing.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "KvmMemoryBalancer", SupportsShouldProcess = true)]
[OutputType(typeof(KvmMemoryBalancerResult))]
public sealed class InvokeKvmMemoryBalancerCommand : KvmCmdlet
{
    /// <summary>Guests to balance by name; wildcards allowed. Without Name and Id, every guest with a balloon and QMP.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>QEMU process ids of the guests to balance.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("ProcessId")]
    [ValidateNotNullOrEmpty]
    public int[]? Id { get; set; }

    /// <summary>How long to run: a TimeSpan or seconds. Without it the balancer runs until Ctrl+C.</summary>
    [Parameter]
    [TimeSpanSecondsTransformation]
    public TimeSpan? Duration { get; set; }

    /// <summary>Seconds between rounds (default 2).</summary>
    [Parameter]
    [ValidateRange(0.1, 3600.0)]
    public double IntervalSeconds { get; set; } = 2;

    /// <summary>Memory used (host, or the -Cgroup) above which the host is under pressure, in percent (default 80).</summary>
    [Parameter]
    [ValidateRange(0.0, 100.0)]
    public double HostTargetPercent { get; set; } = 80;

    /// <summary>Memory PSI "some avg10" above which the host is under pressure, in percent (default 10; 0 ignores PSI).</summary>
    [Parameter]
    [ValidateRange(0.0, 100.0)]
    public double PsiThresholdPercent { get; set; } = 10;

    /// <summary>Balloons deflate only once use is this many points below the target (default 5).</summary>
    [Parameter]
    [ValidateRange(0.0, 100.0)]
    public double HysteresisPercent { get; set; } = 5;

    /// <summary>At most this percent of a guest's -m is taken or given back per round (default 10).</summary>
    [Parameter]
    [ValidateRange(0.1, 100.0)]
    public double MaxStepPercent { get; set; } = 10;

    /// <summary>The least every guest keeps, in MiB (overrides -MinimumPercent; -GuestMinimumMB overrides it per guest).</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long? MinimumMB { get; set; }

    /// <summary>A guest's minimum when no -MinimumMB or -GuestMinimumMB applies, in percent of its -m (default 50).</summary>
    [Parameter]
    [ValidateRange(0.0, 100.0)]
    public double MinimumPercent { get; set; } = 50;

    /// <summary>Minimums per guest: a hashtable of name (wildcards) → MiB, e.g. @{ 'db*' = 2048; web1 = 512 }.</summary>
    [Parameter]
    public Hashtable? GuestMinimumMB { get; set; }

    /// <summary>Shares per guest: a hashtable of name (wildcards) → shares (default 1000 each); spare memory goes back in proportion.</summary>
    [Parameter]
    public Hashtable? Shares { get; set; }

    /// <summary>A memory cgroup (its folder, or a name under /sys/fs/cgroup/memory) whose usage against its limit is the pressure instead of the host's.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Cgroup { get; set; }

    /// <summary>Leave the balloons as they are at exit instead of deflating every guest to its -m.</summary>
    [Parameter]
    public SwitchParameter LeaveBalloons { get; set; }

    /// <summary>Run the adaptive KSM tuner (Invoke-KsmAutoTune) in the same process for as long.</summary>
    [Parameter]
    public SwitchParameter WithKsmAutoTune { get; set; }

    readonly List<string> _names = new();
    readonly List<int> _ids = new();

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (Name is not null) _names.AddRange(Name);
        if (Id is not null) _ids.AddRange(Id);
    }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        var policy = new MemoryBalancerPolicy
        {
            HostTargetPercent = HostTargetPercent, PsiThresholdPercent = PsiThresholdPercent, HysteresisPercent = HysteresisPercent,
            MaxStepPercent = MaxStepPercent, DefaultMinimumPercent = MinimumPercent,
        };
        if (MinimumMB is long all) policy.MinimumMB["*"] = all;
        foreach (var (k, v) in Pairs(GuestMinimumMB, nameof(GuestMinimumMB))) policy.MinimumMB[k] = v;
        foreach (var (k, v) in Pairs(Shares, nameof(Shares))) policy.Shares[k] = (int)Math.Min(int.MaxValue, v);
        var options = new MemoryBalancerOptions
        {
            Names = _names.Count > 0 ? _names.ToArray() : null,
            Ids = _ids.Count > 0 ? _ids.ToArray() : null,
            Duration = Duration,
            Interval = TimeSpan.FromSeconds(IntervalSeconds),
            Policy = policy,
            Cgroup = Cgroup,
            LeaveBalloons = LeaveBalloons,
            WithKsmAutoTune = WithKsmAutoTune,
        };
        bool whatIf = MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w) && w is SwitchParameter { IsPresent: true };
        if (!ShouldProcess(Cgroup ?? "host memory", MemoryBalancer.Describe(options)) && !whatIf) return;
        options.DryRun = whatIf;
        InvokeAsync(async (observer, emit, ct) => emit(await MemoryBalancer.RunAsync(options, observer, ct).ConfigureAwait(false)), terminating: true);
    }

    IEnumerable<(string, long)> Pairs(Hashtable? table, string parameter)
    {
        if (table is null) yield break;
        foreach (DictionaryEntry e in table)
        {
            var key = e.Key?.ToString();
            long value;
            try { value = LanguagePrimitives.ConvertTo<long>(e.Value); }
            catch (PSInvalidCastException) { value = 0; }
            if (string.IsNullOrEmpty(key) || value < 1)
                ThrowTerminatingError(new ErrorRecord(new ArgumentException($"-{parameter} takes name = number pairs with numbers of at least 1 (got '{e.Key}' = '{e.Value}')."),
                    "BalancerInvalidValue", ErrorCategory.InvalidArgument, e.Key));
            yield return (key!, value);
        }
    }
}
