namespace KvmOvercommit.Engine.Ksm.AutoTune;

/// <summary>The knobs of the adaptive policy. The defaults are the ones measured in the README's benchmark.</summary>
public sealed class KsmAutoTunePolicy
{
    /// <summary>Most pages per wake-up while bursting (the blog's aggressive setting).</summary>
    public long MaxPagesToScan { get; set; } = 20000;
    /// <summary>Fewest pages per wake-up while bursting.</summary>
    public long MinBurstPagesToScan { get; set; } = 1000;
    /// <summary>sleep_millisecs while bursting.</summary>
    public long BurstSleepMilliseconds { get; set; } = 20;
    /// <summary>How long one full pass over the mergeable memory should take while bursting.</summary>
    public TimeSpan BurstPassTime { get; set; } = TimeSpan.FromMilliseconds(100);
    /// <summary>pages_to_scan when idle.</summary>
    public long IdlePagesToScan { get; set; } = 100;
    /// <summary>sleep_millisecs when idle.</summary>
    public long IdleSleepMilliseconds { get; set; } = 200;
    /// <summary>
    /// Full passes after a wake-up before a pass is judged. The kernel inserts a new process just behind ksmd's cursor,
    /// so the pass in progress at wake-up skips it, the next only checksums its pages and the third merges them.
    /// </summary>
    public int PassesBeforeJudging { get; set; } = 3;
    /// <summary>A pass merging fewer pages than this fraction of the mergeable pages counts as "yields nothing".</summary>
    public double YieldFraction { get; set; } = 0.002;
    /// <summary>…and never fewer than this many pages.</summary>
    public long MinYieldPages { get; set; } = 64;
    /// <summary>
    /// A judged pass merging less than this fraction of the mergeable pages (but more than the yield threshold) is a
    /// trickle — guests booting, touching and rewriting memory: the burst goes on at a rate scaled by the yield (at
    /// least 1 / <see cref="BackoffFactor"/> of the full burst rate) instead of at the full rate.
    /// </summary>
    public double FullRateYieldFraction { get; set; } = 0.02;
    /// <summary>
    /// While a trickle goes on, a pass takes at least this fraction of the time since the wake-up (and at least
    /// <see cref="BurstPassTime"/>): 0.08 keeps the delay of a page that settles (two passes) within 16% of the time
    /// the merging has taken, below the 20% the goal allows over the aggressive setting.
    /// </summary>
    public double PaceFraction { get; set; } = 0.08;
    /// <summary>
    /// A mergeable process using at least this fraction of a core counts as busy (booting, rewriting its memory); 0
    /// turns the rule off. While one is busy, once the passes after a wake-up are done (or BusyPassTime has gone by
    /// since it), the burst is paced by time
    /// (<see cref="BusyPassTime"/>) however much a pass merges, and never backs off to idle: memory that still changes
    /// is merged once it settles, and a pass over it before then is mostly wasted. When every mergeable process is
    /// quiet again, two passes at the full rate merge what settled, and the yield rules take over.
    /// </summary>
    public double BusyCpuFraction { get; set; } = 0.05;
    /// <summary>
    /// While a mergeable process is busy, a pass takes at least this long (and at least PaceFraction of the time since
    /// the wake-up). 4 s: on a host whose guests boot, a starved ksmd at the full rate already took about 2 s a pass
    /// (0.13 s of CPU per second), so a 2 s pace saved nothing.
    /// </summary>
    public TimeSpan BusyPassTime { get; set; } = TimeSpan.FromSeconds(4);
    /// <summary>Each low-yield step divides the scan rate by this.</summary>
    public double BackoffFactor { get; set; } = 8;
    /// <summary>Step down at least this often while backing off, even when a pass at the lower rate has not completed.</summary>
    public TimeSpan BackoffStepTime { get; set; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Mergeable resident memory growing by this fraction (and by MinGrowthPages) wakes the tuner.</summary>
    public double GrowthFraction { get; set; } = 0.05;
    /// <summary>Fewest pages of growth that wake the tuner (4096 = 16 MiB).</summary>
    public long MinGrowthPages { get; set; } = 4096;
    /// <summary>MemAvailable / MemTotal below this is memory pressure: the floor rises to the pressure rate.</summary>
    public double PressureFraction { get; set; } = 0.10;
    /// <summary>pages_to_scan floor under memory pressure.</summary>
    public long PressurePagesToScan { get; set; } = 1000;
    /// <summary>sleep_millisecs floor under memory pressure.</summary>
    public long PressureSleepMilliseconds { get; set; } = 20;
    /// <summary>Poll interval while bursting or backing off.</summary>
    public TimeSpan FastPoll { get; set; } = TimeSpan.FromMilliseconds(100);
    /// <summary>
    /// Poll interval when idle. An idle reading is the six KSM counters and /proc/loadavg (the mergeable processes'
    /// own files every 2 s, /proc only when a process was created), so polling often costs little and finds new
    /// guests sooner: the time to 90% of a late arrival starts when it madvises, not when the tuner looks.
    /// </summary>
    public TimeSpan IdlePoll { get; set; } = TimeSpan.FromMilliseconds(200);
    /// <summary>Poll interval once idle for <see cref="QuietAfter"/>.</summary>
    public TimeSpan QuietIdlePoll { get; set; } = TimeSpan.FromMilliseconds(300);
    /// <summary>How long idle before polling at <see cref="QuietIdlePoll"/>.</summary>
    public TimeSpan QuietAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Rejects values the controller cannot work with.</summary>
    public void Validate()
    {
        static void Check(bool ok, string name, object value)
        {
            if (!ok) throw new KvmOcException(ErrorKind.InvalidArgument, "KsmAutoTuneInvalidPolicy", $"Invalid adaptive tuner setting {name} = {value}.", name);
        }
        Check(MaxPagesToScan >= 1, nameof(MaxPagesToScan), MaxPagesToScan);
        Check(MinBurstPagesToScan >= 1 && MinBurstPagesToScan <= MaxPagesToScan, nameof(MinBurstPagesToScan), MinBurstPagesToScan);
        Check(BurstSleepMilliseconds >= 0, nameof(BurstSleepMilliseconds), BurstSleepMilliseconds);
        Check(IdlePagesToScan >= 1 && IdlePagesToScan <= MaxPagesToScan, nameof(IdlePagesToScan), IdlePagesToScan);
        Check(IdleSleepMilliseconds >= 0, nameof(IdleSleepMilliseconds), IdleSleepMilliseconds);
        Check(BurstPassTime > TimeSpan.Zero, nameof(BurstPassTime), BurstPassTime);
        Check(BackoffFactor > 1, nameof(BackoffFactor), BackoffFactor);
        Check(FullRateYieldFraction >= 0 && FullRateYieldFraction <= 1, nameof(FullRateYieldFraction), FullRateYieldFraction);
        Check(PaceFraction >= 0 && PaceFraction <= 1, nameof(PaceFraction), PaceFraction);
        Check(BusyCpuFraction >= 0 && BusyCpuFraction <= 1, nameof(BusyCpuFraction), BusyCpuFraction);
        Check(BusyPassTime > TimeSpan.Zero, nameof(BusyPassTime), BusyPassTime);
        Check(PassesBeforeJudging >= 1, nameof(PassesBeforeJudging), PassesBeforeJudging);
        Check(FastPoll > TimeSpan.Zero && IdlePoll > TimeSpan.Zero, nameof(FastPoll), FastPoll);
        Check(QuietIdlePoll > TimeSpan.Zero, nameof(QuietIdlePoll), QuietIdlePoll);
    }
}
