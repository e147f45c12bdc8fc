# Judges the module's default views on real objects: for each type among $Objects, the objects and their Deserialized
# copies (PSSerializer round trip) are rendered with Out-String at 80 and 120 columns. Returns one string per problem:
# - the view is the module's table (its labels in the header), for the live and the Deserialized type alike;
# - no cell is cut ('…') when every column's widest value fits the width; no fixed-width column is wider than its
#   widest value while another is cut;
# - numbers carry no more decimals than the label promises (and never four or more);
# - Format-List shows every property.
param([object[]] $Objects, [string] $Where = '')

$problems = [System.Collections.Generic.List[string]]::new()
if (-not @($Objects | Where-Object { $null -ne $_ }).Count) { return "${Where}produced no object to render" }

function Get-DecimalBudget([string] $label) {
    if ($label -match '\(s\)|CPU-s') { return 2 }
    if ($label -match '%') { return 1 }
    if ($label -match 'MiB/s') { return 2 }
    if ($label -match '/s$|^Iops$') { return 1 }
    if ($label -match '\(ms\)') { return 3 }
    if ($label -match 'GiB') { return 3 }
    if ($label -match 'KiB') { return 0 }
    if ($label -match 'MiB') { return 2 }
    if ($label -match 'Ratio|Overcommit') { return 2 }
    return 3
}

function Get-Cell($object, $column) {
    $entry = $column.DisplayEntry
    $value = if ($entry.ValueType -eq 'ScriptBlock') {
        $sb = [scriptblock]::Create($entry.Value)
        $object | ForEach-Object $sb
    } else { $object.($entry.Value) }
    if ($null -eq $value) { return '' }
    if ($column.FormatString) { return [string]::Format([cultureinfo]::CurrentCulture, $column.FormatString, $value) }
    if ($value -is [array]) { return '{' + ($value -join ', ') + '}' }
    return [string]$value.ToString()
}

$groups = $Objects | Where-Object { $null -ne $_ } | Group-Object { $_.PSObject.TypeNames[0] }
foreach ($group in $groups) {
    $live = @($group.Group)
    $copies = @($live | ForEach-Object { [System.Management.Automation.PSSerializer]::Deserialize([System.Management.Automation.PSSerializer]::Serialize($_)) })
    foreach ($set in @(, $live) + @(, $copies)) {
        $type = $set[0].PSObject.TypeNames[0]
        $name = "$Where$type"
        $format = Get-FormatData -TypeName $type
        $table = $format.FormatViewDefinition | Where-Object { $_.Control -is [System.Management.Automation.TableControl] } | Select-Object -First 1
        if ($null -eq $table) { $problems.Add("${name}: no table view"); continue }
        $headers = $table.Control.Headers
        $columns = $table.Control.Rows[0].Columns
        $labels = for ($i = 0; $i -lt $columns.Count; $i++) {
            if ($headers[$i].Label) { $headers[$i].Label } else { $columns[$i].DisplayEntry.Value }
        }
        $natural = for ($i = 0; $i -lt $columns.Count; $i++) {
            $cells = @($set | ForEach-Object { Get-Cell $_ $columns[$i] })
            $budget = Get-DecimalBudget $labels[$i]
            foreach ($c in $cells) {
                if ($c -match '^-?\d+(\.(\d+))?$' -and $Matches[2] -and $Matches[2].Length -gt $budget) {
                    $problems.Add("${name}: column '$($labels[$i])' shows $c (more than $budget decimals)")
                }
            }
            [math]::Max($labels[$i].Length, ($cells | Measure-Object -Property Length -Maximum).Maximum)
        }
        $needed = ($natural | Measure-Object -Sum).Sum + $columns.Count - 1
        foreach ($width in 80, 120) {
            $text = $set | Out-String -Width $width
            $lines = $text -split "`n" | Where-Object { $_.Trim() }
            $header = $lines | Select-Object -First 1
            if (-not $header.TrimStart().StartsWith($labels[0])) { $problems.Add("${name} at ${width}: the header does not start with '$($labels[0])' (not the module's view?): $header") }
            if ($text -match '\d\.\d{4,}') { $problems.Add("${name} at ${width}: a number with 4+ decimals: $($Matches[0])") }
            if ($text.Contains([char]0x2026)) {
                if ($needed -lt $width) {
                    $problems.Add("${name} at ${width}: a value is cut though every column fits ($needed columns):`n$text")
                }
                for ($i = 0; $i -lt $columns.Count; $i++) {
                    if ($headers[$i].Width -gt $natural[$i] + 2) {
                        $problems.Add("${name} at ${width}: '$($labels[$i])' takes $($headers[$i].Width) columns for $($natural[$i]) while a value is cut:`n$text")
                    }
                }
            }
        }
        $list = $set[0] | Format-List | Out-String -Width 200
        foreach ($p in $set[0].PSObject.Properties) {
            if ($p.Name -eq 'PSComputerName' -or $p.Name -eq 'RunspaceId' -or $p.Name -eq 'PSShowComputerName') { continue }
            if ($list -notmatch "(?m)^$([regex]::Escape($p.Name))\s+:") { $problems.Add("${name}: Format-List does not show $($p.Name)") }
        }
    }
}
$problems
