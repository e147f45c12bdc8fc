using System.Text.Json;
using KvmOvercommit.Engine.Fleet;

namespace KvmOvercommit.Engine.Qemu;

/// <summary>
/// Get-KvmGuest: every QEMU on the host (from /proc), filtered by name wildcards and ids, with the QMP run state of
/// each guest whose QMP socket answers within a short timeout (a dead or busy socket never holds the listing up).
/// Also resolves the guests the other guest cmdlets act on.
/// </summary>
public sealed class KvmGuestInventory
{
    readonly QemuProcessScanner _scanner;

    public KvmGuestInventory(HostRoots? roots = null) => _scanner = new QemuProcessScanner(roots);

    /// <summary>
    /// How long one guest's QMP may take to answer query-status before its State is left null. 2 s: on a loaded 2-core
    /// host a TCG guest's QEMU once needed more than 0.75 s (the earlier limit) to greet and answer, and a running guest
    /// was listed without a State.
    /// </summary>
    public TimeSpan StateTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How many QMP sockets are asked at once.</summary>
    public int StateParallelism { get; set; } = 32;

    /// <summary>Where GetAsync gets DHCP leases for IPAddress (default: the dnsmasq/libvirt lease files, <see cref="DnsmasqLeaseIndex.LoadDefault"/>).</summary>
    public Func<IOperationObserver, DnsmasqLeaseIndex>? Leases { get; set; }

    /// <summary>
    /// The guests matching <paramref name="names"/> (wildcards; none = all) or <paramref name="ids"/>. A name without
    /// wildcards or an id that matches nothing is reported through <paramref name="notFound"/> (GuestNotFound).
    /// </summary>
    public List<KvmGuest> Find(string[]? names, int[]? ids, Action<KvmOcException>? notFound = null)
    {
        var result = new List<KvmGuest>();
        if (ids is { Length: > 0 })
        {
            foreach (var id in ids.Distinct())
            {
                var g = _scanner.Read(id);
                if (g is not null && (names is not { Length: > 0 } || Wildcard.MatchesAny(names, g.Name))) result.Add(g);
                else notFound?.Invoke(NotFound($"No QEMU process with id {id}" + (g is null ? "." : $" named '{string.Join("', '", names!)}'."), id));
            }
            return result;
        }
        var all = _scanner.Scan();
        if (names is not { Length: > 0 }) return all;
        var seen = new HashSet<int>();
        foreach (var name in names)
        {
            var pattern = new Wildcard(name);
            bool any = false;
            foreach (var g in all)
            {
                if (!pattern.IsMatch(g.Name)) continue;
                any = true;
                if (seen.Add(g.Id)) result.Add(g);
            }
            if (!any && !Wildcard.ContainsWildcard(name)) notFound?.Invoke(NotFound($"No QEMU guest named '{name}' is running.", name));
        }
        result.Sort((a, b) => a.Id.CompareTo(b.Id));
        return result;
    }

    static KvmOcException NotFound(string message, object target) =>
        new(ErrorKind.NotFound, "GuestNotFound", message, target, "Get-KvmGuest (kvmoc guest list) lists the guests on this host.");

    /// <summary>Find, then fill in State from each guest's QMP (in parallel, each bounded by <see cref="StateTimeout"/>).</summary>
    public async Task<List<KvmGuest>> GetAsync(string[]? names, int[]? ids, bool queryState, Action<KvmOcException>? notFound, IOperationObserver observer, CancellationToken ct)
    {
        var guests = Find(names, ids, notFound);
        observer.Verbose($"Found {guests.Count} QEMU process(es) in /proc.");
        if (guests.Any(g => g.MacAddress is not null && g.IPAddress is null))
            FillAddresses(guests, (Leases ?? (o => DnsmasqLeaseIndex.LoadDefault(o)))(observer));
        if (queryState) await FillStateAsync(guests, observer, ct).ConfigureAwait(false);
        return guests;
    }

    /// <summary>Sets IPAddress of every guest whose MAC address has a lease (and no address yet); returns how many got one.</summary>
    public static int FillAddresses(IEnumerable<KvmGuest> guests, DnsmasqLeaseIndex leases)
    {
        int filled = 0;
        foreach (var g in guests)
        {
            if (g.IPAddress is not null || leases.AddressFor(g.MacAddress) is not { } ip) continue;
            g.IPAddress = ip;
            filled++;
        }
        return filled;
    }

    /// <summary>Asks every guest with a QMP socket for its run state; unreachable ones keep State null (said in Verbose).</summary>
    public async Task FillStateAsync(IReadOnlyList<KvmGuest> guests, IOperationObserver observer, CancellationToken ct)
    {
        using var gate = new SemaphoreSlim(Math.Max(1, StateParallelism));
        var tasks = guests.Where(g => g.QmpSocket is not null).Select(async g =>
        {
            await gate.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                g.State = await QueryStatusAsync(g.QmpSocket!, StateTimeout, ct).ConfigureAwait(false);
            }
            catch (KvmOcException e)
            {
                observer.Verbose($"Guest '{g.Name}' ({g.Id}): no QMP state: {e.Message}");
            }
            finally
            {
                gate.Release();
            }
        }).ToList();
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>query-status over the socket within <paramref name="timeout"/>; Timeout or ConnectionError otherwise.</summary>
    public static async Task<string?> QueryStatusAsync(string socket, TimeSpan timeout, CancellationToken ct)
    {
        var ret = await ExecuteOnceAsync(socket, "query-status", null, timeout, ct).ConfigureAwait(false);
        return ret.ValueKind == JsonValueKind.Object && ret.TryGetProperty("status", out var s) ? s.GetString() : null;
    }

    /// <summary>
    /// Connects, executes one command and disconnects, all within <paramref name="timeout"/>: a socket that is
    /// refused, busy with another client or silent fails with Timeout/ConnectionError instead of hanging.
    /// </summary>
    public static async Task<JsonElement> ExecuteOnceAsync(string socket, string command, System.Text.Json.Nodes.JsonObject? arguments, TimeSpan timeout, CancellationToken ct)
    {
        await using var qmp = await ConnectAsync(socket, timeout, ct).ConfigureAwait(false);
        qmp.CommandTimeout = timeout;
        return await qmp.ExecuteAsync(command, arguments, ct).ConfigureAwait(false);
    }

    /// <summary>QmpClient.ConnectAsync bounded by <paramref name="timeout"/> as a whole (greeting included).</summary>
    public static async Task<QmpClient> ConnectAsync(string socket, TimeSpan timeout, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            // The guest runs, so its socket exists: a missing one is QmpSocketMissing at once, not a retry until timeout.
            return await QmpClient.ConnectAsync(socket, timeout, cts.Token, waitForSocket: false).ConfigureAwait(false);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw new KvmOcException(ErrorKind.Timeout, "QmpTimeout", $"The QMP socket '{socket}' did not answer within {timeout.TotalSeconds:0.###} s.", socket,
                "Another client may hold the guest's QMP connection (QEMU serves one at a time), or the guest is hung.", e);
        }
    }
}
