<#
.SYNOPSIS
  Install azure-vnet.exe, azure-vnet-ipam.exe and the conflist on a Windows
  node from a release archive: the Windows counterpart of install-cni-plugin.sh.

.DESCRIPTION
  install-cni-plugin.ps1 [-Force] [-Conflist NAME] [-Archive FILE | -Version V | V]

  -Archive FILE   the archive to install (.zip or .tgz holding azure-vnet.exe,
                  azure-vnet-ipam.exe and the conflists)
  -Version V      take $OutDir\azure-vnet-cni-windows-amd64-V.zip
                  (default: hack/version.sh's, the version make names
                 the archive with)
  -Conflist NAME  the conflist of the archive to install (default 10-azure.conflist)
  -Force          replace an existing conflist of the same name that differs
  -OutDir DIR     where -Version looks (default: <repo>\out, or $env:OUT_DIR)
  -CniBinDir DIR  default C:\k\azurecni\bin      (or $env:CNI_BIN_DIR)
  -CniConfDir DIR default C:\k\azurecni\netconf  (or $env:CNI_CONF_DIR)
  -DestDir DIR    prefix of every installed path (or $env:DESTDIR; default none)

  Same checks as the Linux script: the archive's SHA-256 is verified against
  the .sha256 beside it (sha256sum format: "<hex>  <name>"), and every check
  (checksum, archive content, conflist conflict) is done before anything is
  written, so a failure installs nothing. Files are copied to a temporary name
  in the target directory and renamed into place; identical files are left
  alone, so a second run changes nothing. Windows needs no portmap or loopback
  plugin (HNS does port mappings), so none is installed.

  Exit codes: 0 installed (or already installed), 1 failure, 2 usage error.
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [switch]$Force,
    [string]$Archive = "",
    # Also accepted as the only positional argument, like the Linux script.
    [Parameter(Position = 0)]
    [string]$Version = "",
    [string]$Conflist = "10-azure.conflist",
    [string]$OutDir = $(if ($env:OUT_DIR) { $env:OUT_DIR } else { "" }),
    [string]$CniBinDir = $(if ($env:CNI_BIN_DIR) { $env:CNI_BIN_DIR } else { "C:\k\azurecni\bin" }),
    [string]$CniConfDir = $(if ($env:CNI_CONF_DIR) { $env:CNI_CONF_DIR } else { "C:\k\azurecni\netconf" }),
    [string]$DestDir = $(if ($env:DESTDIR) { $env:DESTDIR } else { "" })
)

Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"
$prog = "install-cni-plugin.ps1"

function Fail([string]$msg) {
    [Console]::Error.WriteLine("${prog}: $msg")
    exit 1
}
function UsageError([string]$msg) {
    [Console]::Error.WriteLine("${prog}: $msg")
    [Console]::Error.WriteLine("usage: $prog [-Force] [-Conflist NAME] [-Archive FILE | -Version V]")
    exit 2
}
function Log([string]$msg) { Write-Output "${prog}: $msg" }

# A path under the optional DestDir prefix ("C:\k\x" -> "$DestDir\k\x").
function Under([string]$path) {
    if ($DestDir -eq "") { return $path }
    $rel = $path -replace '^[A-Za-z]:', ''
    return Join-Path $DestDir $rel.TrimStart('\', '/')
}

function Sha256Of([string]$path) {
    return (Get-FileHash -Algorithm SHA256 -LiteralPath $path).Hash.ToLowerInvariant()
}

function SameContent([string]$a, [string]$b) {
    if (-not (Test-Path -LiteralPath $b -PathType Leaf)) { return $false }
    if ((Get-Item -LiteralPath $a).Length -ne (Get-Item -LiteralPath $b).Length) { return $false }
    return (Sha256Of $a) -eq (Sha256Of $b)
}

# Copy through a temporary file in the target directory and rename it into
# place, unless the target is already identical.
function InstallFile([string]$src, [string]$dst) {
    if (SameContent $src $dst) {
        Log "unchanged $dst"
        return
    }
    $dir = Split-Path -Parent $dst
    $part = Join-Path $dir (".{0}.{1}" -f (Split-Path -Leaf $dst), [Guid]::NewGuid().ToString("N"))
    try {
        Copy-Item -LiteralPath $src -Destination $part -Force
        # A plugin being executed by the runtime cannot be replaced: retry briefly.
        for ($i = 0; ; $i++) {
            try {
                Move-Item -LiteralPath $part -Destination $dst -Force
                break
            } catch {
                if ($i -ge 20) { throw }
                Start-Sleep -Milliseconds 250
            }
        }
    } catch {
        Remove-Item -LiteralPath $part -Force -ErrorAction SilentlyContinue
        Fail "cannot install ${dst}: $($_.Exception.Message)"
    }
    Log "installed $dst"
}

# --- arguments --------------------------------------------------------------
if ($Archive -ne "" -and $Version -ne "") { UsageError "-Archive and -Version are exclusive" }
if ($Conflist -eq "" -or $Conflist -match '[\\/]' -or $Conflist -eq "." -or $Conflist -eq "..") {
    Fail "-Conflist ${Conflist}: want a file name of the archive, e.g. 10-azure.conflist"
}
$binDir = Under $CniBinDir
$confDir = Under $CniConfDir

# --- find the archive -------------------------------------------------------
if ($Archive -eq "") {
    if ($Version -eq "") {
        # The version make names the archive with: one definition, in
        # hack/version.sh (sh comes with Git for Windows).
        $versionScript = Join-Path $PSScriptRoot "..\..\hack\version.sh"
        try { $Version = (& sh $versionScript 2>$null) } catch { $Version = "" }
        if (-not $Version) {
            UsageError "no -Archive or -Version given and hack/version.sh cannot run here (not a git checkout, or no sh): pass -Version (make version prints it)"
        }
    }
    if ($OutDir -eq "") { $OutDir = Join-Path $PSScriptRoot "..\..\out" }
    $Archive = Join-Path $OutDir "azure-vnet-cni-windows-amd64-$Version.zip"
}
if (-not (Test-Path -LiteralPath $Archive -PathType Leaf)) { Fail "archive $Archive not found" }
$sumFile = "$Archive.sha256"
if (-not (Test-Path -LiteralPath $sumFile -PathType Leaf)) {
    Fail "checksum file $sumFile not found: refusing to install an unverified archive"
}

# --- verify the checksum ----------------------------------------------------
$first = (Get-Content -LiteralPath $sumFile -TotalCount 1)
$want = if ($first) { ($first.Trim() -split '\s+')[0].ToLowerInvariant() } else { "" }
if ($want -notmatch '^[0-9a-f]{64}$') { Fail "checksum file ${sumFile}: no sha256 in its first field" }
$got = Sha256Of $Archive
if ($got -ne $want) {
    Fail "checksum mismatch for ${Archive}: $sumFile says $want, the file is $got; nothing installed"
}

$tmp = Join-Path ([IO.Path]::GetTempPath()) ("install-cni-plugin." + [Guid]::NewGuid().ToString("N"))
New-Item -ItemType Directory -Path $tmp | Out-Null
try {
    if ($Archive -match '\.zip$') {
        Expand-Archive -LiteralPath $Archive -DestinationPath $tmp -Force
    } else {
        # tar.exe ships with Windows since 1803 and reads .tgz.
        & tar.exe -xzf $Archive -C $tmp
        if ($LASTEXITCODE -ne 0) { Fail "cannot extract $Archive" }
    }
    foreach ($f in @("azure-vnet.exe", "azure-vnet-ipam.exe", $Conflist)) {
        if (-not (Test-Path -LiteralPath (Join-Path $tmp $f) -PathType Leaf)) { Fail "archive $Archive has no $f" }
    }

    # --- refuse to replace a different conflist -----------------------------
    $srcConf = Join-Path $tmp $Conflist
    $dstConf = Join-Path $confDir $Conflist
    if ((Test-Path -LiteralPath $dstConf) -and -not (SameContent $srcConf $dstConf)) {
        if (-not $Force) {
            Fail "$dstConf exists and differs from the archive's; nothing installed (-Force replaces it)"
        }
        Log "replacing the different $dstConf (-Force)"
    }

    # --- install ------------------------------------------------------------
    foreach ($d in @($binDir, $confDir)) {
        if (-not (Test-Path -LiteralPath $d)) { New-Item -ItemType Directory -Path $d -Force | Out-Null }
    }
    InstallFile (Join-Path $tmp "azure-vnet.exe") (Join-Path $binDir "azure-vnet.exe")
    InstallFile (Join-Path $tmp "azure-vnet-ipam.exe") (Join-Path $binDir "azure-vnet-ipam.exe")
    InstallFile $srcConf $dstConf
    foreach ($other in Get-ChildItem -LiteralPath $confDir -File | Where-Object { $_.Extension -in ".conf", ".conflist", ".json" }) {
        if ([string]::CompareOrdinal($other.Name, $Conflist) -lt 0) {
            [Console]::Error.WriteLine("${prog}: warning: $($other.FullName) sorts before ${Conflist}: the runtime uses it, not ours")
        }
    }
    Log "done: $(Split-Path -Leaf $Archive) -> $binDir, $dstConf"
} finally {
    Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
}
exit 0
